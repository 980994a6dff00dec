"""app.reload in rollout.yaml, the app.reload and verify.traffic steps: parsing, each reload kind, the drill."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from support import NO_GATEWAY, QuietServer, make_world, wait_until

LEVEL_1_WITH_RELOAD = "kind: rollback\nlevel: 1\nbudget: 30s\nsteps:\n  - type: flag.set\n    percentage: 0\n" \
                      "  - type: app.reload\n    timeout: 5s\n"


def with_reload(world, reload: str, book: str = LEVEL_1_WITH_RELOAD) -> None:  # type: ignore[no-untyped-def]
    """Set app.reload (replacing one set before: rollout.yaml refuses a key that appears twice) and the playbooks."""
    config = world.ws / "rollout.yaml"
    text = re.sub(r"(?m)^  reload: .*\n", "", config.read_text())
    if not re.search(r"(?m)^playbooks: ", text):
        text += "playbooks: ./books\n"
    config.write_text(text.replace("  integration_grep:", f"  reload: {reload}\n  integration_grep:"))
    (world.ws / "books").mkdir(exist_ok=True)
    (world.ws / "books" / "rollback-1.yaml").write_text(book)


def hup_recorder(seen: Path) -> subprocess.Popen:  # type: ignore[type-arg]
    """A process that writes "HUP" to `seen` on SIGHUP, for a minute; returned once its handler is in place."""
    ready = seen.with_name(seen.name + ".ready")
    child = subprocess.Popen([sys.executable, "-c", (
        "import signal, time, pathlib\n"
        f"signal.signal(signal.SIGHUP, lambda *_: pathlib.Path({str(seen)!r}).write_text('HUP'))\n"
        f"pathlib.Path({str(ready)!r}).write_text('ready')\n"
        "time.sleep(60)\n")])
    wait_until(ready.exists, 30, "the child's SIGHUP handler")
    return child


@pytest.mark.parametrize("reload,message", [
    ("sometimes", "'app.reload' must be one of none, {signal: "),
    ("{signal: {container: app, pid_file: x}}", "'app.reload.signal' needs exactly one of container or pid_file"),
    ("{signal: {container: app, signal: NOPE}}", "'app.reload.signal.signal' is 'NOPE'; use a signal name"),
    ("{signal: {container: app, sig: HUP}}",
     "unknown key 'app.reload.signal.sig' (known: container, pid_file, process, signal)"),
    ("{signal: {container: app, process: node}}", "'app.reload.signal.process' checks the process a pid_file names"),
    ("{restart: {}}", "missing required key 'app.reload.restart.container'"),
    ("{command: []}", "'app.reload.command' must be a non-empty list of strings"),
    ("{signal: [HUP]}", "'app.reload.signal' must be a mapping"),
])
def test_a_bad_app_reload_is_exit_2_naming_the_key(tmp_path: Path, reload: str, message: str) -> None:
    world = make_world(tmp_path)
    with_reload(world, reload)
    before = world.snapshot()
    result = world.cli("rollback", "--level", "1", "--yes")
    assert result.exit_code == 2
    assert message in result.output
    assert world.snapshot() == before


def test_command_reload_runs_after_the_edits_and_its_failure_is_exit_1(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    marker = tmp_path / "reloaded"
    with_reload(world, f"{{command: [{sys.executable}, -c, \"open('{marker}', 'w').write('yes')\"]}}")
    result = world.cli("rollback", "--level", "1", "--yes", "--json")
    assert result.exit_code == 0, result.output
    steps = json.loads(result.stdout)["levels"][0]["steps"]
    assert steps[1]["type"] == "app.reload" and steps[1]["detail"].startswith(f"run {sys.executable} -c")
    assert steps[1]["detail"].endswith(": exit 0")
    assert marker.read_text() == "yes"
    with_reload(world, f"{{command: [{sys.executable}, -c, \"import sys; sys.exit('cannot reload')\"]}}")
    failed = world.cli("rollback", "--level", "1", "--yes", "--json")
    assert failed.exit_code == 1
    step = json.loads(failed.stdout)["levels"][0]["steps"][1]
    assert step["status"] == "failed" and step["detail"].endswith("exited 1: cannot reload")


def test_signal_reload_through_a_pid_file_reaches_the_process_and_the_drill_checks_it(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    seen = tmp_path / "hup"
    child = hup_recorder(seen)
    try:
        pid_file = tmp_path / "app.pid"
        pid_file.write_text(f"{child.pid}\n")
        with_reload(world, f"{{signal: {{pid_file: {pid_file}, signal: HUP}}}}")
        drill = world.cli("rollback", "--level", "1", "--drill", "--json")
        assert drill.exit_code == 0, drill.output
        check = json.loads(drill.stdout)["levels"][0]["steps"][1]["checks"][0]
        from rollout_cli.core.text import printable

        full = printable(" ".join(child.args))  # type: ignore[arg-type]
        # the program that gets the signal, shown short: its middle left out, its start and its end kept
        shown = full if len(full) <= 160 else full[:78] + "..." + full[-78:]
        assert len(full) > 160 and shown.endswith("time.sleep(60) ")  # this child's own is long
        assert check == {"name": "app pid file names a running process", "ok": True,
                         "detail": f"pid {child.pid} ({shown}), started before its pid file was written", "exit_code": 0}
        result = world.cli("rollback", "--level", "1", "--yes", "--json")
        assert result.exit_code == 0, result.output
        detail = json.loads(result.stdout)["levels"][0]["steps"][1]["detail"]
        assert detail == f"sent SIGHUP to pid {child.pid} ({shown}) (from {pid_file})"
        deadline = time.monotonic() + 10
        while not seen.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert seen.read_text() == "HUP"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    dead = world.cli("rollback", "--level", "1", "--drill", "--json")
    assert dead.exit_code == 4
    assert json.loads(dead.stdout)["levels"][0]["steps"][1]["checks"][0]["detail"] == \
        f"app.reload: no process {child.pid} (from {pid_file}); is the app running?"


def test_a_pid_whose_command_line_is_not_the_apps_is_never_signalled(tmp_path: Path) -> None:
    """app.reload.signal.process: the pid file's process must run the app (a pid recycled by another program,
    started before the file was last touched, passes the start-time check but not this one)."""
    world = make_world(tmp_path)
    seen = tmp_path / "hup"
    child = hup_recorder(seen)
    try:
        pid_file = tmp_path / "app.pid"
        pid_file.write_text(f"{child.pid}\n")
        with_reload(world, f"{{signal: {{pid_file: {pid_file}, process: 'node server.js'}}}}")
        for args in (("--drill",), ("--yes",)):
            result = world.cli("rollback", "--level", "1", *args, "--json")
            assert result.exit_code == 4, result.output
        detail = json.loads(result.stdout)["levels"][0]["steps"][1]["detail"]
        assert re.fullmatch(rf"app\.reload: pid {child.pid} \(from {re.escape(str(pid_file))}\) runs ['\"].*python.*['\"], "
                            r"which does not contain 'node server\.js' \(app\.reload\.signal\.process\): not the "
                            r"app; is the app running\?", detail), detail
        time.sleep(0.3)
        assert not seen.exists() and child.poll() is None
        with_reload(world, f"{{signal: {{pid_file: {pid_file}, process: 'pathlib.Path'}}}}")  # its own program
        result = world.cli("rollback", "--level", "1", "--yes", "--json")
        assert result.exit_code == 0, result.output
        detail = json.loads(result.stdout)["levels"][0]["steps"][1]["detail"]
        # the text checked is in the middle left out of a long command line: said apart
        assert re.fullmatch(rf"sent SIGHUP to pid {child.pid} \(.*python.*\.\.\..*, which contains 'pathlib\.Path'\) "
                            rf"\(from {re.escape(str(pid_file))}\)", detail), detail
        wait_until(seen.exists, 10, "the SIGHUP")
    finally:
        child.kill()
        child.wait()


@pytest.mark.docker
def test_container_reloads_signal_and_restart_a_real_container(tmp_path: Path, docker_engine, busybox_image) -> None:
    name = f"rollout-test-app-{uuid.uuid4().hex[:8]}"
    box = docker_engine.containers.run(busybox_image, ["sh", "-c", "trap 'echo HUP' HUP; while :; do sleep 1; done"],
                                       name=name, detach=True, network_mode="host")
    try:
        world = make_world(tmp_path)
        with_reload(world, f"{{signal: {{container: {name}, signal: HUP}}}}")
        result = world.cli("rollback", "--level", "1", "--yes", "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)["levels"][0]["steps"][1]["detail"] == f"sent SIGHUP to container {name}"
        deadline = time.monotonic() + 10
        while b"HUP" not in box.logs() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert b"HUP" in box.logs()
        started = docker_engine.containers.get(name).attrs["State"]["StartedAt"]
        with_reload(world, f"{{restart: {{container: {name}}}}}")
        restarted = world.cli("rollback", "--level", "1", "--yes", "--json")
        assert restarted.exit_code == 0, restarted.output
        assert json.loads(restarted.stdout)["levels"][0]["steps"][1]["detail"] == \
            f"restarted container {name} (running)"
        assert docker_engine.containers.get(name).attrs["State"]["StartedAt"] != started
    finally:
        box.remove(force=True)


def test_verify_traffic_fields_are_checked_before_anything_runs(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    with_reload(world, "none", LEVEL_1_WITH_RELOAD + "  - type: verify.traffic\n    deadline: 5s\n    quiet: 5s\n")
    before = world.snapshot()
    result = world.cli("rollback", "--level", "1", "--yes")
    assert result.exit_code == 2
    assert "quiet (5 s) must be shorter than deadline (5 s)" in result.output
    assert world.snapshot() == before


def test_verify_traffic_on_a_gateway_whose_metrics_fail_is_not_verifiable_exit_3(tmp_path: Path) -> None:
    """Something answers at the gateway's address, but /metrics/ is a 404: the files are written, exit 3."""
    import http.server
    import threading

    server = QuietServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        world = make_world(tmp_path)
        config = world.ws / "rollout.yaml"
        config.write_text(config.read_text().replace(NO_GATEWAY, f"http://127.0.0.1:{server.server_port}"))
        result = world.cli("rollback", "--level", "1", "--yes", "--json")
        assert result.exit_code == 3, result.output
        step = json.loads(result.stdout)["levels"][0]["steps"][-1]
        assert step["type"] == "verify.traffic" and step["detail"].startswith("not verifiable: ")
        assert "answered HTTP 501; enable the prometheus callback" in step["detail"]
        assert "LITELLM_ROLLOUT_PERCENTAGE=0" in world.app.env_file.read_text()  # the files are written
    finally:
        server.shutdown()
