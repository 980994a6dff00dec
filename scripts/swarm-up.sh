#!/usr/bin/env bash
# A single-node Docker Swarm inside a network namespace of its own; safe to run any number of times.
#
# Swarm makes networks with addresses of their own (`ingress`, `docker_gwbridge`), and no such
# address may appear on this machine's own interfaces. So the swarm runs on a second dockerd
# inside a network namespace this script creates; the machine's engine (/var/run/docker.sock,
# shared by everyone) is never put in swarm mode. Unix sockets cross namespaces: every client
# reaches the swarm with DOCKER_HOST=unix://$ROLLOUT_SWARM_SOCKET. Its services run on the host
# network *of the namespace*: they answer on the namespace's 127.0.0.1, so whatever talks to
# them (rollout, the tests) runs inside it: `nsenter --net=/var/run/netns/$ROLLOUT_SWARM_NS CMD`.
#
# Steps (each skipped when already done): the namespace with lo up and a veth pair holding
# 198.18.0.1/24 (swarm needs an address to advertise); dockerd in it (nsenter --net, not
# `ip netns exec`, which remounts /sys and hides the cgroups); docker_gwbridge created by hand
# with a subnet in 198.18.0.0/15 (else swarm takes 172.17.0.0/16); `swarm init`; the images
# copied from the machine's engine (docker save | docker load) unless the swarm's engine
# already holds the same image id.
#
# The image cache: copying the images takes most of the time (the LiteLLM image is ~900 MB), so
# swarm-down.sh keeps the engine's data root, stripped of everything but its images, as the
# machine-wide $ROLLOUT_SWARM_IMAGE_CACHE, with the ids of the images it holds. A new engine
# whose data root does not exist yet claims it by one rename (same filesystem: instant; two at
# once: one wins, the other copies as before), but only when every image it lists has the same
# id in the machine's engine; a cache with another id is deleted, never used. The images are then
# compared once more, by id, with the running engine's before anything is copied.
#
# Usage: scripts/swarm-up.sh [IMAGE...]     (default: rollout/litellm:local rollout/redis:local rollout-test/busybox:latest)
# Env: ROLLOUT_SWARM_NS (rollout-swarm), ROLLOUT_SWARM_SOCKET (/var/run/docker-$NS.sock),
#      ROLLOUT_SWARM_TIMEOUT (60), ROLLOUT_SWARM_LOG (/var/log/$NS-dockerd.log),
#      ROLLOUT_SWARM_IMAGE_CACHE (/var/lib/docker-rollout-image-cache; empty: no cache)
# Prints `export DOCKER_HOST=...` on stdout when done. scripts/swarm-down.sh undoes all of it.
set -euo pipefail

NS="${ROLLOUT_SWARM_NS:-rollout-swarm}"
SOCK="${ROLLOUT_SWARM_SOCKET:-/var/run/docker-${NS}.sock}"
TIMEOUT="${ROLLOUT_SWARM_TIMEOUT:-60}"
LOG="${ROLLOUT_SWARM_LOG:-/var/log/${NS}-dockerd.log}"
DATA="/var/lib/docker-${NS}"
CACHE="${ROLLOUT_SWARM_IMAGE_CACHE-/var/lib/docker-rollout-image-cache}"
CACHE_LIST="rollout-images"   # in the cache: `REPOSITORY:TAG ID` per image, written by swarm-down.sh
EXEC="/var/run/docker-${NS}"
PIDFILE="/var/run/docker-${NS}.pid"
MAIN="unix:///var/run/docker.sock"
ADDR="198.18.0.1"
IMAGES=("$@")
[ ${#IMAGES[@]} -gt 0 ] || IMAGES=(rollout/litellm:local rollout/redis:local rollout-test/busybox:latest)

say() { echo "swarm-up: $*" >&2; }
die() { say "$*"; exit 1; }
swarm() { docker -H "unix://${SOCK}" "$@"; }

[[ "${NS}" =~ ^[A-Za-z0-9_.-]+$ ]] || die "ROLLOUT_SWARM_NS='${NS}' is not a plain name; use letters, digits, . _ -"
# The one thing this script must never do: put the machine's shared engine in swarm mode.
[ "unix://${SOCK}" != "${MAIN}" ] || die "ROLLOUT_SWARM_SOCKET is the machine's own engine; choose another path"
command -v dockerd >/dev/null || die "dockerd is missing; run scripts/docker-up.sh first"
command -v nsenter >/dev/null || die "nsenter is missing (util-linux); apt-get install util-linux"
# One swarm-up.sh or swarm-down.sh at a time (a CI run and an operator, say): they share one namespace.
exec 9>"/run/lock/${NS}.lock"
flock -w 300 9 || { echo "${0##*/}: another swarm-up.sh or swarm-down.sh holds /run/lock/${NS}.lock" >&2; exit 1; }
started=$SECONDS

if ! ip netns list | grep -qw "^${NS}"; then
    say "creating network namespace ${NS}"
    ip netns add "${NS}"
fi
inside() { ip netns exec "${NS}" "$@"; }
inside ip link set lo up
if ! inside ip link show v0 >/dev/null 2>&1; then
    inside ip link add v0 type veth peer name v1   # no `dummy` module on these machines
fi
inside ip addr replace "${ADDR}/24" dev v0
inside ip link set v0 up
inside ip link set v1 up

# The cached data root (see the top), when this engine has none yet and every image it lists is current.
claim_cache() {
    [ -n "${CACHE}" ] && [ -f "${CACHE}/${CACHE_LIST}" ] && [ ! -e "${DATA}" ] || return 0
    local current stale
    current="$(docker -H "${MAIN}" image ls --no-trunc --format '{{.Repository}}:{{.Tag}} {{.ID}}')" || return 0
    stale="$(grep -vxF -f <(printf '%s\n' "${current}") "${CACHE}/${CACHE_LIST}" || true)"
    if [ -n "${stale}" ]; then
        say "deleting the image cache ${CACHE}: the machine's engine has other ids now (${stale%%$'\n'*})"
        mv -T "${CACHE}" "${CACHE}.stale.$$" 2>/dev/null && rm -rf "${CACHE}.stale.$$"
        return 0
    fi
    if mv -T "${CACHE}" "${DATA}" 2>/dev/null; then   # one rename: another engine claiming it at once gets none
        rm -f "${DATA}/${CACHE_LIST}"
        say "reusing the image cache ${CACHE} as ${DATA}"
    fi
}

answers() { swarm info >/dev/null 2>&1; }
if ! answers; then
    if [ -f "${PIDFILE}" ] && kill -0 "$(cat "${PIDFILE}")" 2>/dev/null; then
        say "dockerd of ${NS} runs but does not answer yet; waiting"
    else
        claim_cache
        say "starting dockerd in ${NS} (log: ${LOG})"
        rm -f "${PIDFILE}"
        mkdir -p "$(dirname "${LOG}")"
        setsid nsenter --net="/var/run/netns/${NS}" dockerd --data-root "${DATA}" --exec-root "${EXEC}" \
            --pidfile "${PIDFILE}" -H "unix://${SOCK}" --bridge=none --iptables=false --ip6tables=false \
            >>"${LOG}" 2>&1 </dev/null 9>&- &   # 9>&-: the engine must not hold our lock
    fi
    until answers; do
        if (( SECONDS - started >= TIMEOUT )); then
            say "dockerd of ${NS} did not answer within ${TIMEOUT}s; last lines of ${LOG}:"
            tail -n 20 "${LOG}" >&2 2>/dev/null || true
            exit 1
        fi
        sleep 0.3
    done
fi

if ! swarm network inspect docker_gwbridge >/dev/null 2>&1; then
    swarm network create --driver bridge --subnet 198.18.1.0/24 --gateway 198.18.1.1 \
        --opt com.docker.network.bridge.name=docker_gwbridge \
        --opt com.docker.network.bridge.enable_icc=false \
        --opt com.docker.network.bridge.enable_ip_masquerade=false docker_gwbridge >/dev/null
fi
if [ "$(swarm info --format '{{.Swarm.LocalNodeState}}')" != "active" ]; then
    say "initialising the swarm on ${ADDR}"
    swarm swarm init --advertise-addr "${ADDR}" --listen-addr "${ADDR}:2377" \
        --default-addr-pool 198.18.128.0/17 >/dev/null
fi

for image in "${IMAGES[@]}"; do
    want="$(docker -H "${MAIN}" image inspect --format '{{.Id}}' "${image}" 2>/dev/null)" \
        || die "image ${image} is not in the machine's engine; build it (scripts/setup.sh)"
    have="$(swarm image inspect --format '{{.Id}}' "${image}" 2>/dev/null || true)"
    if [ "${want}" != "${have}" ]; then
        say "loading ${image} into the swarm's engine"
        docker -H "${MAIN}" save "${image}" | swarm load >/dev/null
    fi
done

say "swarm ${NS} ready after $((SECONDS - started))s"
echo "export DOCKER_HOST=unix://${SOCK}"
