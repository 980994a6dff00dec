#!/usr/bin/env bash
# Undo scripts/swarm-up.sh: the swarm, its dockerd, the namespace, the engine's folders.
# Safe to run any number of times, and when swarm-up.sh stopped half-way.
#
# The engine's data root goes, unless it can become the machine's image cache (swarm-up.sh says
# why and how it is claimed): then only its images stay (swarm, networks, containers, volumes and
# containerd's state deleted) and it is renamed to $ROLLOUT_SWARM_IMAGE_CACHE with the list of its
# images' ids, when no cache is there yet.
#
# Usage: scripts/swarm-down.sh      (env: ROLLOUT_SWARM_NS, ROLLOUT_SWARM_SOCKET, ROLLOUT_SWARM_IMAGE_CACHE as
#        for swarm-up.sh; ROLLOUT_SWARM_KEEP_DATA=1 keeps the engine's data folder as it is, for this namespace)
set -euo pipefail

NS="${ROLLOUT_SWARM_NS:-rollout-swarm}"
SOCK="${ROLLOUT_SWARM_SOCKET:-/var/run/docker-${NS}.sock}"
DATA="/var/lib/docker-${NS}"
CACHE="${ROLLOUT_SWARM_IMAGE_CACHE-/var/lib/docker-rollout-image-cache}"
CACHE_LIST="rollout-images"
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
    # what the image cache will hold (tagged images only: a <none> one is nobody's to reuse)
    images="$(docker -H "unix://${SOCK}" image ls --no-trunc --format '{{.Repository}}:{{.Tag}} {{.ID}}' \
        2>/dev/null | grep -v '^<none>' || true)"
fi

if [ -f "${PIDFILE}" ]; then
    pid="$(cat "${PIDFILE}")"
    if kill -0 "${pid}" 2>/dev/null; then
        say "stopping dockerd ${pid}"
        kill "${pid}"
        for _ in $(seq 1 100); do kill -0 "${pid}" 2>/dev/null || break; sleep 0.2; done
        if kill -0 "${pid}" 2>/dev/null; then
            kill -9 "${pid}"
            images=""   # killed mid-write, perhaps: its data root is nobody's to reuse
        fi
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

# The data root as the image cache: only a clean one (no container left, so no container layer
# either), only when the engine listed its images, and only when there is no cache yet.
keep_images() {
    [ -n "${CACHE}" ] && [ -n "${images:-}" ] && [ -d "${DATA}/image" ] && [ ! -e "${CACHE}" ] || return 1
    [ -z "$(find "${DATA}/containers" "${DATA}/image/overlay2/layerdb/mounts" -mindepth 1 -print -quit \
        2>/dev/null)" ] || return 1
    rm -rf "${DATA:?}"/{swarm,network,containers,volumes,containerd,tmp,runtimes,buildkit,plugins}
    printf '%s\n' "${images}" >"${DATA}/${CACHE_LIST}"
    mv -T "${DATA}" "${CACHE}" 2>/dev/null || return 1
    say "kept the images as the cache ${CACHE}"
}
if [ "${ROLLOUT_SWARM_KEEP_DATA:-0}" != "1" ] && ! keep_images; then
    rm -rf "${DATA}"
fi
say "done"
