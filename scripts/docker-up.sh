#!/usr/bin/env bash
# Make sure a Docker engine answers on this machine; safe to run any number of times.
#
# Installs docker.io when dockerd is missing, starts dockerd (detached, logged)
# when `docker info` does not answer, and waits until it does.
# The engine runs without a bridge or iptables rules: containers use host
# networking only, and nothing may reach a private-range address.
#
# Usage: scripts/docker-up.sh            (env: DOCKERD_LOG, DOCKER_UP_TIMEOUT)
set -euo pipefail

LOG="${DOCKERD_LOG:-/var/log/rollout-dockerd.log}"
TIMEOUT="${DOCKER_UP_TIMEOUT:-30}"

say() { echo "docker-up: $*" >&2; }

answers() { docker info >/dev/null 2>&1; }

if ! command -v dockerd >/dev/null 2>&1 || ! command -v docker >/dev/null 2>&1; then
    say "installing docker.io"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq docker.io >/dev/null
fi

if answers; then
    say "engine already answers"
    exit 0
fi

if [ -n "${DOCKER_HOST:-}" ] && [ "${DOCKER_HOST}" != "unix:///var/run/docker.sock" ]; then
    say "DOCKER_HOST=${DOCKER_HOST} does not answer; not starting a local engine for a remote host"
    exit 1
fi

if ! pgrep -x dockerd >/dev/null 2>&1; then
    say "starting dockerd (log: ${LOG})"
    mkdir -p "$(dirname "${LOG}")"
    setsid dockerd --bridge=none --iptables=false --ip6tables=false >>"${LOG}" 2>&1 </dev/null &
else
    say "dockerd is running but does not answer yet; waiting"
fi

start=$SECONDS
until answers; do
    if (( SECONDS - start >= TIMEOUT )); then
        say "engine did not answer within ${TIMEOUT}s; last lines of ${LOG}:"
        tail -n 20 "${LOG}" >&2 2>/dev/null || true
        exit 1
    fi
    sleep 0.5
done
say "engine answers after $((SECONDS - start))s"
