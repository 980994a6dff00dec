"""The gateway as a replicated Docker Swarm service (`gateway.runtime: swarm`), on a real swarm.

The swarm is the one scripts/swarm-up.sh makes: a second dockerd in a network namespace
of its own, never the machine's engine. The tests deploy the shipped deploy/docker-stack.yml
(the real LiteLLM image, two replicas, a port per slot) as a stack of their own and remove
it afterwards. The replicas answer on the namespace's loopback, so `rollout` runs inside it
(`nsenter --net`), as an operator there would; the Docker engine is reached over its unix
socket, which crosses namespaces. A missing swarm fails the tests (never skips them):
run scripts/swarm-up.sh.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import subprocess
import sys
from pathlib import Path

import docker.errors
import httpx
import pytest

from rollout_cli.gateway.api import Probe
from rollout_cli.gateway.control import ReplicaHealth, replicas_problem
from rollout_cli.gateway.runtime import REPLICA_PORT_LABEL, Replica, replica_url, workers_of
from rollout_cli.gateway.topology import Topology, load_topology, shared_state_warning
from rollout_cli.io.container import ContainerState
from rollout_cli.io.netns import inside, namespace_path
from rollout_cli.io.swarm import ServiceState, TaskState
from rollout_cli.sandbox.sample_app import workspace_yaml, write_sample_app
from rollout_cli.simulator import SimulatorAdmin
from support import rollout, wait_until
from test_json_contract import valid

pytestmark = pytest.mark.xdist_group("swarm")

REPO = Path(__file__).resolve().parent.parent
NS = os.environ.get("ROLLOUT_SWARM_NS", "rollout-swarm")
SOCKET = os.environ.get("ROLLOUT_SWARM_SOCKET", f"/var/run/docker-{NS}.sock")
IMAGE = "rollout/litellm:local"
REDIS_IMAGE = "rollout/redis:local"
READY_S = 300  # two LiteLLM replicas starting at once on two shared cores


@pytest.fixture(scope="module")
def swarm():  # type: ignore[no-untyped-def]
    """A client of the namespaced swarm's engine; fails the test when there is none."""
    import docker

    reason = None
    try:
        client = docker.DockerClient(base_url=f"unix://{SOCKET}", timeout=60)
        if client.info()["Swarm"]["LocalNodeState"] != "active":
            reason = f"the engine at {SOCKET} is not in swarm mode"
        elif not Path(f"/var/run/netns/{NS}").exists():
            reason = f"network namespace {NS} is missing"
        else:
            client.images.get(IMAGE)
            client.images.get(REDIS_IMAGE)
    except docker.errors.ImageNotFound as exc:
        reason = f"an image is not in the swarm's engine ({exc.explanation})"
    except docker.errors.DockerException as exc:
        reason = f"no swarm engine answers at {SOCKET}: {str(exc).splitlines()[0]}"
    if reason is None:
        yield client
        client.close()
        return
    if os.environ.get("ROLLOUT_TESTS_ALLOW_NO_DOCKER") == "1":
        pytest.skip(f"{reason} (ROLLOUT_TESTS_ALLOW_NO_DOCKER=1)")
    pytest.fail(f"{reason}. Swarm tests need scripts/swarm-up.sh (a single-node swarm in a network "
                "namespace of its own)", pytrace=False)


# The app's requests, sent inside the namespace straight to one replica's port: ARGV port, count, key.
SEND = """
import json, sys, urllib.request
port, count, key = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
body = json.dumps({"model": "glm-4.5-air", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 8}).encode()
codes = []
for _ in range(count):
    request = urllib.request.Request(f"http://127.0.0.1:{port}/v1/chat/completions", data=body, headers={
        "Authorization": f"Bearer {key}", "Content-Type": "application/json", "User-Agent": "swarm-test-app"})
    with urllib.request.urlopen(request, timeout=120) as answer:
        codes.append(answer.status)
print(json.dumps(codes))
"""


class Stack:
    """deploy/docker-stack.yml deployed under a name of its own, with a workspace pointing at it.

    The replicas' upstream is the OpenRouter simulator, run inside the namespace
    (their loopback is the namespace's). The workspace's gateway.config is the shipped
    config without Redis: what rollout judges for its shared-state warning.
    """

    def __init__(self, root: Path, client) -> None:  # type: ignore[no-untyped-def]
        self.client = client
        self.name = f"rt{secrets.token_hex(3)}"
        self.service = f"{self.name}_litellm"
        self.port_base = 20000 + secrets.randbelow(900) * 10  # inside our own namespace: nobody else's ports
        self.simulator_port = self.port_base + 9
        self.key = "sk-" + secrets.token_urlsafe(32)
        simulator_key = "sk-or-" + secrets.token_hex(8)
        deploy = root / "deploy"
        deploy.mkdir()
        for name in ("docker-stack.yml", "litellm-config.yaml"):
            shutil.copy(REPO / "deploy" / name, deploy / name)
        self.config_without_redis = root / "litellm-config-without-redis.yaml"
        self.config_without_redis.write_text(_without_redis((REPO / "deploy" / "litellm-config.yaml").read_text()))
        (deploy / ".env").write_text(f"LITELLM_MASTER_KEY={self.key}\nOPENROUTER_API_KEY={simulator_key}\n"
                                     f"OPENROUTER_API_BASE=http://127.0.0.1:{self.simulator_port}/api/v1\n")
        self.deploy = deploy
        self.simulator_log = root / "simulator.log"
        with open(self.simulator_log, "wb") as log:
            self.simulator = subprocess.Popen(  # nsenter execs python: this pid is the simulator's
                ["nsenter", f"--net=/var/run/netns/{NS}", sys.executable, "-m", "rollout_cli.simulator",
                 "--host", "127.0.0.1", "--port", str(self.simulator_port), "--api-key", simulator_key],
                stdout=log, stderr=subprocess.STDOUT)
        write_sample_app(root / "app", percentage=10)
        self.ws = root / "ws"
        self.ws.mkdir()
        (self.ws / "rollout.yaml").write_text(workspace_yaml(
            container=None, gateway_url=f"http://127.0.0.1:{self.port_base + 1}", runtime="swarm",
            extra_gateway=f"  service: {self.service}\n", config=str(self.config_without_redis)))

    def run(self, *args: str) -> tuple[int, dict]:
        """`rollout ARGS --json` inside the namespace: its exit code and its JSON."""
        done = self.cli(*args, "--json")
        text = done.stdout.strip()
        try:  # one document, or one line per sample (watch): the last
            return done.returncode, json.loads(text if text.startswith("{\n") else text.splitlines()[-1])
        except (ValueError, IndexError):
            raise AssertionError(done.stdout + done.stderr) from None

    def send(self, slot: int, count: int) -> None:
        """`count` app requests to replica `slot`'s own port; each must be answered 200."""
        done = subprocess.run(["nsenter", f"--net=/var/run/netns/{NS}", sys.executable, "-c", SEND,
                               str(self.port_base + slot), str(count), self.key],
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0 and json.loads(done.stdout) == [200] * count, done.stdout + done.stderr

    def close(self) -> None:
        self.simulator.terminate()
        try:
            self.simulator.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.simulator.kill()
            self.simulator.wait(timeout=10)

    def docker(self, *args: str) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "DOCKER_HOST": f"unix://{SOCKET}", "LITELLM_IMAGE": IMAGE,
               "LITELLM_REPLICAS": "2", "LITELLM_PORT_BASE": str(self.port_base),
               "REDIS_IMAGE": REDIS_IMAGE, "REDIS_PORT": str(self.port_base)}
        return subprocess.run(["docker", *args], capture_output=True, text=True, env=env, timeout=120,
                              cwd=self.deploy, check=True)

    def cli(self, *args: str, timeout: float = READY_S + 60) -> subprocess.CompletedProcess[str]:
        """`rollout -w WS ARGS` inside the swarm's namespace."""
        env = {**os.environ, "DOCKER_HOST": f"unix://{SOCKET}", "LITELLM_MASTER_KEY": self.key, "COLUMNS": "250"}
        argv = ["nsenter", f"--net=/var/run/netns/{NS}", sys.executable, "-m", "rollout_cli", "-w", str(self.ws),
                *args]
        return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)

    def json(self, *args: str, code: int = 0) -> dict:
        done = self.cli(*args, "--json")
        assert done.returncode == code, done.stdout + done.stderr
        return json.loads(done.stdout)

    def spec(self) -> dict:
        return self.client.services.get(self.service).attrs["Spec"]

    def tasks(self) -> list[dict]:
        return self.client.services.get(self.service).tasks()

    def running_tasks(self) -> list[dict]:
        return [t for t in self.tasks() if t["Status"]["State"] == "running"]


@pytest.fixture(scope="module")
def stack(swarm, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    box = Stack(tmp_path_factory.mktemp("swarm"), swarm)
    try:
        box.docker("stack", "deploy", "-c", "docker-stack.yml", box.name)
        yield box
    finally:
        box.close()
        subprocess.run(["docker", "-H", f"unix://{SOCKET}", "stack", "rm", box.name], capture_output=True, timeout=120)
        wait_until(lambda: not swarm.services.list(filters={"name": box.service})
                   and not swarm.containers.list(all=True, filters={"label": f"com.docker.stack.namespace={box.name}"},
                                                 ignore_removed=True),
                   120, "the test's stack gone")


def test_swarm_settings_are_checked(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "rollout.yaml").write_text(workspace_yaml(container=None, runtime="swarm"))
    result = rollout("-w", str(ws), "gateway", "status")
    assert result.exit_code == 2
    assert "'gateway.runtime' is swarm but 'gateway.service' is missing" in result.output
    (ws / "rollout.yaml").write_text(workspace_yaml(container="litellm", extra_gateway="  service: gw\n"))
    result = rollout("-w", str(ws), "gateway", "status")
    assert result.exit_code == 2
    assert "'gateway.service' is set but 'gateway.runtime' is docker" in result.output


@pytest.mark.docker
def test_an_engine_that_is_no_swarm_manager_is_named(tmp_path: Path) -> None:
    """The machine's own engine (never in swarm mode): exit 4, naming the engine and what to do."""
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "rollout.yaml").write_text(workspace_yaml(container=None, runtime="swarm", extra_gateway="  service: gw\n"))
    result = rollout("-w", str(ws), "gateway", "stop", env={"DOCKER_HOST": "unix:///var/run/docker.sock"})
    assert result.exit_code == 4
    assert ("the Docker engine at unix:///var/run/docker.sock is not a swarm manager, so it cannot look up "
            "service 'gw'; point DOCKER_HOST at a manager") in result.output


@pytest.mark.docker
@pytest.mark.slow(420)
def test_gateway_wait_then_status_shows_every_replica(stack: Stack) -> None:
    waited = stack.cli("gateway", "wait", "--timeout", str(READY_S))
    assert waited.returncode == 0, waited.stdout + waited.stderr
    assert f"all 2 replicas of {stack.service} ready" in waited.stderr + waited.stdout

    data = valid("gateway status", stack.json("gateway", "status"))
    assert (data["runtime"], data["target"], data["desired"], data["healthy"]) == ("swarm", stack.service, 2, True)
    assert data["state"]["image"] == IMAGE and data["state"]["status"] == "running"
    assert [r["slot"] for r in data["replicas"]] == [1, 2]
    for replica in data["replicas"]:
        assert replica["url"] == f"http://127.0.0.1:{stack.port_base + replica['slot']}"
        assert replica["state"] == "running" and replica["healthy"] and replica["readiness"]["ok"]
        assert replica["node"] and replica["node"] != "-" and replica["restarts"] == 0

    text = stack.cli("gateway", "status")
    assert text.returncode == 0, text.stdout + text.stderr
    assert "replicas   2/2 running" in text.stdout
    assert "replica 2  ok: task running" in text.stdout

    logs = valid("gateway logs", stack.json("gateway", "logs", "--tail", "100"))  # the last 100 of each replica
    assert logs["runtime"] == "swarm" and logs["target"] == stack.service
    assert sum("LiteLLM: Proxy initialized with Config" in line for line in logs["lines"]) == 2


@pytest.mark.docker
@pytest.mark.slow(420)
def test_a_primary_one_replica_cooled_down_is_skipped_by_the_other(stack: Stack) -> None:
    """Redis shares the router state: replica 2 skips the primary replica 1 cooled down, without trying it."""
    assert stack.cli("gateway", "wait", "--timeout", str(READY_S)).returncode == 0
    primary = "glm-4.5-air"

    def simulator() -> SimulatorAdmin:
        return SimulatorAdmin(f"http://127.0.0.1:{stack.simulator_port}")

    def stats() -> dict:
        with inside(namespace_path(NS)):  # the simulator answers in the namespace
            return simulator().stats()

    def primary_calls() -> int:
        return sum(entry["requests"] for model, entry in stats()["models"].items()
                   if model.startswith("z-ai/glm-4.5-air"))

    def ask(slot: int) -> httpx.Response:
        with inside(namespace_path(NS)), httpx.Client(timeout=60) as client:  # the replicas answer in the namespace
            return client.post(f"http://127.0.0.1:{stack.port_base + slot}/v1/chat/completions",
                               headers={"Authorization": f"Bearer {stack.key}"},
                               json={"model": primary, "messages": [{"role": "user", "content": "hi"}]})

    # a malformed answer: an error LiteLLM cools a deployment down for (a 5xx from OpenRouter it maps to a
    # connection error, which it never cools down)
    with inside(namespace_path(NS)):
        simulator().set_fault(primary, mode="malformed")
    try:
        def replica_1_cooled_it_down() -> bool:
            before = primary_calls()
            answer = ask(1)
            assert answer.status_code == 200, answer.text  # served by a fallback
            return primary_calls() == before  # replica 1 no longer tries the primary: it is cooling down

        wait_until(replica_1_cooled_it_down, 60, "replica 1 to cool the primary down")
        assert primary_calls() > 0
        with inside(namespace_path(NS)):
            simulator().reset_stats()
        answer = ask(2)
        assert answer.status_code == 200, answer.text
        assert primary_calls() == 0, stats()  # never tried: the cooldown came from Redis
        assert stats()["total"] >= 1
    finally:
        with inside(namespace_path(NS)):
            simulator().clear()

    def both_replicas_try_it_again() -> bool:  # its cooldown over (30 s): the next tests start from a clean state
        before = primary_calls()
        return ask(1).status_code == 200 and ask(2).status_code == 200 and primary_calls() >= before + 2

    wait_until(both_replicas_try_it_again, 120, "the primary's cooldown to end on both replicas")


@pytest.mark.docker
@pytest.mark.timeout(600)  # replicas replaced and started again on two shared cores
def test_one_stuck_replica_is_seen_while_the_other_answers(stack: Stack, swarm) -> None:  # type: ignore[no-untyped-def]
    second = next(t for t in stack.running_tasks() if t["Slot"] == 2)
    container = swarm.containers.get(second["Status"]["ContainerStatus"]["ContainerID"])
    # A hung process: the task still runs as far as the swarm knows. SIGSTOP, not `docker pause`: the cgroup
    # freezer fails now and then on a loaded machine ("unable to freeze").
    container.kill(signal="SIGSTOP")
    try:
        data = stack.json("gateway", "status", code=4)
        first, stuck = data["replicas"]
        assert first["healthy"] and not stuck["healthy"]
        assert stuck["state"] == "running" and not stuck["liveliness"]["ok"]
        assert any(f"replica 2 (http://127.0.0.1:{stack.port_base + 2}): liveliness" in m for m in data["messages"])
        text = stack.cli("gateway", "status")
        assert text.returncode == 4
        assert "replica 2  not ready" in text.stdout and "replica 1  ok" in text.stdout
        # rollout's own scrape adds the replicas up: without replica 2 the sum is incomplete, never stored
        _, sample = stack.run("watch", "--count", "1")
        assert f"replica 2 (task {stuck['task_id']}, http://127.0.0.1:{stack.port_base + 2}, task running) did not " \
               "answer" in sample["metrics_error"]
        assert "the sum over the replicas would be incomplete" in sample["metrics_error"]
    finally:
        with contextlib.suppress(docker.errors.APIError):  # its healthcheck may have had the swarm replace it
            container.kill(signal="SIGCONT")
    assert stack.cli("gateway", "wait", "--timeout", str(READY_S)).returncode == 0


@pytest.mark.docker
@pytest.mark.timeout(600)  # replicas replaced and started again on two shared cores
def test_requests_to_both_replicas_are_all_counted(stack: Stack) -> None:
    """No Prometheus: rollout scrapes every replica's /metrics/ and adds them up; the window counts all sent."""
    assert stack.cli("gateway", "wait", "--timeout", str(READY_S)).returncode == 0
    code, baseline = stack.run("watch", "--count", "1")
    assert code == 0 and baseline["metrics_error"] is None, baseline
    stack.send(1, 7)
    stack.send(2, 5)

    def counted() -> float:  # LiteLLM counts a request just after answering it
        return float(stack.run("watch", "--count", "1")[1]["window"]["requests"])

    wait_until(lambda: counted() >= 12, 60, "the replicas' counters to show the 12 requests")
    assert counted() == 12
    samples = [json.loads(line) for line in (stack.ws / ".rollout" / "samples.jsonl").read_text().splitlines()]
    assert [(r["slot"], r["url"]) for r in samples[-1]["metrics"]["summed"]] == [
        (1, f"http://127.0.0.1:{stack.port_base + 1}"), (2, f"http://127.0.0.1:{stack.port_base + 2}")]

    _, report = stack.run("report")
    window = report["snapshot"]["window"]
    assert window["requests"] == 12 and [r["slot"] for r in window["summed"]] == [1, 2]
    error_rate = next(g for g in report["gates"] if g["name"] == "error rate")
    assert error_rate["value"] == "0.00% (0 of 12)" and "summed over replicas 1, 2" in error_rate["source"]
    replicas = next(g for g in report["gates"] if g["name"] == "replicas")
    assert (replicas["status"], replicas["value"]) == ("pass", "2 of 2 ready")
    # two replicas, no Redis in router_settings: each keeps its own cooldowns
    warning = (f"the gateway runs as 2 processes (2 replicas of service {stack.service}) and router_settings "
               f"in {stack.config_without_redis} has no Redis")
    assert any(w.startswith(warning) for w in report["warnings"]), report["warnings"]


@pytest.mark.docker
@pytest.mark.timeout(600)  # replicas replaced and started again on two shared cores
def test_the_plan_may_allow_fewer_ready_replicas(stack: Stack) -> None:
    """gates.min_ready_replicas: 1 in the workspace's plan: a stuck replica is a warning, not NO-GO."""
    playbooks = stack.ws / "playbooks"
    playbooks.mkdir(exist_ok=True)
    (playbooks / "rollout.yaml").write_text("stages: [10, 50, 100]\ngates: {min_ready_replicas: 1}\n")
    config = stack.ws / "rollout.yaml"
    original = config.read_text()
    config.write_text(original + "playbooks: playbooks\n")
    try:
        assert stack.cli("gateway", "wait", "--timeout", str(READY_S)).returncode == 0
        container = stack.client.containers.get(
            next(t for t in stack.running_tasks() if t["Slot"] == 2)["Status"]["ContainerStatus"]["ContainerID"])
        container.kill(signal="SIGSTOP")
        try:
            _, advance = stack.run("advance", "--dry-run")
        finally:
            with contextlib.suppress(docker.errors.APIError):
                container.kill(signal="SIGCONT")
        gate = next(g for g in advance["gates"] if g["name"] == "replicas")
        assert (gate["status"], gate["value"], gate["threshold"]) == ("pass", "1 of 2 ready", ">= 1 ready"), gate
        assert any(w.startswith("replica 2 (task ") and w.endswith("(the gate allows it)") for w in advance["warnings"])
    finally:
        config.write_text(original)
    assert stack.cli("gateway", "wait", "--timeout", str(READY_S)).returncode == 0


@pytest.mark.docker
def test_gateway_restart_replaces_every_replica(stack: Stack) -> None:
    before = {t["ID"] for t in stack.running_tasks()}
    restarted = valid("gateway restart", stack.json("gateway", "restart", "--timeout", str(2 * READY_S)))
    assert restarted["changed"] and restarted["healthy"]
    now = stack.running_tasks()
    assert len(now) == 2 and not before & {t["ID"] for t in now}


def _task(slot: int, state: str = "running") -> TaskState:
    return TaskState(slot=slot, task_id=f"t{slot}", state=state, desired_state="running", node="vm",
                     container_id=None, error=None, since=None, restarts=0)


def _service(labels: dict[str, str], desired: int = 2, tasks: list[TaskState] | None = None) -> ServiceState:
    tasks = tasks if tasks is not None else [_task(1), _task(2)]
    return ServiceState(name="gw", id="s1", image="img", desired=desired,
                        running=sum(t.state == "running" for t in tasks), update_state=None, update_started=None,
                        labels=labels, tasks=tasks)


@pytest.mark.parametrize(("url", "labels", "slot", "expected"), [
    ("http://127.0.0.1:4001", {REPLICA_PORT_LABEL: "4000"}, 2, "http://127.0.0.1:4002"),
    ("https://gw.internal/v1", {REPLICA_PORT_LABEL: "8800"}, 1, "https://gw.internal:8801"),
    ("http://127.0.0.1:4001", {}, 1, None),  # no label: no port rollout could know
    ("http://127.0.0.1:4001", {REPLICA_PORT_LABEL: "four"}, 1, None),
    ("http://127.0.0.1:4001", {REPLICA_PORT_LABEL: "4000"}, 0, None),  # a global service's tasks have no slot
])
def test_replica_url_is_the_port_base_plus_the_slot(url: str, labels: dict, slot: int, expected: str | None) -> None:
    assert replica_url(url, _service(labels), slot) == expected


def _health(slot: int, state: str = "running", live: bool = True, ready: bool = True) -> ReplicaHealth:
    replica = Replica(_task(slot, state), f"http://127.0.0.1:{4000 + slot}")
    return ReplicaHealth(replica, Probe(live, 200 if live else None, 1.0), Probe(ready, 200 if ready else 503, 1.0))


@pytest.mark.parametrize(("desired", "checked", "expected"), [
    (2, [_health(1), _health(2)], None),
    (2, [_health(1), _health(2, live=False)], "replica 2 (http://127.0.0.1:4002): liveliness no answer"),
    (2, [_health(1, ready=False), _health(2, "starting")],
     "replica 1 (http://127.0.0.1:4001): readiness HTTP 503 (and 1 more)"),
    (3, [_health(1), _health(2)], "2 of 3 replicas ready"),
    (0, [], "service gw is scaled to 0"),
])
def test_replicas_problem_names_the_first_broken_replica(desired: int, checked: list, expected: str | None) -> None:
    state = ContainerState(name="gw", id="s1", status="running", running=True, health=None, started_at=None,
                           finished_at=None, uptime_s=None, restart_count=0, image="img", exit_code=None,
                           oom_killed=False)
    assert replicas_problem(state, desired, checked) == expected


@pytest.mark.parametrize(("argv", "env", "workers"), [
    (["litellm", "--config", "c.yaml"], [], 1),
    (["litellm", "--num_workers", "4"], [], 4),
    (["litellm", "--num_workers=3", "--port", "4000"], ["NUM_WORKERS=8"], 3),  # the option wins over the variable
    (["/bin/sh", "-c", "exec litellm --config /app/config.yaml --num_workers 2 --port $((PORT_BASE + SLOT))"], [], 2),
    (["litellm"], ["PATH=/bin", "NUM_WORKERS=2"], 2),
    (["litellm"], ["NUM_WORKERS=lots"], 1),
    (["litellm", "--num_workers", "0"], [], 1),
])
def test_workers_of_reads_the_command_line_then_the_variable(argv: list, env: list, workers: int) -> None:
    assert workers_of(argv, env) == workers


def _topology(tmp_path: Path, router_extra: str = "") -> Topology:
    config = tmp_path / "litellm-config.yaml"
    text = (REPO / "deploy" / "litellm-config.yaml").read_text()
    config.write_text(_without_redis(text).replace("router_settings:\n", f"router_settings:\n{router_extra}", 1))
    topology = load_topology(config)
    assert topology is not None
    return topology


def _without_redis(config_text: str) -> str:
    """The shipped config with no Redis: what a team that did not set it up runs."""
    return "".join(line for line in config_text.splitlines(keepends=True) if "redis_" not in line)


ENV_REDIS = "  redis_host: os.environ/REDIS_HOST\n"  # as the shipped config names it


@pytest.mark.parametrize(("processes", "router_extra", "environment", "missing"), [
    (1, "", None, None),
    (2, "", None, "(redis_host or redis_url)"),
    (2, "  redis_host: 127.0.0.1\n", {}, None),
    (4, "  redis_url: redis://127.0.0.1:6379\n", None, None),
    (2, ENV_REDIS, {"REDIS_HOST": "127.0.0.1"}, None),
    (2, ENV_REDIS, {"OTHER": "x"}, "(its os.environ/REDIS_HOST is unset in the gateway's environment)"),
    (2, ENV_REDIS, {"REDIS_HOST": ""}, "(its os.environ/REDIS_HOST is unset in the gateway's environment)"),
    (2, ENV_REDIS, None, None),  # the gateway's environment not known: taken as set
])
def test_several_processes_without_redis_are_warned(tmp_path: Path, processes: int, router_extra: str,
                                                    environment: dict[str, str] | None, missing: str | None) -> None:
    topology = _topology(tmp_path, router_extra)
    warning = shared_state_warning(processes, "2 replicas of service gw", topology, environment)
    assert (warning is not None) == (missing is not None)
    if warning:
        assert warning.startswith(f"the gateway runs as {processes} processes (2 replicas of service gw) and "
                                  f"router_settings in {topology.source} has no Redis {missing}: "), warning
    assert shared_state_warning(processes, "x", None) is None  # no gateway config: nothing to read


@pytest.mark.parametrize(("router_extra", "warned"), [("", True), ("  redis_host: 127.0.0.1\n", False)])
def test_health_warns_of_workers_without_redis(tmp_path: Path, router_extra: str, warned: bool) -> None:
    """A process gateway started with --num_workers 2 and no Redis: `health` names it (and still says the rest)."""
    topology = _topology(tmp_path, router_extra)
    ws = tmp_path / "ws"
    (ws / ".rollout").mkdir(parents=True)
    write_sample_app(tmp_path / "app", percentage=0)
    (ws / "rollout.yaml").write_text(workspace_yaml(container=None, runtime="process", gateway_url="http://127.0.0.1:9",
                                                    config=str(topology.source)))
    (ws / ".rollout" / "gateway-process.json").write_text(json.dumps({
        "argv": ["litellm", "--config", str(topology.source), "--num_workers", "2"], "cwd": str(tmp_path),
        "log": str(tmp_path / "litellm.log"), "env": {}, "port": 9, "process": None, "restarts": 0}))
    result = rollout("-w", str(ws), "health", "--json", env={"LITELLM_MASTER_KEY": "sk-test"})
    data = valid("health", json.loads(result.stdout))
    assert result.exit_code == 4  # nothing listens: the warning does not hide that
    warnings = data["gateway"]["warnings"]
    assert bool(warnings) == warned
    if warned:
        assert warnings[0].startswith("the gateway runs as 2 processes (2 workers of the gateway process)")
