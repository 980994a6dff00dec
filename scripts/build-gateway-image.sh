#!/usr/bin/env bash
# Build the real LiteLLM gateway image offline, without a container registry.
#
# No registry answers here, so the image is a Debian rootfs made by debootstrap
# (from the apt mirror this machine already uses), with `litellm[proxy]` and
# prometheus-client pip-installed into a venv, then `docker import`ed.
# An image that already exists is reused: the build takes minutes.
#
# Besides litellm[proxy] it installs what LiteLLM's own image (ghcr.io/berriai/litellm) has and
# LiteLLM 1.108.7 imports on every request: opentelemetry-sdk (user_api_key_auth imports
# litellm.integrations.otel.logger) and prisma (prisma.errors, whenever a lookup in a database
# that is not there fails). Missing, each import fails and is retried on every request: about
# 1.5 ms of the gateway's added latency here (docs/SETUP.md, "Gateway performance").
# And prometheus-client, for the /metrics/ the gates read.
#
# Usage: scripts/build-gateway-image.sh [IMAGE]
#   IMAGE defaults to $ROLLOUT_GATEWAY_IMAGE or rollout/litellm:local.
#   Env: LITELLM_SPEC (default 'litellm[proxy]' at requirements.lock's versions), FORCE=1 to rebuild,
#        DEBIAN_MIRROR to override the mirror read from apt's sources.
# An existing image is reused only when it was built from the same package list and lock
# (its label rollout.build); otherwise it is rebuilt.
set -euo pipefail

IMAGE="${1:-${ROLLOUT_GATEWAY_IMAGE:-rollout/litellm:local}}"
# The versions the tests ran against (requirements.lock), unless LITELLM_SPEC asks for others.
LOCK="$(cd "$(dirname "$0")/.." && pwd)/requirements.lock"
[ -z "${LITELLM_SPEC:-}" ] && [ -f "${LOCK}" ] || LOCK=""
LITELLM_SPEC="${LITELLM_SPEC:-litellm[proxy]}"
PACKAGES=("${LITELLM_SPEC}" prometheus-client opentelemetry-sdk prisma)
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# What the image is built from: the package list, and the lock's pins of the packages the image
# holds (their names are in its label rollout.packages). A change to any of those makes an existing
# image stale; a pin of a development tool (pytest plugins, mutmut, ...) never goes into the image
# and must not rebuild (and retag under every other worktree) the image all the tests share.
normalized_names() { tr ',' '\n' | tr 'A-Z' 'a-z' | sed 's/[_.]/-/g; /^$/d' | sort -u; }
build_id() {  # $1: the image's package names, comma-separated
    local names
    names="$(printf '%s' "$1" | normalized_names)"
    { printf '%s\n' "${PACKAGES[@]}"
      [ -z "${LOCK}" ] || awk -F'==' 'NR==FNR {want[$0]=1; next}
          {n=tolower($1); gsub(/[_.]/, "-", n); if (n in want) print}' <(printf '%s\n' "${names}") "${LOCK}"
    } | sha256sum | cut -c1-16
}
T0=$SECONDS

log() { echo "build-gateway-image: [$((SECONDS - T0))s] $*" >&2; }
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (debootstrap, chroot, mount)"

"${HERE}/docker-up.sh"

if [ "${FORCE:-0}" != 1 ] && docker image inspect "${IMAGE}" >/dev/null 2>&1; then
    built="$(docker image inspect -f '{{ index .Config.Labels "rollout.build" }}' "${IMAGE}")"
    names="$(docker image inspect -f '{{ index .Config.Labels "rollout.packages" }}' "${IMAGE}")"
    BUILD_ID="$([ -n "${names}" ] && build_id "${names}" || echo none)"
    if [ "${built}" = "${BUILD_ID}" ]; then
        log "image ${IMAGE} already exists; reusing it (FORCE=1 to rebuild)"
        exit 0
    fi
    log "image ${IMAGE} was built from another package list or lock (${built:-no rollout.build label}, now ${BUILD_ID}); rebuilding"
fi

if ! command -v debootstrap >/dev/null 2>&1; then
    log "installing debootstrap"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq debootstrap >/dev/null
fi

# The Debian mirror apt already reaches: one-line sources.list entries first,
# then deb822 .sources files; only a URI that serves the bookworm suite.
debian_mirror() {
    local uri
    uri=$(grep -hsE '^\s*deb\s' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
        | awk '{for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {u=$i; s=$(i+1); if (s=="bookworm") {print u; exit}}}' || true)
    if [ -z "${uri}" ]; then
        uri=$(awk 'BEGIN{RS=""; FS="\n"}
            { u=""; ok=0
              for (i=1;i<=NF;i++) {
                if ($i ~ /^URIs:/) { split($i, a, /[ \t]+/); u=a[2] }
                if ($i ~ /^Suites:/) { n=split($i, s, /[ \t]+/); for (j=2;j<=n;j++) if (s[j]=="bookworm") ok=1 }
              }
              if (ok && u != "") { print u; exit } }' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
    fi
    echo "${uri:-http://deb.debian.org/debian}"
}
MIRROR="${DEBIAN_MIRROR:-$(debian_mirror)}"

# pip settings to carry into the chroot. The host's own pip config points at
# files (wheel dirs, constraints, CA) that do not exist there, so pip runs with
# a clean environment and gets only: the index URLs (http/https ones, since a
# file:// index is a host path) and the host's CA bundle, which may hold the
# certificate of a proxy in front of the registry.
host_pip_config() {
    { python3 -m pip config list 2>/dev/null || true; } | sed -E "s/^[^.]+\.//; s/'//g"
}
pip_setting() {  # $1: key; env var wins over pip config
    local env_name="PIP_$(echo "$1" | tr 'a-z-' 'A-Z_')"
    if [ -n "${!env_name:-}" ]; then echo "${!env_name}"; return; fi
    host_pip_config | awk -F= -v k="$1" '$1==k {sub(/^[^=]*=/, ""); print; exit}'
}
PIP_ARGS=()
idx="$(pip_setting index-url)"
if [[ "${idx}" =~ ^https?:// ]]; then PIP_ARGS+=(--index-url "${idx}"); log "pip index: ${idx}"; 
elif [ -n "${idx}" ]; then log "ignoring host pip index-url ${idx} (not http/https)"; fi
for x in $(pip_setting extra-index-url); do
    if [[ "${x}" =~ ^https?:// ]]; then PIP_ARGS+=(--extra-index-url "${x}"); log "pip extra index: ${x}";
    else log "ignoring host pip extra-index-url ${x} (not reachable from the chroot)"; fi
done
for h in $(pip_setting trusted-host); do PIP_ARGS+=(--trusted-host "${h}"); done
CA="$(pip_setting cert)"
[ -n "${CA}" ] && [ -f "${CA}" ] || CA=/etc/ssl/certs/ca-certificates.crt

WORK="$(mktemp -d /var/tmp/rollout-litellm.XXXXXX)"
ROOTFS="${WORK}/rootfs"

cleanup() {
    local rc=$?
    if mountpoint -q "${ROOTFS}/proc" 2>/dev/null; then
        umount "${ROOTFS}/proc" 2>/dev/null || umount -l "${ROOTFS}/proc" || true
    fi
    # Never rm -rf through a mount that is still there.
    if grep -qsF " ${ROOTFS}/" /proc/mounts; then
        log "WARNING: mounts remain under ${ROOTFS}; leaving ${WORK} in place"
    else
        rm -rf "${WORK}"
    fi
    [ "${rc}" = 0 ] || log "FAILED (exit ${rc}); see the lines above"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log "debootstrap bookworm from ${MIRROR} into ${ROOTFS}"
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "${ROOTFS}" "${MIRROR}" >"${WORK}/debootstrap.log" 2>&1 \
    || { tail -n 30 "${WORK}/debootstrap.log" >&2; die "debootstrap failed"; }
log "debootstrap done"

cp /etc/resolv.conf "${ROOTFS}/etc/resolv.conf"
cp "${CA}" "${ROOTFS}/tmp/host-ca.crt"
CONSTRAINTS=()
if [ -n "${LOCK}" ]; then cp "${LOCK}" "${ROOTFS}/tmp/requirements.lock"; CONSTRAINTS=(-c /tmp/requirements.lock); fi
mount --bind /proc "${ROOTFS}/proc"

log "pip install ${PACKAGES[*]}${LOCK:+ (versions from requirements.lock)} (CA bundle from ${CA})"
chroot_env=(env -i PATH=/opt/litellm/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
            HOME=/root LANG=C.UTF-8 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180)
chroot "${ROOTFS}" "${chroot_env[@]}" python3 -m venv /opt/litellm
chroot "${ROOTFS}" "${chroot_env[@]}" /opt/litellm/bin/pip install -q --no-cache-dir \
    --cert /tmp/host-ca.crt "${PIP_ARGS[@]}" "${CONSTRAINTS[@]}" "${PACKAGES[@]}" \
    || die "pip install failed inside the chroot"
version="$(chroot "${ROOTFS}" "${chroot_env[@]}" /opt/litellm/bin/pip show litellm | awk '/^Version:/ {print $2}')"
log "installed litellm ${version}"
names="$(chroot "${ROOTFS}" "${chroot_env[@]}" /opt/litellm/bin/pip list --format=freeze | cut -d= -f1 \
    | normalized_names | paste -sd, -)"
BUILD_ID="$(build_id "${names}")"

umount "${ROOTFS}/proc"
# The host's CA and resolver belong to this machine, not to the image.
rm -f "${ROOTFS}/tmp/host-ca.crt"
: >"${ROOTFS}/etc/resolv.conf"
rm -rf "${ROOTFS}/var/cache/apt/archives/"*.deb "${ROOTFS}/var/lib/apt/lists/"* "${ROOTFS}/root/.cache"

log "docker import as ${IMAGE}"
tar -C "${ROOTFS}" -c . | docker import \
    -c 'ENTRYPOINT ["/opt/litellm/bin/litellm"]' \
    -c 'ENV LITELLM_LOCAL_MODEL_COST_MAP=True' \
    -c "LABEL org.opencontainers.image.title=litellm org.opencontainers.image.version=${version} rollout.build=${BUILD_ID} rollout.packages=${names}" \
    - "${IMAGE}" >/dev/null
size="$(docker image inspect -f '{{.Size}}' "${IMAGE}")"
log "built ${IMAGE} (litellm ${version}, $((size / 1000000)) MB) in $((SECONDS - T0))s"
