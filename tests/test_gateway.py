"""`rollout gateway ...` end to end, on the real LiteLLM proxy: as the sandbox's local process, and in a
real container from the offline image (docker runtime); as deploy/docker-compose.yml runs it: test_gateway_compose.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from rollout_cli.gateway.runtime import PROCESS_RECORD, GatewayProcess
from rollout_cli.sandbox.app import app_container_name
from rollout_cli.sandbox.state import LABEL, load_state, sandbox_id
from support import rollout
from test_json_contract import valid

# one worker starts this module's own sandbox once (tests/conftest.py, rule 6)
pytestmark = [pytest.mark.gateway, pytest.mark.xdist_group("test_gateway"), pytest.mark.slow(180)]


def gw(root: Path, *args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return rollout("-w", str(root), "gateway", *args, env=env)


# --- process runtime (the shared session sandbox) ------------------------------------------


def test_status_reports_the_process_and_both_probes(sandbox) -> None:
    result = gw(sandbox.root, "status")
    assert result.exit_code == 0, result.output
    assert f"gateway {sandbox.gateway_url}: healthy" in result.output
    assert "process     running" in result.output
    data = json.loads(gw(sandbox.root, "status", "--json").stdout)
    assert data["runtime"] == "process" and data["healthy"] is True
    assert data["state"]["running"] is True and data["state"]["id"] == f"pid {sandbox.pids['gateway']}"
    assert data["liveliness"]["status"] == 200 and data["readiness"]["status"] == 200


def test_logs_show_the_last_lines(sandbox) -> None:
    result = gw(sandbox.root, "logs", "--tail", "5", "--json")
    assert result.exit_code == 0, result.output
    lines = json.loads(result.stdout)["lines"]
    assert 0 < len(lines) <= 5
    log = (sandbox.root / ".rollout" / "gateway.log").read_text(errors="replace")
    assert lines == log.splitlines()[-len(lines):]
    assert "Proxy initialized with Config" in log  # LITELLM_LOG=ERROR: no uvicorn INFO lines
    assert sandbox.master_key not in log


def test_stop_wait_start_restart_the_process(sandbox) -> None:
    ws = sandbox.root
    try:
        stopped = gw(ws, "stop")
        assert stopped.exit_code == 0, stopped.output
        assert "stopped litellm process" in stopped.output
        down = gw(ws, "status")
        assert down.exit_code == 4 and "not healthy" in down.output and "exited" in down.output

        waited = gw(ws, "wait", "--timeout", "3")
        assert waited.exit_code == 4, waited.output
        assert "is exited and will not become healthy" in waited.output
        assert "last 20 log lines:" in waited.output
        # LITELLM_LOG=ERROR: uvicorn logs nothing on a clean shutdown ("Finished server process" is INFO),
        # so the lines shown are simply the log's tail, whatever the gateway wrote last
        waited_json = gw(ws, "wait", "--timeout", "3", "--json")
        assert waited_json.exit_code == 4
        waited_data = valid("gateway wait", json.loads(waited_json.stdout))  # --json contracts: test_json_contract.py
        assert waited_data["healthy"] is False and waited_data["error"]
        log = (ws / ".rollout" / "gateway.log").read_text(errors="replace")
        assert waited_data["log_lines"] == log.splitlines()[-20:]

        again = gw(ws, "stop")
        assert again.exit_code == 0 and "already exited: nothing to do" in again.output
        assert valid("gateway stop", json.loads(gw(ws, "stop", "--json").stdout))["changed"] is False

        weak = gw(ws, "start", env={"ROLLOUT_SANDBOX_MASTER_KEY": "sk-short"})
        assert weak.exit_code == 2, weak.output
        assert "is weak" in weak.stderr and "sk-short" not in weak.output
        assert gw(ws, "status").exit_code == 4  # refused before starting anything
    finally:
        started = gw(ws, "start", "--timeout", "90", "--json")
    assert started.exit_code == 0, started.output
    data = valid("gateway start", json.loads(started.stdout))
    assert data["healthy"] is True and data["changed"] is True  # the text of a start: the docker sandbox's test

    restarted = gw(ws, "restart", "--timeout", "90", "--json")
    assert restarted.exit_code == 0, restarted.output
    data = valid("gateway restart", json.loads(restarted.stdout))  # its --json contract (test_json_contract.py)
    assert data["healthy"] is True and data["state"]["restart_count"] == 2
    record = GatewayProcess.load(ws / ".rollout" / PROCESS_RECORD)
    assert record is not None and record.process is not None and record.process.alive()
    assert record.restarts == 2 and "LITELLM_MASTER_KEY" not in record.env  # the key is never recorded
    with sandbox.client() as client:
        assert client.complete("qwen3-coder", "ping").content == "pong"


def test_start_on_a_running_gateway_changes_nothing(sandbox) -> None:
    result = gw(sandbox.root, "start")
    assert result.exit_code == 0 and "already running: nothing to do" in result.output
    assert gw(sandbox.root, "status").exit_code == 0


def test_a_workspace_without_a_container_or_sandbox_is_bad_input(tmp_path: Path) -> None:
    (tmp_path / "rollout.yaml").write_text("app: {env_file: .env}\ngateway: {url: 'http://127.0.0.1:9'}\n")
    result = gw(tmp_path, "stop")
    assert result.exit_code == 2
    assert "gateway.container is not set" in result.stderr
    status = gw(tmp_path, "status", "--json")
    assert status.exit_code == 4
    data = json.loads(status.stdout)
    assert data["healthy"] is False and "gateway.container is not set" in data["runtime_error"]


# --- docker runtime: `rollout sandbox up --runtime docker` -------------------------------


@pytest.fixture(scope="module")
def docker_sandbox(docker_engine, tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("docker-sandbox") / "sb"
    result = rollout("sandbox", "up", str(root), "--runtime", "docker", "--gateway-port", "0",
                     "--simulator-port", "0", "--timeout", "180")
    assert result.exit_code == 0, result.output
    try:
        yield root
    finally:
        rollout("sandbox", "down", str(root))


@pytest.mark.docker
def test_docker_sandbox_runs_a_labelled_host_network_container(docker_sandbox: Path, docker_engine) -> None:
    state = load_state(docker_sandbox)
    assert state is not None and state.runtime == "docker"
    assert not (docker_sandbox / ".rollout" / PROCESS_RECORD).exists()
    box = docker_engine.containers.get(state.container)
    assert box.labels[LABEL] == sandbox_id(docker_sandbox)
    assert box.attrs["HostConfig"]["NetworkMode"] == "host"
    assert yaml.safe_load((docker_sandbox / "rollout.yaml").read_text())["gateway"]["container"] == state.container
    env = "\n".join(box.attrs["Config"]["Env"])
    assert "OPENROUTER_API_BASE=" + state.simulator_api_base in env

    data = json.loads(gw(docker_sandbox, "status", "--json").stdout)
    assert data["healthy"] is True and data["runtime"] == "docker"
    assert data["state"]["image"] == "rollout/litellm:local"
    assert data["state"]["health"] in ("starting", "healthy")
    assert data["state"]["restart_count"] == 0 and data["state"]["oom_killed"] is False


@pytest.mark.docker
def test_the_gateway_image_has_what_litellm_imports_on_every_request(docker_sandbox: Path, docker_engine) -> None:
    # LiteLLM 1.108.7 imports litellm.integrations.otel.logger (needs opentelemetry.sdk) in its auth and
    # prisma.errors when a lookup in the absent database fails, on every request; a failed import is retried
    # each time (docs/SETUP.md, "Gateway performance"). LiteLLM's own image has both; ours must too.
    state = load_state(docker_sandbox)
    assert state is not None
    box = docker_engine.containers.get(state.container)
    code, output = box.exec_run(["/opt/litellm/bin/python", "-c",
                                 "import litellm.integrations.otel.logger, prisma.errors; print('imported')"])
    assert (code, output.decode().strip().splitlines()[-1]) == (0, "imported")
    assert box.image.labels["rollout.build"]  # built by scripts/build-gateway-image.sh as it is now


@pytest.mark.docker
def test_fallback_through_the_container(docker_sandbox: Path) -> None:
    from rollout_cli.core.workspace import load_workspace
    from rollout_cli.gateway.api import GatewayClient

    ws = load_workspace(docker_sandbox)
    assert rollout("-w", str(docker_sandbox), "sandbox", "fault", "glm-4.5-air", "--status", "500").exit_code == 0
    try:
        with GatewayClient.from_config(ws.gateway, timeout=30) as client:
            seen = client.complete("glm-4.5-air", "ping", extra={"num_retries": 0})
        assert (seen.status, seen.served_by, seen.attempted_fallbacks) == (200, "deepseek-chat-v3.1", 1), seen
    finally:
        rollout("-w", str(docker_sandbox), "sandbox", "fault", "--clear")


@pytest.mark.docker
def test_container_stop_wait_fails_with_its_log_then_start_brings_it_back_and_restart_replaces_it(
        docker_sandbox: Path, docker_engine) -> None:
    try:
        stopped = gw(docker_sandbox, "stop", "--timeout", "5")
        assert stopped.exit_code == 0, stopped.output
        assert "exited" in stopped.output
        waited = gw(docker_sandbox, "wait", "--timeout", "2", "--json")
        assert waited.exit_code == 4
        data = json.loads(waited.stdout)
        assert data["healthy"] is False and data["log_lines"], data
        assert "will not become healthy" in data["error"]
    finally:
        started = gw(docker_sandbox, "start", "--timeout", "90")
    assert started.exit_code == 0, started.output
    assert "is healthy (after" in started.output
    logs = gw(docker_sandbox, "logs", "--tail", "400")
    assert "Proxy initialized with Config" in logs.output

    state = load_state(docker_sandbox)
    assert state is not None and state.container is not None
    before = docker_engine.containers.get(state.container).attrs["State"]["StartedAt"]
    restarted = gw(docker_sandbox, "restart", "--timeout", "90")
    assert restarted.exit_code == 0, restarted.output
    assert f"restarted {state.container} (running)" in restarted.output and "is healthy (after" in restarted.output
    assert docker_engine.containers.get(state.container).attrs["State"]["StartedAt"] != before


@pytest.mark.docker
def test_sandbox_status_with_the_docker_engine_unreachable_says_so(docker_sandbox: Path, tmp_path: Path) -> None:
    """Issue 23 item 21, on this module's docker sandbox (one LiteLLM container fewer for the suite)."""
    root = docker_sandbox
    dead = f"unix://{tmp_path}/dead.sock"
    result = rollout("sandbox", "status", str(root), env={"DOCKER_HOST": dead})
    assert result.exit_code == 4, result.output
    assert (f"the sandbox in {root} runs its gateway in Docker: Docker engine does not answer at {dead}"
            in result.stdout)
    assert "not running" not in result.stdout and "restarts it" not in result.stdout
    assert "unknown" in next(line for line in result.stdout.splitlines() if line.lstrip().startswith("gateway"))
    data = valid("sandbox status", json.loads(
        rollout("sandbox", "status", str(root), "--json", env={"DOCKER_HOST": dead}).stdout))
    assert data["exit_code"] == 4 and data["gateway"]["engine_answers"] is False
    assert data["gateway"]["running"] is None
    # the sample app (a container: `sandbox up` starts it in the gateway's runtime) is unknown too, not "not running"
    assert (data["app"]["container"], data["app"]["running"]) == (app_container_name(root), None)
    assert data["app"]["error"].startswith(f"Docker engine does not answer at {dead}")
    healthy = rollout("sandbox", "status", str(root))  # the engine answers again: healthy
    assert healthy.exit_code == 0, healthy.output


@pytest.mark.docker
def test_level_3_on_the_sandbox_real_litellm_container(docker_sandbox: Path, docker_engine) -> None:
    """Level 3 stops the real LiteLLM container, seen by the engine (last but `down`: it leaves the gateway stopped)."""
    root = docker_sandbox
    state = load_state(root)
    assert state is not None and state.runtime == "docker"
    container = json.loads(rollout("-w", str(root), "status", "--json").stdout)["container"]["name"]
    assert docker_engine.containers.get(container).status == "running"
    assert rollout("-w", str(root), "health").exit_code == 0
    result = rollout("-w", str(root), "rollback", "--level", "3", "--yes", "--reason", "drill", "--json")
    # 3: every level ran, but level 1's traffic check saw no app traffic through the gateway to verify
    # (nothing drove the app here); that is the only step that did not pass
    assert result.exit_code == 3, result.output
    levels = json.loads(result.stdout)["levels"]
    assert [lvl["level"] for lvl in levels] == [1, 2, 3]
    traffic = levels[0]["steps"][-1]
    assert traffic["type"] == "verify.traffic"
    assert traffic["detail"].startswith("not verifiable: no app traffic in the window")
    assert [s for lvl in levels for s in lvl["steps"] if s["exit_code"] != 0] == [traffic]
    level3 = levels[2]["steps"]
    assert (level3[0]["status"], level3[0]["detail"]) == ("ok", f"stopped container {container} (exited)")
    assert level3[1]["detail"].startswith(f"verified: gateway {container} exited")
    assert (level3[2]["type"], level3[2]["status"]) == ("verify.app", "ok")  # the app's direct path still answers
    assert docker_engine.containers.get(container).status == "exited"
    health = rollout("-w", str(root), "health")
    assert health.exit_code == 4, health.output  # nothing answers on the gateway's port any more
    assert f"gateway {state.gateway_url} does not answer (cannot connect: Connection refused)" in health.output


@pytest.mark.docker
def test_down_removes_the_container_and_stops_the_simulator(docker_sandbox: Path, docker_engine) -> None:
    state = load_state(docker_sandbox)
    assert state is not None and state.simulator is not None
    result = rollout("sandbox", "down", str(docker_sandbox))
    assert result.exit_code == 0, result.output
    assert f"gateway container {state.container}" in result.output and "simulator process" in result.output
    assert docker_engine.containers.list(all=True, filters={"label": f"{LABEL}={sandbox_id(docker_sandbox)}"}) == []
    assert not state.simulator.alive()
    assert rollout("sandbox", "down", str(docker_sandbox)).exit_code == 0


@pytest.mark.docker
def test_image_missing_names_the_build_script(tmp_path: Path) -> None:
    result = rollout("sandbox", "up", str(tmp_path / "sb"), "--runtime", "docker", "--gateway-port", "0",
                     "--simulator-port", "0", env={"ROLLOUT_GATEWAY_IMAGE": "rollout/no-such-image:missing"})
    assert result.exit_code == 4, result.output
    assert "gateway image 'rollout/no-such-image:missing' is not in the Docker engine" in result.stderr
    assert "scripts/build-gateway-image.sh" in result.stderr
    assert load_state(tmp_path / "sb") is None
