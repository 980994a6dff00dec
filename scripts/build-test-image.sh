#!/usr/bin/env bash
# Build the tiny image the Docker tests run: busybox-static and its applet links,
# imported from a tarball because no registry can be reached to pull one.
# Its default command sleeps forever and exits 0 promptly on SIGTERM, so a
# `docker stop` takes about a second, not the 10 s kill timeout.
#
# Usage: scripts/build-test-image.sh [IMAGE]   (default rollout-test/busybox:latest; FORCE=1 rebuilds)
set -euo pipefail

IMAGE="${1:-${ROLLOUT_TEST_IMAGE:-rollout-test/busybox:latest}}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

say() { echo "build-test-image: $*" >&2; }

"${HERE}/docker-up.sh"

if [ "${FORCE:-0}" != 1 ] && docker image inspect "${IMAGE}" >/dev/null 2>&1; then
    say "image ${IMAGE} already exists; reusing it"
    exit 0
fi

if ! dpkg-query -W -f='${Status}' busybox-static 2>/dev/null | grep -q 'ok installed'; then
    say "installing busybox-static"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq busybox-static >/dev/null
fi

ROOTFS="$(mktemp -d /tmp/rollout-busybox.XXXXXX)"
trap 'rm -rf "${ROOTFS}"' EXIT

mkdir -p "${ROOTFS}"/{bin,etc,tmp,proc,sys,dev,root}
chmod 1777 "${ROOTFS}/tmp"
cp /bin/busybox "${ROOTFS}/bin/busybox"
for applet in $("${ROOTFS}/bin/busybox" --list); do
    [ "${applet}" = busybox ] || ln -s busybox "${ROOTFS}/bin/${applet}"
done
echo 'root:x:0:0:root:/root:/bin/sh' >"${ROOTFS}/etc/passwd"
echo 'root:x:0:' >"${ROOTFS}/etc/group"

tar -C "${ROOTFS}" -c . | docker import \
    -c 'ENV PATH=/bin' \
    -c 'CMD ["/bin/sh", "-c", "trap \"exit 0\" TERM; while :; do sleep 1; done"]' \
    - "${IMAGE}" >/dev/null
say "built ${IMAGE}"
