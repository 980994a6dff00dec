#!/usr/bin/env bash
# Undo scripts/swarm-up.sh: the swarm, its dockerd, the namespace, the engine's folders.
# Safe to run any number of times, and when swarm-up.sh stopped half-way.
#
# Usage: scripts/swarm-down.sh      (env: ROLLOUT_SWARM_NS, ROLLOUT_SWARM_SOCKET as for swarm-up.sh;
#        ROLLOUT_SWARM_KEEP_DATA=1 keeps the engine's data folder, so the next swarm-up.sh need not copy the images)
set -euo pipefail

NS="${ROLLOUT_SWARM_NS:-rollout-swarm}"
SOCK="${ROLLOUT_SWARM_SOCKET:-/var/run/docker-${NS}.sock}"
DATA="/var/lib/docker-${NS}"
EXEC="/var/run/docker-${NS}"
PIDFILE="/var/run/docker-${NS}.pid"

say() { echo "swarm-down: $*" >&2; }

[[ "${NS}" =~ ^[A-Za-z0-9_.-]+$ ]] || { say "ROLLOUT_SWARM_NS='${NS}' is not a plain name"; exit 1; }
[ "${SOCK}" != "/var/run/docker.sock" ] || { say "ROLLOUT_SWARM_SOCKET is the machine's own engine; refusing"; exit 1; }
# One swarm-up.sh or swarm-down.sh at a time (a CI run and an operator, say): they share one namespace.
exec 9>"/run/lock/${NS}.lock"
flock -w 300 9 || { echo "${0##*/}: another swarm-up.sh or swarm-down.sh holds /run/lock/${NS}.lock" >&2; exit 1; }

if [ -S "${SOCK}" ] && docker -H "unix://${SOCK}" info >/dev/null 2>&1; then
    say "removing the services and leaving the swarm"
    docker -H "unix://${SOCK}" service ls -q | xargs -r docker -H "unix://${SOCK}" service rm >/dev/null || true
    docker -H "unix://${SOCK}" swarm leave --force >/dev/null 2>&1 || true
    docker -H "unix://${SOCK}" ps -aq | xargs -r docker -H "unix://${SOCK}" rm -f >/dev/null 2>&1 || true
fi

if [ -f "${PIDFILE}" ]; then
    pid="$(cat "${PIDFILE}")"
    if kill -0 "${pid}" 2>/dev/null; then
        say "stopping dockerd ${pid}"
        kill "${pid}"
        for _ in $(seq 1 100); do kill -0 "${pid}" 2>/dev/null || break; sleep 0.2; done
        kill -0 "${pid}" 2>/dev/null && kill -9 "${pid}"
    fi
    rm -f "${PIDFILE}"
fi
rm -f "${SOCK}"

if ip netns list | grep -qw "^${NS}"; then
    say "deleting network namespace ${NS}"
    ip netns del "${NS}"
fi
# The engine's own mounts under its roots (overlay layers, netns files) go before the folders do.
# /proc/mounts names them by their real path (/var/run is a link to /run here).
for root in "${EXEC}" "${DATA}"; do
    real="$(readlink -f "${root}")"
    grep -o " ${real}/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
done
rm -rf "${EXEC}"
if [ "${ROLLOUT_SWARM_KEEP_DATA:-0}" != "1" ]; then
    rm -rf "${DATA}"
fi
say "done"
