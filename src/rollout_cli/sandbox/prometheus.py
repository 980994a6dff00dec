"""The sandbox's Prometheus: Debian's real `prometheus`, run as a process on loopback.

Its config is the shipped deploy/prometheus.yml with the sandbox's ports and a
1 s scrape interval, so the sandbox runs the production scrape config: job
`litellm` scrapes the gateway's `/metrics/` every 2 s with the master key as
bearer token (read from the sandbox's 0600 key file, never written into the
YAML), job `app` the sample app's `/metrics` every second, job `rollout` the
rollout's own metrics (`.rollout/rollout.prom`, core/stagemetrics.py) through
Debian's node_exporter, run beside it with only its textfile collector reading
DIR/.rollout (when `prometheus-node-exporter` is installed; else the job is
left out). It keeps a day of samples in its own data folder, DIR/prometheus/data.

It starts before the gateway and becomes ready while the gateway boots; `up`
waits for `/-/ready` only at the end, with a bound.
"""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from rollout_cli.errors import InputError, UnavailableError
from rollout_cli.gateway.config import packaged_config
from rollout_cli.io.atomic import atomic_write_text
from rollout_cli.io.net import HOST, loopback_environment
from rollout_cli.io.process import ProcessRecord, spawn_detached, tail_file
from rollout_cli.sandbox.state import master_key_file_for

CONFIG_NAME = "prometheus.yml"
FOLDER = "prometheus"  # DIR/prometheus: config, key file, data
KEY_FILE = "litellm-master-key"  # beside the config, only when the key is not in the sandbox's key file
JOBS = {"litellm": "gateway", "app": "app", "rollout": "node_exporter"}  # job -> which sandbox port it scrapes
NODE_EXPORTER = "prometheus-node-exporter"  # Debian's name of node_exporter
SCRAPE_INTERVAL = "1s"  # a soak window of minutes in a test still holds many samples
# The gateway's /metrics/ answers in about 0.1 s (p90) under test load, but on a busy 2-core machine some
# scrapes took over 1 s: a timed-out scrape marks every gateway series stale until the next one. Every 2 s
# with a 2 s timeout, and half the load on LiteLLM's event loop.
GATEWAY_SCRAPE_INTERVAL = "2s"
RETENTION = "1d"
READY_TIMEOUT_S = 30.0
PROBE_TIMEOUT_S = 2.0


def prometheus_executable() -> Path | None:
    found = shutil.which("prometheus")
    return Path(found) if found else None


def node_exporter_executable() -> Path | None:
    found = shutil.which(NODE_EXPORTER)
    return Path(found) if found else None


def folder(root: Path) -> Path:
    return root / FOLDER


def render_config(gateway_port: int, app_port: int, key_file: Path, source: Path | None = None,
                  node_exporter_port: int = 0, replica_ports: list[int] | None = None) -> str:
    """deploy/prometheus.yml with the sandbox's targets, interval and key file; InputError naming a missing job.

    Without a node_exporter (port 0) the job `rollout` is left out: a target nobody serves would only read `down`.
    With `replica_ports` (the swarm runtime) job `litellm` scrapes each replica as a target of its own, not the
    load balancer: a replica's counters are its own, and the window gates sum them.
    """
    path = source or packaged_config(CONFIG_NAME)
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
        jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    except (OSError, yaml.YAMLError, KeyError, TypeError) as exc:
        raise InputError(f"Prometheus config {path} is not a scrape config ({exc}); reinstall rollout") from None
    ports = {"gateway": gateway_port, "app": app_port, "node_exporter": node_exporter_port}
    for job, target in JOBS.items():
        if job not in jobs:
            raise InputError(f"Prometheus config {path} has no job {job!r}; reinstall rollout")
        jobs[job]["static_configs"] = [{"targets": [f"{HOST}:{ports[target]}"]}]
    if replica_ports:
        jobs["litellm"]["static_configs"] = [{"targets": [f"{HOST}:{port}" for port in replica_ports]}]
    if not node_exporter_port:
        config["scrape_configs"] = [job for job in config["scrape_configs"] if job["job_name"] != "rollout"]
    jobs["litellm"]["authorization"] = {"type": "Bearer", "credentials_file": str(key_file)}
    jobs["litellm"].update(scrape_interval=GATEWAY_SCRAPE_INTERVAL, scrape_timeout=GATEWAY_SCRAPE_INTERVAL)
    config["global"] = {**(config.get("global") or {}), "scrape_interval": SCRAPE_INTERVAL,
                        "scrape_timeout": SCRAPE_INTERVAL}
    header = ("# Written by `rollout sandbox up` from deploy/prometheus.yml: the sandbox's ports, a 1 s interval\n"
              "# (2 s for the gateway), the gateway's master key read from the sandbox's key file (mode 0600).\n")
    return header + yaml.safe_dump(config, sort_keys=False)


def write_files(root: Path, gateway_port: int, app_port: int, node_exporter_port: int = 0,
                replica_ports: list[int] | None = None) -> Path:
    """The config, scraping the gateway with the sandbox's master key from a 0600 file (Prometheus trims its
    line ending); the config's path."""
    where = folder(root)
    (where / "data").mkdir(parents=True, exist_ok=True)
    key_file = master_key_file_for(root, where / KEY_FILE)
    config = where / CONFIG_NAME
    atomic_write_text(config, render_config(gateway_port, app_port, key_file, node_exporter_port=node_exporter_port,
                                            replica_ports=replica_ports))
    return config


def start(root: Path, executable: Path, port: int, log: Path) -> ProcessRecord:
    """Start Prometheus detached on 127.0.0.1:port; it becomes ready on its own (`wait_ready`)."""
    where = folder(root)
    argv = [str(executable), f"--config.file={where / CONFIG_NAME}", f"--storage.tsdb.path={where / 'data'}",
            f"--web.listen-address={HOST}:{port}", f"--storage.tsdb.retention.time={RETENTION}"]
    return spawn_detached(argv, log=log, env=loopback_environment(), cwd=where)


def start_node_exporter(root: Path, executable: Path, port: int, log: Path) -> ProcessRecord:
    """node_exporter detached on 127.0.0.1:port with its textfile collector alone, reading DIR/.rollout's `*.prom`
    (no host metrics, no metrics of its own: only what rollout wrote)."""
    argv = [str(executable), "--collector.disable-defaults", "--collector.textfile",
            f"--collector.textfile.directory={root / '.rollout'}", "--web.disable-exporter-metrics",
            f"--web.listen-address={HOST}:{port}"]
    return spawn_detached(argv, log=log, env=loopback_environment(), cwd=root / ".rollout")


def url_of(port: int) -> str:
    return f"http://{HOST}:{port}"


def _get(url: str, timeout: float = PROBE_TIMEOUT_S) -> bytes | None:
    """The body of a 200 answer; None when it does not answer or answers otherwise."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback stays on loopback
    try:
        with opener.open(url, timeout=timeout) as answer:
            return bytes(answer.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None


def ready(url: str, path: str = "/-/ready") -> bool:
    return _get(url + path) is not None


def wait_ready(url: str, process: ProcessRecord, log: Path, timeout: float = READY_TIMEOUT_S, *,
               what: str = "Prometheus", path: str = "/-/ready") -> float:
    """Seconds until `path` answered; UnavailableError with its last log line when it dies or stays unready."""
    started = time.monotonic()
    while not ready(url, path):
        waited = time.monotonic() - started
        if not process.alive() or waited > timeout:
            lines = tail_file(log, 5)
            why = "exited" if not process.alive() else f"was not ready after {timeout:g} s"
            raise UnavailableError(f"{what} at {url} {why}: " + (lines[-1] if lines else "no output")
                                   + f" (log {log})")
        time.sleep(0.05)
    return time.monotonic() - started


def targets(url: str) -> dict[str, str] | None:
    """Each job's scrape health (up, down, unknown), from /api/v1/targets; None when it does not answer."""
    body = _get(url + "/api/v1/targets?state=active")
    if body is None:
        return None
    try:
        active = json.loads(body)["data"]["activeTargets"]
        return {str(t["labels"]["job"]): str(t["health"]) for t in active}
    except (ValueError, KeyError, TypeError):
        return None


def status(url: str, process: ProcessRecord | None, port: int) -> dict[str, Any]:
    """What `sandbox status` shows of it: url, pid, running, ready, each job's health."""
    running = process is not None and process.alive()
    is_ready = running and ready(url)
    return {"url": url, "port": port, "pid": process.pid if process else None, "running": running,
            "ready": is_ready, "targets": (targets(url) or {}) if is_ready else {}}


def node_exporter_status(url: str, process: ProcessRecord | None, port: int) -> dict[str, Any]:
    """What `sandbox status` shows of the node_exporter serving `.rollout/*.prom`."""
    running = process is not None and process.alive()
    return {"url": url, "port": port, "pid": process.pid if process else None, "running": running,
            "ready": running and ready(url, "/metrics")}
