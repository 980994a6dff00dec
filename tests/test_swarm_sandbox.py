"""`rollout sandbox up --runtime swarm --replicas 2`, used from the host through `rollout` as any sandbox is.

One sandbox for the module (it starts a second dockerd, a swarm, two real LiteLLM replicas and
Redis in a network namespace of its own): the tests run in file order, the last one takes it down
and checks nothing is left. While it comes up and after it is gone, the machine's own interfaces
(`ip -brief addr`, the host's namespace) never show an address the swarm made.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from rollout_cli.sandbox.state import load_state
from support import wait_until
from test_json_contract import valid

# the timeout: up waits READY_S at most, and two replicas on two loaded cores take minutes
pytestmark = [pytest.mark.xdist_group("swarm_sandbox"), pytest.mark.docker, pytest.mark.slow(600),
              pytest.mark.timeout(1500)]

READY_S = 300  # two LiteLLM replicas starting at once on two shared cores
SERVICE = "sandbox_litellm"
RECORDED = "rollout.replicas-before-stop"
# what swarm's own networks would put on an interface (ingress, docker_gwbridge, the namespace's veth)
FOREIGN = re.compile(r"\b(198\.1[89]\.|10\.|172\.(1[6-9]|2\d|3[01])\.)")


def host_addresses() -> str:
    return subprocess.run(["ip", "-brief", "addr"], capture_output=True, text=True, check=True, timeout=10).stdout


def cli(*args: str, timeout: float = READY_S + 120,
        env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`rollout ARGS` on the host, as a user runs it (no DOCKER_HOST: the workspace names the engine)."""
    base = {k: v for k, v in os.environ.items() if k not in ("DOCKER_HOST", "COLUMNS", "LINES")}
    return subprocess.run([sys.executable, "-m", "rollout_cli", *args], capture_output=True, text=True,
                          env={**base, "COLUMNS": "250", **(env or {})}, timeout=timeout)


def cli_json(*args: str, code: int = 0, env: dict[str, str] | None = None) -> dict[str, Any]:
    done = cli(*args, "--json", env=env)
    assert done.returncode == code, done.stdout + done.stderr
    return json.loads(done.stdout)


class Box:
    def __init__(self, root: Path, up: dict[str, Any], before: str, seen: list[str]) -> None:
        self.root, self.up, self.before, self.seen = root, up, before, seen
        state = load_state(root)
        assert state is not None
        self.state = state

    def ws(self, *args: str, code: int = 0) -> dict[str, Any]:
        return cli_json("-w", str(self.root), *args, code=code)

    def service(self) -> dict[str, Any]:
        import docker

        client = docker.DockerClient(base_url=self.up["docker_host"], timeout=30)
        try:
            service = client.services.get(SERVICE)
            return {"spec": service.attrs["Spec"],
                    "running": [t for t in service.tasks() if t["Status"]["State"] == "running"]}
        finally:
            client.close()


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    root = tmp_path_factory.mktemp("swarm-sandbox") / "sb"
    before = host_addresses()
    seen: list[str] = []
    done = threading.Event()

    def watch() -> None:  # the host's addresses all through `up`
        while not done.is_set():
            seen.append(host_addresses())
            done.wait(0.5)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:  # down also after an `up` that failed or was cut short: the namespace and its engine must go
        try:
            up = cli("sandbox", "up", str(root), "--runtime", "swarm", "--replicas", "2", "--gateway-port", "0",
                     "--simulator-port", "0", "--timeout", str(READY_S), "--json", timeout=READY_S + 400)
        finally:
            done.set()
            watcher.join(timeout=10)
        assert up.returncode == 0, up.stdout + up.stderr
        yield Box(root, json.loads(up.stdout), before, seen)
    finally:
        cli("sandbox", "down", str(root), "--no-report", timeout=300)


def test_up_writes_a_swarm_workspace_and_no_foreign_address_appears_on_the_host(box: Box) -> None:
    valid("sandbox up", box.up)
    assert box.up["runtime"] == "swarm" and box.up["service"] == SERVICE
    ns = box.state.netns
    assert box.up["docker_host"] == f"unix:///var/run/docker-{ns}.sock"
    assert box.up["docker_host"] != "unix:///var/run/docker.sock"
    text = (box.root / "rollout.yaml").read_text()
    assert "runtime: swarm" in text and f"service: {SERVICE}" in text and f"docker_host: {box.up['docker_host']}" in text
    assert oct((box.root / "gateway" / ".env").stat().st_mode & 0o777) == "0o600"  # it holds the master key
    assert len(box.seen) >= 3
    assert all(not FOREIGN.search(addresses) for addresses in [*box.seen, host_addresses()])
    # the machine's own engine never joined a swarm
    info = subprocess.run(["docker", "-H", "unix:///var/run/docker.sock", "info", "--format",
                           "{{.Swarm.LocalNodeState}}"], capture_output=True, text=True, timeout=30)
    assert info.stdout.strip() == "inactive"


def test_gateway_status_lists_both_replicas_and_prometheus_scrapes_each(box: Box) -> None:
    data = valid("gateway status", box.ws("gateway", "status"))
    assert (data["runtime"], data["target"], data["desired"], data["healthy"]) == ("swarm", SERVICE, 2, True)
    assert [r["url"] for r in data["replicas"]] == box.up["replica_urls"]
    assert all(r["healthy"] and r["state"] == "running" for r in data["replicas"])
    status = valid("sandbox status", cli_json("sandbox", "status", str(box.root)))
    assert status["healthy"] and status["runtime"] == "swarm"
    assert [r["slot"] for r in status["gateway"]["replicas"]] == [1, 2]
    assert status["gateway"]["relay"]["running"]

    def litellm_targets() -> list[str] | None:
        answer = httpx.get(f"{box.up['prometheus_url']}/api/v1/targets", timeout=5).json()
        active = [t for t in answer["data"]["activeTargets"] if t["labels"]["job"] == "litellm"]
        return sorted(t["scrapeUrl"] for t in active) if all(t["health"] == "up" for t in active) else None

    urls = wait_until(litellm_targets, 30, "Prometheus scraping both replicas")
    assert urls == sorted(f"{url}/metrics/" for url in box.up["replica_urls"])


def test_the_gateway_url_spreads_requests_over_the_replicas(box: Box) -> None:
    key = (box.root / ".rollout" / "master.key").read_text().strip()
    headers = {"Authorization": f"Bearer {key}"}

    def served(url: str) -> float:
        text = httpx.get(f"{url}/metrics/", headers=headers, timeout=10).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith("litellm_proxy_total_requests_metric_total{"))

    before = [served(url) for url in box.up["replica_urls"]]
    for _ in range(4):  # a connection each, as the sample app sends them: the relay balances connections
        answer = httpx.post(f"{box.up['gateway_url']}/v1/chat/completions", headers=headers, timeout=60,
                            json={"model": "glm-4.5-air", "messages": [{"role": "user", "content": "hi"}]})
        assert answer.status_code == 200, answer.text
    after = wait_until(lambda: (lambda now: now if sum(now) - sum(before) >= 4 else None)(
        [served(url) for url in box.up["replica_urls"]]), 30, "the replicas to count the requests")
    assert all(a > b for a, b in zip(after, before, strict=True))  # round-robin: each replica served some


def test_level_3_drill_changes_nothing_then_scales_to_0_and_gateway_start_restores_the_count(box: Box) -> None:
    for dry in ("--dry-run", "--drill"):
        looked = cli("-w", str(box.root), "rollback", "--level", "3", dry)
        assert looked.returncode == 0, looked.stdout + looked.stderr
        service = box.service()
        assert service["spec"]["Mode"]["Replicated"]["Replicas"] == 2 and RECORDED not in service["spec"]["Labels"]
        assert len(service["running"]) == 2

    traffic = subprocess.Popen([sys.executable, "-m", "rollout_cli", "sandbox", "traffic", "--rps", "3",
                                "--duration", "60", "--json"], cwd=box.root, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "ROLLOUT_WORKSPACE": str(box.root)})
    try:
        wait_until(lambda: cli_json("sandbox", "status", str(box.root))["app"]["counts"].get("gateway", 0) > 0
                   or cli_json("sandbox", "status", str(box.root))["app"]["counts"].get("direct", 0) > 0,
                   30, "the app's traffic")
        result = box.ws("rollback", "--level", "3", "--yes", "--reason", "swarm sandbox test")
    finally:
        traffic.wait(timeout=120)
    levels = result["levels"]
    assert [lvl["level"] for lvl in levels] == [1, 2, 3]
    assert levels[0]["steps"][-1]["type"] == "verify.traffic" and levels[0]["steps"][-1]["status"] == "ok"
    level3 = levels[2]["steps"]
    assert (level3[0]["status"], level3[0]["detail"]) == ("ok", f"stopped service {SERVICE} (stopped)")
    service = box.service()
    assert service["spec"]["Mode"]["Replicated"]["Replicas"] == 0 and service["running"] == []
    assert service["spec"]["Labels"][RECORDED] == "2"
    stopped = box.ws("gateway", "status", code=4)
    assert stopped["replicas"] == [] and stopped["state"]["status"] == "stopped"

    started = box.ws("gateway", "start", "--timeout", str(READY_S))
    assert started["changed"] and started["healthy"]
    service = box.service()
    assert service["spec"]["Mode"]["Replicated"]["Replicas"] == 2 and RECORDED not in service["spec"]["Labels"]
    after = box.ws("gateway", "status")
    assert after["healthy"] and [r["healthy"] for r in after["replicas"]] == [True, True]


def test_down_leaves_no_namespace_engine_mount_or_process_and_the_host_addresses_as_before(box: Box) -> None:
    ns, state = box.state.netns, box.state
    pids = [p.pid for p in (state.simulator, state.relay, state.prometheus, state.node_exporter, state.receiver)
            if p is not None]
    engine_pid = int(Path(f"/var/run/docker-{ns}.pid").read_text())
    # down keeps the engine's images as the image cache: a private one here, so no other sandbox claims it first
    cache = Path(f"/var/lib/rollout-test-cache-{secrets.token_hex(4)}")
    try:
        cache.mkdir()
        down = cli_json("sandbox", "down", str(box.root), "--no-report",
                        env={"ROLLOUT_SWARM_IMAGE_CACHE": str(cache / "images")})
        kept = (cache / "images" / "rollout-images").read_text().splitlines()
        assert f"{box.state.image} {_machine_id(box.state.image)}" in kept
        left = {p.name for p in (cache / "images").iterdir()}
        assert {"image", "overlay2"} <= left and not {"swarm", "network", "containers", "volumes", "containerd"} & left
        assert str(cache) not in Path("/proc/mounts").read_text()
        # handed to the machine, as a down without the variable would have (unless another one is there)
        subprocess.run(["mv", "-T", str(cache / "images"), "/var/lib/docker-rollout-image-cache"],
                       capture_output=True, timeout=30)
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    assert any(f"swarm engine and network namespace {ns}" in item for item in down["stopped"])
    assert not Path(f"/var/run/netns/{ns}").exists()
    assert ns not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
    assert not Path(f"/var/run/docker-{ns}.sock").exists() and not Path(f"/var/lib/docker-{ns}").exists()
    assert not Path(f"/var/run/docker-{ns}").exists()
    assert ns not in Path("/proc/mounts").read_text()
    for pid in [*pids, engine_pid]:
        assert not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    assert not [p for p in Path("/proc").iterdir() if p.name.isdigit() and ns in _cmdline(p)]
    assert load_state(box.root) is None
    assert host_addresses() == box.before


def _machine_id(image: str | None) -> str:
    return subprocess.run(["docker", "-H", "unix:///var/run/docker.sock", "image", "inspect", "--format", "{{.Id}}",
                           str(image)], capture_output=True, text=True, check=True, timeout=30).stdout.strip()


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def test_replicas_without_the_swarm_runtime_is_bad_input(tmp_path: Path) -> None:
    done = cli("sandbox", "up", str(tmp_path / "sb"), "--runtime", "process", "--replicas", "2")
    assert done.returncode == 2
    assert "--replicas goes with --runtime swarm, not process; add --runtime swarm" in done.stderr
    assert not (tmp_path / "sb").exists() or not any((tmp_path / "sb").iterdir())
    done = cli("sandbox", "up", str(tmp_path / "sb"), "--runtime", "swarm", "--replicas", "0")
    assert done.returncode == 2 and "--replicas is 0; use 1..16" in done.stderr


