"""`rollout gateway ...` end to end, on the real LiteLLM proxy: as the sandbox's local process, in a
real container from the offline image (docker runtime), and as deploy/docker-compose.yml runs it.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
import yaml

from rollout_cli.gateway.runtime import PROCESS_RECORD, GatewayProcess
from rollout_cli.sandbox.state import LABEL, load_state, sandbox_id
from support import rollout

# one worker starts this module's own sandbox once (tests/conftest.py, rule 6)
pytestmark = [pytest.mark.gateway, pytest.mark.xdist_group("test_gateway"), pytest.mark.slow(220)]
REPO = Path(__file__).resolve().parents[1]


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
        shown = json.loads(gw(ws, "wait", "--timeout", "3", "--json").stdout)["log_lines"]
        log = (ws / ".rollout" / "gateway.log").read_text(errors="replace")
        assert shown == log.splitlines()[-20:]

        again = gw(ws, "stop")
        assert again.exit_code == 0 and "already exited: nothing to do" in again.output

        weak = gw(ws, "start", env={"ROLLOUT_SANDBOX_MASTER_KEY": "sk-short"})
        assert weak.exit_code == 2, weak.output
        assert "is weak" in weak.stderr and "sk-short" not in weak.output
        assert gw(ws, "status").exit_code == 4  # refused before starting anything
    finally:
        started = gw(ws, "start", "--timeout", "90")
    assert started.exit_code == 0, started.output
    assert "is healthy (after" in started.output

    restarted = gw(ws, "restart", "--timeout", "90", "--json")
    assert restarted.exit_code == 0, restarted.output
    data = json.loads(restarted.stdout)
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
                     "--simulator-port", "0", "--timeout", "90")
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
def test_container_stop_wait_fails_with_its_log_then_start_brings_it_back(docker_sandbox: Path) -> None:
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


# --- production: the container deploy/docker-compose.yml describes ---------------------


def _ns(duration: str) -> int:
    units = {"ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000}
    for suffix in ("ms", "s", "m"):
        if duration.endswith(suffix):
            return int(float(duration[: -len(suffix)]) * units[suffix])
    raise ValueError(duration)


@pytest.mark.docker
def test_compose_service_found_by_its_label_with_the_production_config(docker_engine, tmp_path: Path) -> None:
    """The compose service as written (command, healthcheck, env, read-only config), with the offline image
    for the registry's and a free port for 4000: `rollout gateway` finds it by its compose service label."""
    from rollout_cli.gateway.api import GatewayClient
    from rollout_cli.io.container import COMPOSE_SERVICE_LABEL, ContainerRuntime
    from rollout_cli.io.net import free_port
    from rollout_cli.simulator import Simulator

    service = yaml.safe_load((REPO / "deploy" / "docker-compose.yml").read_text())["services"]["litellm"]
    assert service["network_mode"] == "host" and service["restart"] == "unless-stopped"
    assert service["image"].startswith("ghcr.io/berriai/litellm:v")
    port = free_port()
    swap = lambda text: text.replace("4000", str(port))  # noqa: E731
    health = service["healthcheck"]
    suffix = secrets.token_hex(3)
    name, service_name = f"rollout-test-compose-{suffix}", f"litellm-test-{suffix}"
    key = "sk-" + secrets.token_urlsafe(32)
    runtime = ContainerRuntime(docker_engine)
    with Simulator(api_key="sk-sim-compose") as sim:
        try:
            runtime.run_detached(
                "rollout/litellm:local",
                name,
                command=[swap(part) for part in service["command"]],
                environment={**service["environment"], "LITELLM_MASTER_KEY": key,
                             "OPENROUTER_API_KEY": sim.api_key, "OPENROUTER_API_BASE": sim.api_base},
                volumes={str(REPO / "deploy" / "litellm-config.yaml"): "/app/config.yaml:ro"},
                labels={COMPOSE_SERVICE_LABEL: service_name},
                restart=service["restart"],
                healthcheck={"test": [swap(part) for part in health["test"]], "interval": _ns(health["interval"]),
                             "timeout": _ns(health["timeout"]), "retries": health["retries"],
                             "start_period": _ns(health["start_period"])},
            )
            (tmp_path / "rollout.yaml").write_text(
                f"app: {{env_file: .env}}\ngateway:\n  url: http://127.0.0.1:{port}\n"
                f"  master_key_env: TEST_COMPOSE_KEY\n  container: {service_name}\n"
            )
            # 180 s: the production healthcheck and a cold LiteLLM start, on two cores shared with the other workers
            waited = gw(tmp_path, "wait", "--timeout", "180")
            assert waited.exit_code == 0, waited.output
            data = json.loads(gw(tmp_path, "status", "--json").stdout)
            assert data["runtime"] == "docker" and data["state"]["name"] == name
            assert data["healthy"] is True and data["state"]["health"] in ("starting", "healthy")

            with GatewayClient(f"http://127.0.0.1:{port}", key) as client:
                seen = client.complete("kimi-k2", "ping")
                assert (seen.status, seen.served_by, seen.content) == (200, "kimi-k2", "pong"), seen
                assert client.metrics().count("litellm_") > 10  # the prometheus callback is on

            restarted = gw(tmp_path, "restart", "--timeout", "180")
            assert restarted.exit_code == 0, restarted.output
            assert f"restarted {service_name}" in restarted.output
        finally:
            runtime.remove(name)
