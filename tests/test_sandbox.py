"""`rollout sandbox ...` end to end: the real simulator and the real LiteLLM proxy as local processes.

Requests go through the real proxy to the simulator; fallbacks are shown by
injecting faults with `rollout sandbox fault` and reading the headers LiteLLM
adds. Bad input is refused before anything starts, and a failed start leaves
nothing running.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import time
from pathlib import Path

import pytest
import yaml

from rollout_cli.gateway.runtime import PROCESS_RECORD, GatewayProcess
from rollout_cli.io.process import ProcessRecord
from rollout_cli.sandbox.state import load_state
from rollout_cli.simulator import FREE_MODELS
from support import rollout
from test_json_contract import valid

pytestmark = pytest.mark.gateway


def _processes_mentioning(text: str) -> list[int]:
    """Pids whose command line mentions `text` (a sandbox folder): what a leak would look like."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if text in cmdline and state != "Z":
                found.append(int(entry.name))
    return found


def _wait_served_by(client, model: str, expected: str, deadline_s: float = 15.0):  # type: ignore[no-untyped-def]
    """Ask until `expected` serves (a cleared fault stops mattering once the cooldown ends)."""
    deadline = time.monotonic() + deadline_s
    while True:
        seen = client.complete(model, "ping")
        if seen.served_by == expected or time.monotonic() > deadline:
            return seen
        time.sleep(0.5)


# --- a running sandbox (shared, process runtime) ------------------------------------------


def test_status_shows_both_processes_healthy_and_the_next_commands(sandbox) -> None:
    result = rollout("sandbox", "status", str(sandbox.root))
    assert result.exit_code == 0, result.output
    assert f"sandbox {sandbox.root}: healthy (runtime process" in result.output
    assert sandbox.gateway_url in result.output and sandbox.simulator_url in result.output
    assert f"rollout -w {sandbox.root} rollback --level 1 --drill" in result.output
    assert result.output.rstrip().endswith(f"rollout sandbox down {sandbox.root}")

    data = json.loads(rollout("-w", str(sandbox.root), "sandbox", "status", "--json").stdout)
    assert data["healthy"] is True and data["runtime"] == "process"
    assert data["gateway"]["liveliness"] and data["gateway"]["readiness"]
    assert data["simulator"]["running"] and data["simulator"]["faults"] == {}


def test_the_workspace_is_complete_and_the_key_private(sandbox) -> None:
    root = sandbox.root
    config = yaml.safe_load((root / "rollout.yaml").read_text())
    assert config["gateway"]["url"] == sandbox.gateway_url
    assert config["gateway"]["master_key_file"] == ".rollout/master.key"
    assert "container" not in config["gateway"]  # process runtime: no container to stop
    key_file = root / ".rollout" / "master.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_text().strip()
    assert key.startswith("sk-") and len(key) >= 35
    for path in root.rglob("*"):  # the key is in the key file and nowhere else
        if path.is_file() and path != key_file and ".git" not in path.parts:
            assert key not in path.read_text(errors="replace"), path
    gateway_config = yaml.safe_load((root / "gateway" / "litellm-config.yaml").read_text())
    assert [m["model_name"] for m in gateway_config["model_list"]] == [alias for alias, _ in FREE_MODELS]
    assert gateway_config["general_settings"]["dangerously_allow_mock_testing_request_params"] is True
    assert (root / "app" / ".git").is_dir()
    assert "LITELLM_ROLLOUT_PERCENTAGE=0" in (root / "app" / ".env").read_text()
    # and `rollout` reads it as a workspace
    status = rollout("-w", str(root), "status")
    assert status.exit_code == 0, status.output
    assert "stage 0% through the gateway" in status.output


def test_every_free_model_answers_through_the_gateway(sandbox) -> None:
    sandbox.admin.reset_stats()
    with sandbox.client() as client:
        for alias, _model_id in FREE_MODELS:
            seen = client.complete(alias, "Reply with one word to this ping", disable_fallbacks=True)
            assert (seen.status, seen.served_by, seen.content) == (200, alias, "pong"), seen
    stats = sandbox.admin.stats()["models"]
    assert {model_id for _, model_id in FREE_MODELS} <= set(stats)  # each really reached the simulator


def test_a_500_on_the_primary_falls_back_to_the_next_model_and_clearing_restores_it(sandbox) -> None:
    ws = str(sandbox.root)
    result = rollout("-w", ws, "sandbox", "fault", "glm-4.5-air", "--status", "500")
    assert result.exit_code == 0, result.output
    assert "z-ai/glm-4.5-air:free: status 500, rate 1" in result.output
    try:
        with sandbox.client() as client:
            seen = client.complete("glm-4.5-air", "ping", extra={"num_retries": 0})
            assert seen.status == 200, seen
            assert seen.served_by == "deepseek-chat-v3.1"
            assert seen.attempted_fallbacks == 1
            assert sandbox.admin.stats()["models"]["z-ai/glm-4.5-air:free"]["by_status"].get("500", 0) >= 1

            cleared = rollout("-w", ws, "sandbox", "fault", "--clear")
            assert cleared.exit_code == 0 and "cleared every fault" in cleared.output
            back = _wait_served_by(client, "glm-4.5-air", "glm-4.5-air")
            assert (back.served_by, back.attempted_fallbacks) == ("glm-4.5-air", 0), back
    finally:
        sandbox.admin.clear()


def test_fault_with_an_unknown_model_exits_2_listing_the_known_ones(sandbox) -> None:
    result = rollout("-w", str(sandbox.root), "sandbox", "fault", "gpt-5-turbo", "--status", "500")
    assert result.exit_code == 2
    assert "unknown model 'gpt-5-turbo'" in result.stderr
    assert "glm-4.5-air" in result.stderr and "qwen/qwen3-coder:free" in result.stderr
    assert result.stderr.count("\n") == 1
    assert sandbox.admin.faults() == {}


def test_up_again_on_a_healthy_sandbox_changes_nothing(sandbox) -> None:
    before = load_state(sandbox.root)
    result = rollout("sandbox", "up", str(sandbox.root))
    assert result.exit_code == 0, result.output
    assert "already up and healthy: nothing to do" in result.output
    after = load_state(sandbox.root)
    assert after is not None and before is not None
    assert after.simulator == before.simulator
    assert after.gateway_process.record() == before.gateway_process.record()


def test_a_different_runtime_on_a_running_sandbox_is_refused(sandbox) -> None:
    result = rollout("sandbox", "up", str(sandbox.root), "--runtime", "docker")
    assert result.exit_code == 2
    assert "is up with runtime process" in result.stderr and "sandbox down" in result.stderr


# --- a fresh sandbox per test: starts that must fail, and down ------------------------


@pytest.fixture
def fresh(tmp_path: Path) -> Path:
    root = tmp_path / "sb"
    yield root
    rollout("sandbox", "down", str(root))  # whatever a failing test left running


def test_port_in_use_exits_2_naming_the_port_and_the_option(fresh: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = rollout("sandbox", "up", str(fresh), "--runtime", "process",
                         "--gateway-port", str(port), "--simulator-port", "0")
    assert result.exit_code == 2, result.output
    assert f"port {port} on 127.0.0.1 is in use; choose another with --gateway-port" in result.stderr
    assert load_state(fresh) is None  # nothing was started


def test_prometheus_port_in_use_exits_2_before_anything_starts(fresh: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = rollout("sandbox", "up", str(fresh), "--runtime", "process", "--gateway-port", "0",
                         "--simulator-port", "0", "--prometheus-port", str(port))
    assert result.exit_code == 2, result.output
    assert f"port {port} on 127.0.0.1 is in use; choose another with --prometheus-port" in result.stderr
    assert load_state(fresh) is None


def test_prometheus_then_node_exporter_installed_then_each_dead_come_back_with_up_and_down_stops_both(
        fresh: Path, tmp_path: Path) -> None:
    """One sandbox (one LiteLLM start for all of it), as `up`'s messages say: each program missing in turn, then
    installed and `sandbox up` again; then each dead in turn and `up` again (issue 21: the node_exporter serving
    .rollout/rollout.prom is started, shown, restarted and stopped)."""
    bin_dir = tmp_path / "bin"  # a PATH with git (the sample app's repo) and no prometheus
    bin_dir.mkdir()
    git, prometheus = shutil.which("git"), shutil.which("prometheus")
    assert git is not None and prometheus is not None
    (bin_dir / "git").symlink_to(git)
    result = rollout("sandbox", "up", str(fresh), "--runtime", "process", "--gateway-port", "0",
                     "--simulator-port", "0", "--app-runtime", "none", "--json", env={"PATH": str(bin_dir)})
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["prometheus_url"] is None and "prometheus" not in data["pids"]
    assert any(m.startswith("Prometheus is not installed, so the sandbox runs without it") for m in data["messages"])
    assert json.loads(rollout("sandbox", "status", str(fresh), "--json").stdout)["prometheus"] is None

    # prometheus installed, prometheus-node-exporter still not: up again starts Prometheus, without a job rollout
    (bin_dir / "prometheus").symlink_to(prometheus)
    result = rollout("sandbox", "up", str(fresh), "--app-runtime", "none", "--json", env={"PATH": str(bin_dir)})
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["already_up"] is True and data["prometheus_url"] and "prometheus" in data["pids"]
    assert "node_exporter" not in data["pids"]
    assert any(m.startswith("node_exporter is not installed, so Prometheus does not scrape") for m in data["messages"])
    assert "job_name: rollout" not in (fresh / "prometheus" / "prometheus.yml").read_text()
    status = json.loads(rollout("sandbox", "status", str(fresh), "--json").stdout)
    assert status["node_exporter"] is None and status["prometheus"]["url"] == data["prometheus_url"]

    # both installed: up again starts the node_exporter, and Prometheus with the job rollout that scrapes it
    started = rollout("sandbox", "up", str(fresh), "--app-runtime", "none", "--json")
    assert started.exit_code == 0, started.output
    url = json.loads(started.stdout)["prometheus_url"]
    assert url == data["prometheus_url"] and "node_exporter" in json.loads(started.stdout)["pids"]
    assert "job_name: rollout" in (fresh / "prometheus" / "prometheus.yml").read_text()
    state = load_state(fresh)
    assert state is not None and state.prometheus is not None and state.prometheus_url == url
    assert state.prometheus.stop()  # as if it had died: the sandbox stays healthy without it
    seen = rollout("sandbox", "status", str(fresh), "--json")
    assert seen.exit_code == 0, seen.output
    assert json.loads(seen.stdout)["prometheus"] | {"pid": None} == {
        "url": url, "port": state.prometheus_port, "pid": None, "running": False, "ready": False, "targets": {}}

    again = rollout("sandbox", "up", str(fresh), "--app-runtime", "none", "--json")
    assert again.exit_code == 0, again.output
    data = json.loads(again.stdout)
    assert data["already_up"] is True and data["prometheus_url"] == url  # on its port again
    assert data["pids"]["prometheus"] != state.prometheus.pid

    # now the node_exporter alone
    state = load_state(fresh)
    assert state is not None and state.node_exporter is not None
    assert f"--collector.textfile.directory={fresh / '.rollout'}" in state.node_exporter.argv
    assert (fresh / ".rollout" / "rollout.prom").read_text().count("rollout_stage_configured_ratio 0\n") == 1
    assert state.node_exporter.stop()
    seen = json.loads(rollout("sandbox", "status", str(fresh), "--json").stdout)["node_exporter"]
    assert seen["running"] is False and seen["ready"] is False

    again = rollout("sandbox", "up", str(fresh), "--app-runtime", "none", "--json")
    assert again.exit_code == 0, again.output
    pids = json.loads(again.stdout)["pids"]
    assert pids["node_exporter"] != state.node_exporter.pid
    seen = json.loads(rollout("sandbox", "status", str(fresh), "--json").stdout)["node_exporter"]
    assert seen["running"] is True and seen["ready"] is True and seen["pid"] == pids["node_exporter"]

    # the simulator dead: the sandbox is not healthy, and status says why
    assert state.simulator is not None and state.simulator.stop()
    sick = rollout("sandbox", "status", str(fresh))
    assert sick.exit_code == 4, sick.output
    assert (f"the sandbox in {fresh} is not healthy (the simulator is not running); `rollout sandbox up {fresh}` "
            "restarts it cleanly") in " ".join(sick.stdout.split())
    assert valid("sandbox status", json.loads(rollout("sandbox", "status", str(fresh), "--json").stdout))[
        "problem"] == "the simulator is not running"

    down = rollout("sandbox", "down", str(fresh), "--json")
    stopped = json.loads(down.stdout)["stopped"]
    assert f"node_exporter process {pids['node_exporter']}" in stopped
    assert f"prometheus process {pids['prometheus']}" in stopped
    assert _processes_mentioning(str(fresh)) == []


def test_docker_runtime_with_the_engine_down_offers_the_process_runtime(fresh: Path) -> None:
    result = rollout("sandbox", "up", str(fresh), "--runtime", "docker", "--gateway-port", "0",
                     "--simulator-port", "0", env={"DOCKER_HOST": "unix:///tmp/nowhere.sock"})
    assert result.exit_code == 4, result.output
    assert "Docker engine does not answer at unix:///tmp/nowhere.sock" in result.stderr
    assert "--runtime process" in result.stderr
    assert result.stderr.count("\n") == 1
    assert load_state(fresh) is None


def test_auto_runtime_without_an_engine_falls_back_to_the_process_runtime_check(fresh: Path, monkeypatch) -> None:
    from rollout_cli.sandbox import world

    monkeypatch.setenv("DOCKER_HOST", "unix:///tmp/nowhere.sock")
    assert world._choose_runtime("auto", None)[0] == "process"


def test_weak_master_key_exits_2_without_printing_it(fresh: Path) -> None:
    result = rollout("sandbox", "up", str(fresh), "--runtime", "process", "--gateway-port", "0",
                     "--simulator-port", "0", env={"ROLLOUT_SANDBOX_MASTER_KEY": "sk-1234"})
    assert result.exit_code == 2, result.output
    assert "gateway master key in $ROLLOUT_SANDBOX_MASTER_KEY is weak" in result.stderr
    assert "sk-1234" not in result.output
    assert load_state(fresh) is None


def test_missing_master_key_exits_2(fresh: Path) -> None:
    (fresh / ".rollout").mkdir(parents=True)
    (fresh / ".rollout" / "master.key").write_text("\n")
    result = rollout("sandbox", "up", str(fresh), "--runtime", "process", "--gateway-port", "0",
                     "--simulator-port", "0")
    assert result.exit_code == 2, result.output
    assert f"no gateway master key in {fresh}/.rollout/master.key" in result.stderr


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (lambda c: c["router_settings"]["fallbacks"][0].update({"glm-4.5-air": ["deepseek-chat-v3.1", "gpt-5"]}),
         "router_settings.fallbacks[0].glm-4.5-air falls back to 'gpt-5', which is not a model_name"),
        (lambda c: c["model_list"][2]["litellm_params"].pop("model"),
         "model_list[2].litellm_params.model of 'minimax-m2' must be provider/model"),
        (lambda c: c["general_settings"].update({"master_key": "sk-literal-key-in-config"}),
         "general_settings.master_key must be os.environ/VARIABLE"),
    ],
    ids=["unknown-fallback", "no-model", "literal-master-key"],
)
def test_invalid_gateway_config_exits_2_naming_the_key_before_starting(fresh: Path, tmp_path: Path, mutate,
                                                                       expected: str) -> None:
    from rollout_cli.gateway.config import packaged_config

    config = yaml.safe_load(packaged_config().read_text())
    mutate(config)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(config))
    result = rollout("sandbox", "up", str(fresh), "--runtime", "process", "--gateway-config", str(bad),
                     "--gateway-port", "0", "--simulator-port", "0")
    assert result.exit_code == 2, result.output
    assert expected in result.stderr and str(bad) in result.stderr
    # checked up front, not by starting LiteLLM: nothing was started, no workspace was written
    assert load_state(fresh) is None
    assert not (fresh / "rollout.yaml").exists() and not (fresh / "gateway").exists()


def test_gateway_config_that_is_not_yaml_names_the_line(fresh: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_list:\n  - model_name: [unclosed\n")
    result = rollout("sandbox", "up", str(fresh), "--gateway-config", str(bad), "--gateway-port", "0",
                     "--simulator-port", "0")
    assert result.exit_code == 2
    assert f"gateway config {bad} is not valid YAML (line 3" in result.stderr


def test_gateway_not_healthy_in_time_shows_its_log_and_leaves_nothing_running(fresh: Path) -> None:
    result = rollout("sandbox", "up", str(fresh), "--runtime", "process", "--timeout", "1",
                     "--gateway-port", "0", "--simulator-port", "0")
    assert result.exit_code == 4, result.output
    assert "not healthy after 1 s" in result.output and "everything it started was stopped" in result.output
    assert "last " in result.output and "log lines" in result.output
    log = (fresh / ".rollout" / "gateway.log").read_text()
    assert log.strip(), "the gateway wrote nothing to its log"
    assert load_state(fresh) is None
    assert _processes_mentioning(str(fresh)) == []


def test_down_with_nothing_up_is_harmless(tmp_path: Path) -> None:
    for folder in (tmp_path / "never-created", tmp_path):
        result = rollout("sandbox", "down", str(folder))
        assert result.exit_code == 0, result.output
        assert f"nothing to stop: no sandbox is running in {folder}" in result.output
    status = rollout("sandbox", "status", str(tmp_path))
    assert status.exit_code == 4 and "no sandbox is up" in status.output


def test_up_refuses_a_folder_that_is_not_a_sandbox(tmp_path: Path) -> None:
    (tmp_path / "rollout.yaml").write_text("app: {env_file: .env}\n")
    result = rollout("sandbox", "up", str(tmp_path), "--gateway-port", "0", "--simulator-port", "0")
    assert result.exit_code == 2
    assert "is not empty and not a sandbox" in result.stderr


def test_down_never_signals_a_pid_that_now_belongs_to_another_process(tmp_path: Path) -> None:
    """A recorded pid whose start time differs is someone else's process now: left alone."""
    record = ProcessRecord(os.getpid(), start_ticks=1, argv=("litellm",), log="", started_at=0.0)
    assert record.alive() is False
    assert record.stop() is False  # and this test process is still here to say so


def test_picked_ports_are_free_and_below_the_ephemeral_range_where_outgoing_connections_take_theirs() -> None:
    """A port picked now and listened on later must not become an outgoing connection's local end meanwhile."""
    import socket

    from rollout_cli.io.net import free_port

    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    ports = [free_port() for _ in range(20)]
    assert all(20000 <= port < low for port in ports), ports
    assert len(set(ports)) > 1  # picked at random, not the same one each time
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", ports[0]))
    assert all(free_port(ports[0]) != ports[0] for _ in range(50))


def test_up_on_a_partly_up_sandbox_stops_the_leftovers_and_reuses_its_ports(fresh: Path) -> None:
    """A sandbox whose simulator died: `up` stops what still runs (here a stand-in), then starts
    again with the recorded runtime and ports. A 1 s timeout keeps the test from paying for a full start."""
    from rollout_cli.io.net import free_port
    from rollout_cli.io.process import spawn_detached
    from rollout_cli.sandbox.state import SandboxState

    fresh.mkdir(parents=True)
    leftover = spawn_detached(["sleep", "60"], log=fresh / ".rollout" / "gateway.log", env=dict(os.environ))
    dead = ProcessRecord(leftover.pid, start_ticks=(leftover.start_ticks or 0) + 1, argv=("sim",), log="",
                         started_at=0.0)  # the same pid with another start time: a process that is gone
    gateway_port = free_port()
    SandboxState(root=fresh.absolute(), runtime="process", simulator_port=free_port(gateway_port),
                 gateway_port=gateway_port, simulator_key="sk-sim-rollout-local", simulator=dead,
                 ).save()
    GatewayProcess(argv=["litellm"], cwd=fresh, log=fresh / ".rollout" / "gateway.log", env={},
                   port=gateway_port, process=leftover).save(fresh / ".rollout" / PROCESS_RECORD)
    assert leftover.alive()

    result = rollout("sandbox", "up", str(fresh), "--timeout", "1")
    assert result.exit_code == 4, result.output
    assert "stopping the leftovers of an earlier sandbox" in result.output
    assert f"gateway at http://127.0.0.1:{gateway_port} not healthy" in result.output
    assert not leftover.alive()
    assert load_state(fresh) is None and _processes_mentioning(str(fresh)) == []
