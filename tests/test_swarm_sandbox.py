"""`rollout sandbox up --runtime swarm --replicas 2`, used from the host through `rollout` as any sandbox is.

One sandbox for the module (it starts a second dockerd, a swarm, two real LiteLLM replicas and
Redis in a network namespace of its own): the tests run in file order, the last one takes it down
and checks nothing is left. While it comes up and after it is gone, the machine's own interfaces
(`ip -brief addr`, the host's namespace) never show an address the swarm made.
"""

from __future__ import annotations

import contextlib
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
from support import app_counts, rollout, scraped_after_now, wait_until, without_redis
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


def cli_json(*args: str, code: int | None = 0, env: dict[str, str] | None = None) -> dict[str, Any]:
    done = cli(*args, "--json", env=env)
    assert code is None or done.returncode == code, done.stdout + done.stderr
    return json.loads(done.stdout)


class Box:
    def __init__(self, root: Path, up: dict[str, Any], before: str, seen: list[str]) -> None:
        self.root, self.up, self.before, self.seen = root, up, before, seen
        state = load_state(root)
        assert state is not None
        self.state = state

    def ws(self, *args: str, code: int | None = 0) -> dict[str, Any]:
        return cli_json("-w", str(self.root), *args, code=code)

    @property
    def key(self) -> str:
        return (self.root / ".rollout" / "master.key").read_text().strip()

    def workspace(self, folder: Path, gateway_url: str, config: Path, **extra: str) -> Path:
        """A second workspace on this sandbox's app, master key and gateway (at `gateway_url`), with `config`."""
        from rollout_cli.sandbox.sample_app import workspace_yaml

        folder.mkdir(parents=True, exist_ok=True)
        (folder / "rollout.yaml").write_text(workspace_yaml(
            str(self.root / "app"), gateway_url, container=None, master_key_env="ROLLOUT_SANDBOX_MASTER_KEY",
            master_key_file=str(self.root / ".rollout" / "master.key"), config=str(config), **extra))
        return folder

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

    waited = cli("-w", str(box.root), "gateway", "wait", "--timeout", str(READY_S))
    assert waited.returncode == 0, waited.stdout + waited.stderr
    assert f"all 2 replicas of {SERVICE} ready" in waited.stderr + waited.stdout
    assert data["state"]["image"] == box.state.image and data["state"]["status"] == "running"
    for replica in data["replicas"]:
        assert replica["node"] and replica["node"] != "-" and replica["restarts"] == 0 and replica["readiness"]["ok"]
    text = cli("-w", str(box.root), "gateway", "status")
    assert text.returncode == 0, text.stdout + text.stderr
    assert "replicas   2/2 running" in text.stdout and "replica 2  ok: task running" in text.stdout
    logs = valid("gateway logs", box.ws("gateway", "logs", "--tail", "100"))  # the last 100 of each replica
    assert logs["runtime"] == "swarm" and logs["target"] == SERVICE
    assert sum("LiteLLM: Proxy initialized with Config" in line for line in logs["lines"]) == 2


def test_the_gateway_url_spreads_requests_over_the_replicas(box: Box) -> None:
    headers = {"Authorization": f"Bearer {box.key}"}

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


def replica_requests(box: Box) -> list[float]:
    """The app requests each replica has counted since it started, from its own /metrics/ (no Prometheus)."""
    from rollout_cli.rollout.metrics import summarize

    return [float(summarize(httpx.get(f"{url}/metrics/", headers={"Authorization": f"Bearer {box.key}"},
                                      timeout=10).text)["requests"]) for url in box.up["replica_urls"]]


def by_agent(box: Box, window: dict[str, Any]) -> dict[str, Any]:
    """What Prometheus holds of the gateway's request counters at the window's edges, by user agent and replica."""
    from rollout_cli.rollout.promql import Prometheus

    prom = Prometheus(box.up["prometheus_url"])
    expr = "sum by (user_agent, instance) (litellm_proxy_total_requests_metric_total)"
    return {edge: {f"{s.labels.get('user_agent')} {s.labels.get('instance')}": s.value
                   for s in prom.query(expr, window[edge])} for edge in ("start", "end")}


def test_the_window_gates_count_the_requests_of_both_replicas_as_the_app_counted_them(box: Box) -> None:
    # every series an earlier test made is in Prometheus before the stage begins: one first scraped after it
    # (its target's scrapes failing meanwhile) would look born in the window and be counted in it
    scraped_after_now(box.root)
    moved = box.ws("advance", "--yes", "--skip-soak", "--reason", "swarm sandbox test")
    assert (moved["verdict"], moved["next"]) == ("GO", 10) and moved["post_check"]["ok"], moved
    served, sent = replica_requests(box), app_counts(box.root)
    traffic = box.ws("sandbox", "traffic", "--rps", "30", "--duration", "10")
    through = app_counts(box.root)["gateway"]["requests"] - sent["gateway"]["requests"]
    assert traffic["paths"]["gateway"]["requests"] == through >= 10, traffic
    # LiteLLM counts a request just after answering it; then the window runs to Prometheus's last scrape
    now = wait_until(lambda: (lambda n: n if sum(n) - sum(served) >= through else None)(replica_requests(box)),
                     60, "both replicas to count the app's requests")
    assert all(after > before for after, before in zip(now, served, strict=True))  # each replica served some
    scraped_after_now(box.root)
    report = box.ws("report", code=None)  # its verdict is not the point: the window's counts are
    window = report["snapshot"]["window"]
    assert window["source"] == "prometheus" and window["problem"] is None, window
    # every request the app sent through the gateway since the stage began, summed over the replicas: no more
    # (rollout's own checks are left out by their user agent), no fewer
    assert window["requests"] == through and window["failed"] == 0, (through, by_agent(box, window))
    gates = {g["name"]: g for g in report["gates"]}
    assert gates["error rate"]["value"] == f"0.00% (0 of {through:.0f})"
    assert gates["fallback rate"]["value"] == f"0.00% (0 of {through:.0f})"
    assert gates["replicas"]["status"] == "pass" and gates["replicas"]["value"] == "2 of 2 ready"


def test_a_killed_replica_is_named_by_health_and_advance_then_its_replacement_comes_back(box: Box) -> None:
    import docker

    second = next(t for t in box.service()["running"] if t["Slot"] == 2)
    killed_task, killed = second["ID"][:12], second["Status"]["ContainerStatus"]["ContainerID"]
    client = docker.DockerClient(base_url=box.up["docker_host"], timeout=30)
    try:
        client.containers.get(killed).kill()
    finally:
        client.close()

    health = cli("-w", str(box.root), "health", "--json")
    data = json.loads(health.stdout)
    slot_2 = data["replicas"]["replicas"][1]
    assert slot_2["slot"] == 2 and not slot_2["healthy"], data["replicas"]
    # failed and not yet replaced: NO-GO (exit 1); the swarm's replacement already starting: HOLD (exit 3)
    starting = data["replicas"]["verdict"] == "inconclusive"
    assert data["replicas"]["verdict"] in ("fail", "inconclusive") and health.returncode == (3 if starting else 1)
    assert f"replica 2 (task {slot_2['task_id']}" in data["replicas"]["reason"], data["replicas"]
    assert data["replicas"]["reason"] in data["messages"]

    advance = cli("-w", str(box.root), "advance", "--dry-run", "--json")
    decided = json.loads(advance.stdout)
    gate = next(g for g in decided["gates"] if g["name"] == "replicas")
    assert gate["status"] in ("fail", "inconclusive") and "replica 2 (task " in gate["reason"], gate
    assert decided["verdict"] == {"fail": "NO-GO", "inconclusive": "HOLD"}[gate["status"]], decided
    assert gate["reason"] in decided["reasons"] and advance.returncode in (1, 3)
    assert box.service()["spec"]["Mode"]["Replicated"]["Replicas"] == 2  # a dry run changes nothing

    def replaced() -> dict[str, Any] | None:
        replica = box.ws("gateway", "status", code=None)["replicas"][1]
        return replica if replica["healthy"] and replica["task_id"] != killed_task else None

    replica = wait_until(replaced, READY_S, "the swarm's replacement of replica 2 ready", poll=2.0)
    assert replica["container_id"] != killed[:12] and replica["restarts"] >= 1
    again = box.ws("health")
    assert again["replicas"]["verdict"] == "pass" and [r["healthy"] for r in again["replicas"]["replicas"]] == [True, True]


def test_a_primary_one_replica_cooled_down_is_in_cooldown_on_the_other(box: Box, tmp_path: Path) -> None:
    """Redis shares the router's state: `rollout health` asking replica 2 finds the primary replica 1 cooled down,
    without replica 2 sending it a request."""
    from rollout_cli.simulator import SimulatorAdmin

    primary = "glm-4.5-air"
    # a workspace whose gateway is one replica's own port: `health` asks that replica alone
    config = box.root / "gateway" / "litellm-config.yaml"
    one_replica = {slot: str(box.workspace(tmp_path / f"replica-{slot}", url, config))
                   for slot, url in enumerate(box.up["replica_urls"], 1)}

    def health(slot: int) -> dict[str, Any]:  # in this process: a new one's start-up would eat into the 5 s
        done = rollout("-w", one_replica[slot], "health", "--model", primary, "--json")
        return next(m for m in json.loads(done.stdout)["models"] if m["alias"] == primary)

    def upstream_calls() -> int:  # the requests for the primary the simulator (OpenRouter) received
        stats = SimulatorAdmin(box.state.simulator_url).stats()
        return sum(entry["requests"] for model, entry in stats["models"].items() if model.startswith("z-ai/glm-4.5-air"))

    def cooled(model: dict[str, Any]) -> bool:
        return (model["error_class"] or "").startswith("cooldown")

    # A malformed answer: an error LiteLLM cools a deployment down for (the sandbox: 5 s). Replica 2 is asked
    # right after replica 1 reports the cooldown, the fault cleared; should that come after the 5 s (replica 2
    # then asks upstream and is served: no failure of its own), the round is tried again.
    admin = SimulatorAdmin(box.state.simulator_url)
    rounds = []
    for _ in range(3):
        box.ws("sandbox", "fault", primary, "--mode", "malformed")
        try:
            first = wait_until(lambda: (lambda m: m if cooled(m) else None)(health(1)), 60,
                               "replica 1 to cool the primary down")
        finally:
            admin.clear()  # from here on the primary would answer anyone who asked it
        before = upstream_calls()
        other = health(2)
        rounds.append((first, other, upstream_calls() - before))
        if cooled(other) and upstream_calls() == before:
            break
    first, other, asked = rounds[-1]
    # replica 2 never asked it: the cooldown came from Redis (the failures behind it are replica 1's, so
    # replica 2 reads no cause: "down" where replica 1 says "broken")
    assert cooled(first) and first["status"] != "healthy", rounds
    assert cooled(other) and other["status"] != "healthy" and asked == 0, rounds


def scraping_workspace(box: Box, tmp_path: Path) -> Path:
    """A workspace on the sandbox's replicas without Prometheus (rollout scrapes every replica's /metrics/ and adds
    them up) and with the gateway's config minus Redis (what a team that did not set it up runs), a plan allowing
    one ready replica of two."""
    config = tmp_path / "litellm-config-without-redis.yaml"
    config.write_text(without_redis((box.root / "gateway" / "litellm-config.yaml").read_text()))
    ws = box.workspace(tmp_path / "ws", box.up["gateway_url"], config, runtime="swarm", playbooks="./playbooks",
                       extra_gateway=f"  service: {SERVICE}\n  docker_host: {box.up['docker_host']}\n")
    (ws / "playbooks").mkdir()
    (ws / "playbooks" / "rollout.yaml").write_text("stages: [10, 50, 100]\ngates: {min_ready_replicas: 1}\n")
    return ws


def test_one_stuck_replica_is_seen_a_plan_may_allow_it_and_gateway_restart_replaces_every_replica(
        box: Box, tmp_path: Path) -> None:
    import docker

    ws = scraping_workspace(box, tmp_path)
    client = docker.DockerClient(base_url=box.up["docker_host"], timeout=30)
    second = next(t for t in box.service()["running"] if t["Slot"] == 2)
    container = client.containers.get(second["Status"]["ContainerStatus"]["ContainerID"])
    # A hung process: the task still runs as far as the swarm knows. SIGSTOP, not `docker pause`: the cgroup
    # freezer fails now and then on a loaded machine ("unable to freeze").
    container.kill(signal="SIGSTOP")
    try:
        data = box.ws("gateway", "status", code=4)
        first, stuck = data["replicas"]
        assert first["healthy"] and not stuck["healthy"]
        assert stuck["state"] == "running" and not stuck["liveliness"]["ok"]
        url = box.up["replica_urls"][1]
        assert any(f"replica 2 ({url}): liveliness" in m for m in data["messages"]), data["messages"]
        text = cli("-w", str(box.root), "gateway", "status")
        assert text.returncode == 4
        assert "replica 2  not ready" in text.stdout and "replica 1  ok" in text.stdout
        # rollout's own scrape adds the replicas up: without replica 2 the sum is incomplete, never stored
        sample = cli_json("-w", str(ws), "watch", "--count", "1", code=None)
        assert (f"replica 2 (task {stuck['task_id']}, {url}, task running) did not answer"
                in sample["metrics_error"]), sample["metrics_error"]
        assert "the sum over the replicas would be incomplete" in sample["metrics_error"]
        # gates.min_ready_replicas: 1 in the workspace's plan: the stuck replica is a warning, not NO-GO
        advance = cli_json("-w", str(ws), "advance", "--dry-run", code=None)
        gate = next(g for g in advance["gates"] if g["name"] == "replicas")
        assert (gate["status"], gate["value"], gate["threshold"]) == ("pass", "1 of 2 ready", ">= 1 ready"), gate
        assert any(w.startswith("replica 2 (task ") and w.endswith("(the gate allows it)")
                   for w in advance["warnings"]), advance["warnings"]
    finally:
        with contextlib.suppress(docker.errors.APIError):  # its healthcheck may have had the swarm replace it
            container.kill(signal="SIGCONT")
        client.close()
    assert cli("-w", str(box.root), "gateway", "wait", "--timeout", str(READY_S)).returncode == 0

    before = {t["ID"] for t in box.service()["running"]}
    restarted = valid("gateway restart", box.ws("gateway", "restart", "--timeout", str(2 * READY_S)))
    assert restarted["changed"] and restarted["healthy"]
    now = box.service()["running"]
    assert len(now) == 2 and not before & {t["ID"] for t in now}


def test_without_prometheus_rollout_adds_up_every_replicas_requests_and_warns_of_no_redis(
        box: Box, tmp_path: Path) -> None:
    ws = scraping_workspace(box, tmp_path)
    baseline = cli_json("-w", str(ws), "watch", "--count", "1", code=None)
    assert baseline["metrics_error"] is None, baseline
    headers = {"Authorization": f"Bearer {box.key}", "User-Agent": "swarm-test-app"}
    for url, count in zip(box.up["replica_urls"], (7, 5), strict=True):  # to each replica's own port
        for _ in range(count):
            answer = httpx.post(f"{url}/v1/chat/completions", headers=headers, timeout=60, json={
                "model": "glm-4.5-air", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8})
            assert answer.status_code == 200, answer.text

    def counted() -> float:  # LiteLLM counts a request just after answering it
        return float(cli_json("-w", str(ws), "watch", "--count", "1", code=None)["window"]["requests"])

    wait_until(lambda: counted() >= 12, 60, "the replicas' counters to show the 12 requests")
    assert counted() == 12
    samples = [json.loads(line) for line in (ws / ".rollout" / "samples.jsonl").read_text().splitlines()]
    assert [(r["slot"], r["url"]) for r in samples[-1]["metrics"]["summed"]] == list(
        enumerate(box.up["replica_urls"], 1))

    report = cli_json("-w", str(ws), "report", code=None)
    window = report["snapshot"]["window"]
    assert window["requests"] == 12 and [r["slot"] for r in window["summed"]] == [1, 2]
    error_rate = next(g for g in report["gates"] if g["name"] == "error rate")
    assert error_rate["value"] == "0.00% (0 of 12)" and "summed over replicas 1, 2" in error_rate["source"]
    replicas = next(g for g in report["gates"] if g["name"] == "replicas")
    assert (replicas["status"], replicas["value"]) == ("pass", "2 of 2 ready")
    # two replicas, no Redis in router_settings: each would keep its own cooldowns
    warning = (f"the gateway runs as 2 processes (2 replicas of service {SERVICE}) and router_settings "
               f"in {tmp_path / 'litellm-config-without-redis.yaml'} has no Redis")
    assert any(w.startswith(warning) for w in report["warnings"]), report["warnings"]


def test_level_3_drill_changes_nothing_then_scales_to_0_and_gateway_start_restores_the_count(box: Box) -> None:
    for dry in ("--dry-run", "--drill"):
        looked = cli("-w", str(box.root), "rollback", "--level", "3", dry)
        assert looked.returncode == 0, looked.stdout + looked.stderr
        service = box.service()
        assert service["spec"]["Mode"]["Replicated"]["Replicas"] == 2 and RECORDED not in service["spec"]["Labels"]
        assert len(service["running"]) == 2
    assert (f"scale service {SERVICE} from 2 replicas to 0 (recording 2 in its label {RECORDED})"
            in cli("-w", str(box.root), "rollback", "--level", "3", "--dry-run").stdout)

    traffic = subprocess.Popen([sys.executable, "-m", "rollout_cli", "sandbox", "traffic", "--rps", "3",
                                "--duration", "60", "--json"], cwd=box.root, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "ROLLOUT_WORKSPACE": str(box.root)})
    try:
        wait_until(lambda: cli_json("sandbox", "status", str(box.root))["app"]["counts"].get("gateway", 0) > 0
                   or cli_json("sandbox", "status", str(box.root))["app"]["counts"].get("direct", 0) > 0,
                   30, "the app's traffic")
        result = box.ws("rollback", "--level", "3", "--yes", "--reason", "swarm sandbox test")
    finally:  # the traffic had to last through the rollback, not to its 60 s end
        traffic.terminate()
        traffic.wait(timeout=30)
    levels = result["levels"]
    assert [lvl["level"] for lvl in levels] == [1, 2, 3]
    assert levels[0]["steps"][-1]["type"] == "verify.traffic" and levels[0]["steps"][-1]["status"] == "ok"
    level3 = levels[2]["steps"]
    assert (level3[0]["status"], level3[0]["detail"]) == ("ok", f"stopped service {SERVICE} (stopped)")
    assert any(s["status"] == "ok" and f"gateway {SERVICE} stopped" in s["detail"] and s["detail"].startswith("verified: ")
               for s in level3[1:]), level3
    service = box.service()
    assert service["spec"]["Mode"]["Replicated"]["Replicas"] == 0 and service["running"] == []
    assert service["spec"]["Labels"][RECORDED] == "2"
    stopped = box.ws("gateway", "status", code=4)
    assert stopped["replicas"] == [] and stopped["state"]["status"] == "stopped"
    assert any("is scaled to 0" in m for m in stopped["messages"]), stopped["messages"]

    # At 0 without the recorded count (as when scaled to 0 by hand): start refuses, saying how to scale.
    # (Here, in the level-3 stopped state: a test of its own would stop and start both replicas again.)
    import docker

    client = docker.DockerClient(base_url=box.up["docker_host"], timeout=30)
    try:
        labels = {k: v for k, v in service["spec"]["Labels"].items() if k != RECORDED}
        client.services.get(SERVICE).update(labels=labels)
        refused = cli("-w", str(box.root), "gateway", "start")
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert f"records no replica count to restore (label {RECORDED})" in refused.stderr
        assert box.service()["spec"]["Mode"]["Replicated"]["Replicas"] == 0
        client.services.get(SERVICE).update(labels={**labels, RECORDED: "2"})
    finally:
        client.close()

    started = valid("gateway start", box.ws("gateway", "start", "--timeout", str(READY_S)))
    assert started["changed"] and started["healthy"]
    service = box.service()
    assert service["spec"]["Mode"]["Replicated"]["Replicas"] == 2 and RECORDED not in service["spec"]["Labels"]
    after = box.ws("gateway", "status")
    assert after["healthy"] and [r["healthy"] for r in after["replicas"]] == [True, True]
    assert not box.ws("gateway", "start", "--no-wait")["changed"]

    # `gateway stop` on a swarm: scaled to 0 with the count recorded, as level 3 does it (down comes next: no
    # replica is started again for it)
    stopped = valid("gateway stop", box.ws("gateway", "stop"))
    assert stopped["changed"] and stopped["messages"][0] == f"stopped {SERVICE} (stopped)", stopped
    service = box.service()
    assert service["spec"]["Mode"]["Replicated"]["Replicas"] == 0 and service["spec"]["Labels"][RECORDED] == "2"
    assert not box.ws("gateway", "stop")["changed"]


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


