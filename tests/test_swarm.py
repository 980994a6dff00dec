"""The gateway as a replicated Docker Swarm service (`gateway.runtime: swarm`): its settings, an engine that is
no swarm manager, and the rules (replica URLs, the first broken replica, workers, the shared-state warning).

On a real swarm (the sandbox's: `sandbox up --runtime swarm`, the shipped deploy/docker-stack.yml, two real
LiteLLM replicas and Redis) the same runtime is shown end to end in tests/test_swarm_sandbox.py: status, wait,
logs, a killed and a stuck replica, `min_ready_replicas`, restart, Redis-shared cooldowns, the window summed over
the replicas by Prometheus and by rollout's own scrape, level 3.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rollout_cli.gateway.api import Probe
from rollout_cli.gateway.control import ReplicaHealth, replicas_problem
from rollout_cli.gateway.runtime import REPLICA_PORT_LABEL, Replica, replica_url, workers_of
from rollout_cli.gateway.topology import Topology, load_topology, shared_state_warning
from rollout_cli.io.container import ContainerState
from rollout_cli.io.swarm import ServiceState, TaskState
from rollout_cli.sandbox.sample_app import workspace_yaml, write_sample_app
from support import rollout, without_redis
from test_json_contract import valid

pytestmark = pytest.mark.xdist_group("swarm")

REPO = Path(__file__).resolve().parent.parent


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
    config.write_text(without_redis(text).replace("router_settings:\n", f"router_settings:\n{router_extra}", 1))
    topology = load_topology(config)
    assert topology is not None
    return topology


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
