#!/usr/bin/env bash
# Build the Redis image the gateway's replicas share their router state through (deploy/docker-stack.yml).
#
# No registry answers here, so the image is Debian's own redis-server (package redis-tools: the
# binary is redis-check-rdb, which runs as the server when called redis-server) and redis-cli,
# with exactly the shared libraries `ldd` names, imported from a tarball: a few MB, seconds to build.
#
# Usage: scripts/build-redis-image.sh [IMAGE]   (default rollout/redis:local; FORCE=1 rebuilds)
set -euo pipefail

IMAGE="${1:-${ROLLOUT_REDIS_IMAGE:-rollout/redis:local}}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

say() { echo "build-redis-image: $*" >&2; }

"${HERE}/docker-up.sh"

if [ "${FORCE:-0}" != 1 ] && docker image inspect "${IMAGE}" >/dev/null 2>&1; then
    say "image ${IMAGE} already exists; reusing it"
    exit 0
fi

# redis-tools, not redis-server: the same binary without an init script that would start a server here.
if ! dpkg-query -W -f='${Status}' redis-tools 2>/dev/null | grep -q 'ok installed'; then
    say "installing redis-tools"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq redis-tools >/dev/null
fi

ROOTFS="$(mktemp -d /tmp/rollout-redis.XXXXXX)"
trap 'rm -rf "${ROOTFS}"' EXIT

mkdir -p "${ROOTFS}"/{usr/bin,etc,tmp,data}
chmod 1777 "${ROOTFS}/tmp"
cp /usr/bin/redis-check-rdb "${ROOTFS}/usr/bin/redis-server"
cp /usr/bin/redis-cli "${ROOTFS}/usr/bin/redis-cli"
for lib in $(ldd /usr/bin/redis-check-rdb /usr/bin/redis-cli | grep -oE '/[^ :]+' | grep -v '^/usr/bin/' | sort -u); do
    mkdir -p "${ROOTFS}$(dirname "${lib}")"
    cp -L "${lib}" "${ROOTFS}${lib}"
done
echo 'root:x:0:0:root:/data:/nonexistent' >"${ROOTFS}/etc/passwd"
echo 'root:x:0:' >"${ROOTFS}/etc/group"

# No persistence: the router state (cooldowns, rate-limit counters) lives for minutes.
tar -C "${ROOTFS}" -c . | docker import \
    -c 'WORKDIR /data' \
    -c 'ENTRYPOINT ["/usr/bin/redis-server"]' \
    -c 'CMD ["--bind", "127.0.0.1", "--port", "6379", "--save", "", "--appendonly", "no", "--protected-mode", "yes"]' \
    - "${IMAGE}" >/dev/null
say "built ${IMAGE}"
