#!/usr/bin/env bash
# Install rollout and everything its tests and sandbox need, on a fresh Debian 12
# machine or this one again (every step is skipped when already done):
# a virtualenv in .venv with rollout and its dev and gateway extras (litellm for
# the sandbox's process runtime), a running Docker engine and the offline images
# (the test image, the real LiteLLM gateway image: minutes the first time, and the Redis image the
# swarm gateway's replicas share their router state through),
# Debian's docker-compose (Compose v1), which CI checks deploy/docker-compose.yml with, and
# Debian's prometheus (the sandbox's evidence store; promtool checks deploy/prometheus.yml),
# prometheus-node-exporter (serves rollout's stage metrics to it), and
# Debian's chromium (the tests open `rollout report --html` pages in it, headless).
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[setup %4ds] %s\n' "$SECONDS" "$*"; }

if ! command -v git >/dev/null || ! python3 -c 'import venv' 2>/dev/null; then
  log "installing git and python3-venv"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq git python3-venv >/dev/null
fi

# Compose v1, the one Debian 12 ships: CI checks deploy/docker-compose.yml with it (.ci/run).
if ! command -v docker-compose >/dev/null; then
  log "installing docker-compose"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null
fi

# Prometheus (and promtool): `rollout sandbox up` runs it as a process on loopback, scraping the gateway
# and the sample app; CI checks deploy/prometheus.yml with promtool. No service starts on install.
if ! command -v prometheus >/dev/null || ! command -v promtool >/dev/null; then
  log "installing prometheus"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null
fi

# node_exporter with only its textfile collector: the sandbox serves rollout's stage metrics (.rollout/rollout.prom)
# to its Prometheus through it, as production does. No service starts on install (no systemd here).
if ! command -v prometheus-node-exporter >/dev/null; then
  log "installing prometheus-node-exporter"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus-node-exporter >/dev/null
fi

# Chromium: tests/test_report_html.py opens the HTML report in it (headless, over the DevTools pipe).
if ! command -v chromium >/dev/null; then
  log "installing chromium"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  python3 -m venv .venv
fi
if ! .venv/bin/python -c 'import rollout_cli, matplotlib, PIL, pytest, pytest_timeout, prometheus_client, coverage, mypy, importlinter, jsonschema, openfeature.contrib.provider.flagd' 2>/dev/null \
   || [ ! -x .venv/bin/ruff ] || [ ! -x .venv/bin/lint-imports ] || [ ! -x .venv/bin/litellm ] \
   || [ pyproject.toml -nt .venv/.installed ] || [ requirements.lock -nt .venv/.installed ]; then
  log "installing rollout into .venv (versions from requirements.lock)"
  # uv (itself pinned in the lock) installs the same versions as pip in about 17 s instead of 60, in parallel and
  # with the bytecode compiled (this environment sets PYTHONDONTWRITEBYTECODE=1: without it every gateway start
  # would compile LiteLLM again). uv reads no pip.conf: where it cannot reach its index, pip installs as before.
  .venv/bin/pip install -q --disable-pip-version-check -c requirements.lock uv 2>/dev/null || true
  if ! { [ -x .venv/bin/uv ] && .venv/bin/uv pip install -q --compile-bytecode --python .venv/bin/python \
           -c requirements.lock -e ".[dev,gateway,app]"; }; then
    log "uv could not install; installing with pip"
    .venv/bin/pip install -q --disable-pip-version-check -c requirements.lock -e ".[dev,gateway,app]"
  fi
  touch .venv/.installed
fi

# Bytecode as a pip-installed rollout has it: this environment sets PYTHONDONTWRITEBYTECODE=1,
# so without this every `rollout` start would compile its modules again (tens of ms).
.venv/bin/python -m compileall -q src >/dev/null
# matplotlib's font list, built once here rather than by the first `rollout report --html` (seconds)
.venv/bin/python -c 'import matplotlib.font_manager' >/dev/null 2>&1

log "starting the Docker engine"
bash scripts/docker-up.sh
log "test image"
bash scripts/build-test-image.sh
log "gateway image"
bash scripts/build-gateway-image.sh
log "redis image"
bash scripts/build-redis-image.sh
log "ready"
