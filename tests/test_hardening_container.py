"""Issue 23, containers and reload: compose services, paused bind mounts, app.reload by pid file, the drill,
a reload command's output, a missing playbooks folder, and the sample app's key (items 9-12 and 18)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from rollout_cli.sandbox.app import AppControl, app_container_name, load_app
from rollout_cli.sandbox.sample_app import flagd_text
from rollout_cli.simulator import GATEWAY_ALIASES
from support import make_world, process_sandbox, rollout, wait_until
from test_effects_config import LEVEL_1_WITH_RELOAD, hup_recorder, with_reload

SERVICE_LABEL = "com.docker.compose.service"
ONEOFF_LABEL = "com.docker.compose.oneoff"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --- 9: a compose service is its running container, never a one-off ------------------------------


@pytest.fixture
def service(docker_engine, busybox_image) -> Iterator[tuple[str, list[str]]]:
    """A compose service: its running container, then a newer finished one-off (`docker compose run`)."""
    name = unique("svc")
    names: list[str] = []

    def run(container: str, command: list[str], **labels: str) -> None:
        names.append(container)
        docker_engine.containers.run(busybox_image, command, name=container, detach=True, network_mode="host",
                                     labels={SERVICE_LABEL: name, **labels})

    run(f"proj-{name}-1", ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"])
    time.sleep(0.05)
    run(f"proj-{name}-run-1a2b", ["true"], **{ONEOFF_LABEL: "True"})
    deadline = time.monotonic() + 15
    while docker_engine.containers.get(names[-1]).status != "exited" and time.monotonic() < deadline:
        time.sleep(0.1)
    yield name, names
    for container in names:
        docker_engine.containers.get(container).remove(force=True)


def started(docker_engine, name: str) -> str:
    return docker_engine.containers.get(name).attrs["State"]["StartedAt"]


@pytest.mark.docker
def test_level_3_stops_the_services_running_container_not_a_newer_finished_one_off(tmp_path, docker_engine, service):
    name, (running, _oneoff) = service
    world = make_world(tmp_path, container=name)
    result = world.cli("rollback", "--level", "3", "--yes", "--json")
    assert result.exit_code == 0, result.output  # on main: "container ...-run-1a2b already exited", verified
    level3 = json.loads(result.stdout)["levels"][2]["steps"]
    assert level3[0]["detail"] == f"stopped container {running} (exited)"
    assert level3[1]["detail"].startswith(f"verified: gateway {running} exited")
    assert docker_engine.containers.get(running).status == "exited"


@pytest.mark.docker
def test_reload_restart_restarts_the_service_not_its_one_off_task(tmp_path, docker_engine, service):
    name, (running, oneoff) = service
    before = {box: started(docker_engine, box) for box in (running, oneoff)}
    world = make_world(tmp_path)
    with_reload(world, f"{{restart: {{container: {name}}}}}")
    result = world.cli("rollback", "--level", "1", "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["levels"][0]["steps"][1]["detail"] == f"restarted container {name} (running)"
    assert started(docker_engine, running) != before[running]
    assert started(docker_engine, oneoff) == before[oneoff]  # the task did not run again


@pytest.mark.docker
def test_two_running_containers_of_a_service_are_refused_naming_them_and_the_key(tmp_path, docker_engine, service,
                                                                                 busybox_image):
    name, names = service
    second = f"proj-{name}-2"
    names.append(second)
    docker_engine.containers.run(busybox_image, ["sh", "-c", "while :; do sleep 1; done"], name=second, detach=True,
                                 network_mode="host", labels={SERVICE_LABEL: name})
    world = make_world(tmp_path, container=name)
    result = world.cli("rollback", "--level", "3", "--yes", "--json")
    assert result.exit_code == 2, result.output
    stop = json.loads(result.stdout)["levels"][2]["steps"][0]
    assert stop["detail"] == (f"compose service '{name}' has 2 containers up (proj-{name}-1, proj-{name}-2): which "
                              "one is meant is unclear; set gateway.container in rollout.yaml to one container's "
                              "exact name")
    assert {docker_engine.containers.get(box).status for box in (names[0], second)} == {"running"}
    with_reload(world, f"{{restart: {{container: {name}}}}}")
    drill = world.cli("rollback", "--level", "1", "--drill")
    assert drill.exit_code == 2
    assert "set app.reload.restart.container in rollout.yaml to one container's exact name" in drill.stdout


# --- 12: the drill checks a reload container, and names the key that names it ------------------------


@pytest.mark.docker
def test_drill_and_run_name_app_reload_for_a_reload_container_that_does_not_exist(tmp_path):
    world = make_world(tmp_path)
    absent = unique("absent-app")
    with_reload(world, f"{{restart: {{container: {absent}}}}}")
    drill = world.cli("rollback", "--level", "1", "--drill", "--json")
    assert drill.exit_code == 4, drill.output
    check = json.loads(drill.stdout)["levels"][0]["steps"][1]["checks"][0]
    assert check["ok"] is False
    assert check["detail"] == (f"no container named '{absent}' or with compose service '{absent}' (docker ps -a); "
                               "check app.reload.restart.container in rollout.yaml")
    run = world.cli("rollback", "--level", "1", "--yes")
    assert run.exit_code == 4
    assert "check app.reload.restart.container in rollout.yaml" in run.stdout
    assert "gateway.container" not in run.stdout


def test_a_reload_commands_output_is_kept_short_and_never_spooled_to_a_file(tmp_path, monkeypatch):
    """`yes`-like output: on main it went to a temporary file in $TMPDIR, hundreds of MB; now a pipe, 4 KiB kept."""
    spool = tmp_path / "tmp"
    spool.mkdir()
    monkeypatch.setenv("TMPDIR", str(spool))
    monkeypatch.setattr(tempfile, "tempdir", str(spool))  # the tempfile module reads $TMPDIR once, then caches it
    world = make_world(tmp_path)
    with_reload(world, "{command: [sh, -c, \"head -c 300000000 /dev/zero; echo; echo last words; exit 3\"]}",
                LEVEL_1_WITH_RELOAD.replace("timeout: 5s", "timeout: 60s"))
    biggest, done = [0], threading.Event()

    def watch_open_files() -> None:  # the CLI runs in this process: its open files are ours to look at
        while not done.is_set():
            for fd in os.listdir("/proc/self/fd"):
                try:
                    if os.readlink(f"/proc/self/fd/{fd}").startswith(str(spool)):
                        biggest[0] = max(biggest[0], os.stat(f"/proc/self/fd/{fd}").st_size)
                except OSError:
                    pass
            time.sleep(0.005)

    watcher = threading.Thread(target=watch_open_files)
    watcher.start()
    try:
        result = world.cli("rollback", "--level", "1", "--yes", "--json")
    finally:
        done.set()
        watcher.join()
    assert result.exit_code == 1, result.output
    step = json.loads(result.stdout)["levels"][0]["steps"][1]
    assert step["detail"].endswith("exited 3: last words")
    assert biggest[0] < 1_000_000, f"{biggest[0]} bytes of output spooled to {spool}"
    assert list(spool.iterdir()) == []


def test_a_playbooks_folder_that_does_not_exist_is_refused_naming_key_and_path(tmp_path):
    world = make_world(tmp_path)
    config = world.ws / "rollout.yaml"
    config.write_text(config.read_text() + "playbooks: ./no-such-books\n")
    before = world.snapshot()
    for args in (("rollback", "--level", "1", "--yes"), ("rollback", "--level", "1", "--drill"), ("report",)):
        result = world.cli(*args)
        assert result.exit_code == 2, (args, result.output)
        assert (f"the playbooks folder {world.ws / 'no-such-books'} ('playbooks' in rollout.yaml) does not exist; "
                "create it, fix the path, or remove the key to use the packaged playbooks") in result.output
    assert world.snapshot() == before


# --- 11: app.reload by pid file signals the app or nobody ------------------------------------------


def rollout_subprocess(world, *args: str, pid_file_is_own: Path | None = None) -> subprocess.CompletedProcess:  # type: ignore[no-untyped-def]
    """`rollout` as its own process in its own session: a signal that goes astray hits it, not pytest."""
    argv = [sys.executable, "-m", "rollout_cli", "-w", str(world.ws), *args]
    if pid_file_is_own is not None:  # the shell writes its pid, then becomes rollout: the pid file names rollout
        argv = ["sh", "-c", f'echo $$ > "{pid_file_is_own}"; exec "$@"', "sh", *argv]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, start_new_session=True)


@pytest.mark.parametrize("pid,message", [
    ("0", "holds pid 0, which is never an app's (0 is rollout's own process group, 1 is init)"),
    ("1", "holds pid 1, which is never an app's (0 is rollout's own process group, 1 is init)"),
    ("-1", "holds '-1', not a pid"),
])
def test_a_pid_file_naming_0_1_or_a_negative_pid_is_refused_and_nothing_is_signalled(tmp_path, pid, message):
    world = make_world(tmp_path)
    pid_file = tmp_path / "app.pid"
    pid_file.write_text(pid + "\n")
    with_reload(world, f"{{signal: {{pid_file: {pid_file}, signal: HUP}}}}")
    drill = rollout_subprocess(world, "rollback", "--level", "1", "--drill")
    assert drill.returncode == 2, drill
    assert message in drill.stdout
    result = rollout_subprocess(world, "rollback", "--level", "1", "--yes")
    assert result.returncode == 2, result  # on main, pid 0: killed by its own SIGHUP (-1)
    assert f"app.reload.signal.pid_file {pid_file} {message}" in result.stdout
    assert world.history()[-1]["phase"] == "finished"


def test_a_pid_file_naming_rollout_itself_is_refused(tmp_path):
    world = make_world(tmp_path)
    pid_file = tmp_path / "app.pid"
    pid_file.write_text("")
    with_reload(world, f"{{signal: {{pid_file: {pid_file}, signal: HUP}}}}")
    result = rollout_subprocess(world, "rollback", "--level", "1", "--yes", pid_file_is_own=pid_file)
    assert result.returncode == 2, result
    assert f"holds pid {pid_file.read_text().strip()}, rollout's own process or process group" in result.stdout


def test_a_stale_pid_file_does_not_signal_the_program_that_got_the_pid(tmp_path):
    world = make_world(tmp_path)
    seen = tmp_path / "hup"
    other = hup_recorder(seen)
    try:
        pid_file = tmp_path / "app.pid"
        pid_file.write_text(f"{other.pid}\n")
        an_hour_ago = time.time() - 3600  # written by an app that is gone; its pid went to `other` since
        os.utime(pid_file, (an_hour_ago, an_hour_ago))
        with_reload(world, f"{{signal: {{pid_file: {pid_file}, signal: HUP}}}}")
        drill = world.cli("rollback", "--level", "1", "--drill", "--json")
        assert drill.exit_code == 4, drill.output
        detail = json.loads(drill.stdout)["levels"][0]["steps"][1]["checks"][0]["detail"]
        assert re.fullmatch(rf"app\.reload: pid {other.pid} \(from {re.escape(str(pid_file))}\) started 3[56]\d\d s "
                            r"after the file was written: the app that wrote it is gone and its pid now belongs to "
                            r"another program; is the app running\?", detail), detail
        result = world.cli("rollback", "--level", "1", "--yes")
        assert result.exit_code == 4, result.output
        time.sleep(0.3)
        assert not seen.exists() and other.poll() is None
    finally:
        other.kill()
        other.wait()


def test_a_fifo_as_the_pid_file_is_refused_at_once(tmp_path):
    world = make_world(tmp_path)
    fifo = tmp_path / "app.pid"
    os.mkfifo(fifo)
    with_reload(world, f"{{signal: {{pid_file: {fifo}, signal: HUP}}}}")
    for args in (("--drill",), ("--yes",)):
        result = rollout_subprocess(world, "rollback", "--level", "1", *args)  # on main: hangs, the timeout fails it
        assert result.returncode == 2, result
        assert (f"app.reload.signal.pid_file {fifo} is a FIFO (named pipe), not a regular file; rollout reads only "
                "regular files: fix the path") in result.stdout


# --- 10 and 18: the real sample app in its container -------------------------------------------------


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory):
    with process_sandbox(tmp_path_factory.mktemp("h23-container") / "sb") as info:
        yield info


def cli(box, *args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return rollout("-w", str(box.root), *args, env=env)


def write_stage(box, percentage: int, *, in_place: bool) -> None:  # type: ignore[no-untyped-def]
    """Both files at `percentage` by hand: in place (what a bind-mounted app sees) or by temp file and rename."""
    env = box.root / "app" / ".env"
    text = re.sub(r"(?m)^LITELLM_ENABLED=\w+", "LITELLM_ENABLED=true", env.read_text())
    text = re.sub(r"(?m)^LITELLM_ROLLOUT_PERCENTAGE=\d+", f"LITELLM_ROLLOUT_PERCENTAGE={percentage}", text)
    for path, content in ((env, text), (box.root / "app" / "flags.json", flagd_text(percentage))):
        if in_place:
            with open(path, "r+") as handle:
                handle.write(content)
                handle.truncate()
        else:
            path.with_name(path.name + ".new").write_text(content)
            os.replace(path.with_name(path.name + ".new"), path)


def start_docker_app(box) -> AppControl:  # type: ignore[no-untyped-def]
    result = cli(box, "sandbox", "app", "start", "--runtime", "docker")
    assert result.exit_code == 0, result.output
    record = load_app(box.root)
    assert record is not None
    return AppControl(record.url)


def load(control: AppControl, rps: float, seconds: float) -> None:
    control.load(rps, seconds, "glm-4.5-air", GATEWAY_ALIASES["glm-4.5-air"])


def gateway_requests_pass(control: AppControl) -> None:
    control.requests(0)
    since = time.time()
    load(control, 10, 2)
    # waited for, not slept on: a container just started on a busy machine may take seconds to send
    through = wait_until(lambda: [r for r in control.requests(since) if r["path"] == "gateway"], 30,
                         "the app's first requests through the gateway")
    assert all(r["status"] == 200 for r in through), through[:3]  # the key reached the app


@pytest.mark.xdist_group("test_hardening_container")  # its module sandbox, started once (conftest rule 6)
@pytest.mark.slow(50)
@pytest.mark.docker
def test_the_sample_apps_container_has_no_master_key_in_its_environment(box, docker_engine):
    """The key reaches the app as a read-only file: the sandbox's key file, or a 0600 copy when it is not in one."""
    write_stage(box, 100, in_place=True)
    master_file = box.root / ".rollout" / "master.key"
    own_copy = box.root / ".rollout" / "app-gateway.key"
    key = box.master_key
    try:
        for source, env in ((master_file, None), (own_copy, {"ROLLOUT_SANDBOX_MASTER_KEY": key})):
            if env:  # the key only in the variable: the key file moved away meanwhile
                master_file.rename(master_file.with_suffix(".away"))
            result = cli(box, "sandbox", "app", "start", "--runtime", "docker", env=env)
            assert result.exit_code == 0, result.output
            control = AppControl(load_app(box.root).url)  # type: ignore[union-attr]
            attrs = docker_engine.containers.get(app_container_name(box.root)).attrs
            assert not any(key in entry for entry in attrs["Config"]["Env"]), "docker inspect shows it"
            mount = next(m for m in attrs["Mounts"] if m["Destination"] == "/run/secrets/litellm_api_key")
            assert (mount["Source"], mount["RW"]) == (str(source), False)
            assert oct(source.stat().st_mode & 0o777) == "0o600"
            gateway_requests_pass(control)
            load(control, 0, 0)
        assert cli(box, "sandbox", "app", "stop").exit_code == 0
        assert not own_copy.exists()  # the copy goes with the app
    finally:
        if master_file.with_suffix(".away").exists():
            master_file.with_suffix(".away").rename(master_file)
        write_stage(box, 0, in_place=True)


@pytest.mark.xdist_group("test_hardening_container")  # its module sandbox, started once (conftest rule 6)
@pytest.mark.slow(50)
@pytest.mark.docker
def test_level_1_reaches_a_paused_app_container_through_its_bind_mounts(box, docker_engine):
    write_stage(box, 10, in_place=True)
    control = start_docker_app(box)
    name = app_container_name(box.root)
    container = docker_engine.containers.get(name)
    container.pause()
    try:
        result = cli(box, "rollback", "--level", "1", "--yes", "--reason", "paused app", "--json")
        assert result.exit_code in (0, 3), result.output  # 3: a paused app sends nothing to verify
        steps = {s["type"]: s for s in json.loads(result.stdout)["levels"][0]["steps"]}
        assert steps["env.set"]["detail"].endswith(f"(in place, same inode, journalled (bind-mounted into container "
                                                   f"{name}))")
        assert "bind-mounted into container" in steps["flag.set"]["detail"]
    finally:
        container.unpause()
    container.reload()  # the file through the container's own root: `exec_run` output is lost now and then
    seen = (Path(f"/proc/{container.attrs['State']['Pid']}/root") / "app" / ".env").read_text()
    assert "LITELLM_ROLLOUT_PERCENTAGE=0" in seen  # on main: still 10, the rename left the container's inode behind
    deadline = time.monotonic() + 10
    while control.status()["env"].get("LITELLM_ROLLOUT_PERCENTAGE") != "0" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert control.status()["env"]["LITELLM_ROLLOUT_PERCENTAGE"] == "0"


@pytest.mark.xdist_group("test_hardening_container")  # its module sandbox, started once (conftest rule 6)
@pytest.mark.slow(50)
@pytest.mark.docker
def test_status_fails_when_the_app_still_sends_traffic_through_the_gateway_at_0(box):
    write_stage(box, 50, in_place=True)
    control = start_docker_app(box)
    load(control, 25, 60)
    try:
        time.sleep(2)
        write_stage(box, 0, in_place=False)  # renamed: the container still reads the 50 % it had
        result = cli(box, "status", "--json")
        assert result.exit_code == 1, result.output  # on main: exit 0 beside "configured 0%, observed 50%"
        data = json.loads(result.stdout)
        assert data["stage"]["percentage"] == 0 and data["observed"]["share"] > 0
        assert any(m.startswith(f"the app still sends {data['observed']['share']}% of its requests through the "
                                "gateway while the files say 0%") for m in data["messages"]), data["messages"]
    finally:
        load(control, 0, 0)
        cli(box, "sandbox", "app", "stop")
        write_stage(box, 0, in_place=True)
    quiet = cli(box, "status")
    assert quiet.exit_code == 0, quiet.output  # no app traffic at 0 %: nothing to flag


@pytest.mark.xdist_group("test_hardening_container")  # its module sandbox, started once (conftest rule 6)
@pytest.mark.slow(50)
def test_signal_reload_by_pid_file_still_reaches_the_real_sample_app(box):
    """The sandbox's own pid file passes the identity check (the app writes it after it starts)."""
    write_stage(box, 0, in_place=True)
    assert cli(box, "sandbox", "app", "start", "--runtime", "process", "--reads-files-once").exit_code == 0
    record = load_app(box.root)
    assert record is not None
    config = box.root / "rollout.yaml"
    original = config.read_text()
    try:
        config.write_text(original.replace("  metrics_url:", "  reload: {signal: {pid_file: .rollout/app.pid, process: app_main.py}}\n"
                                                             "  metrics_url:"))
        drill = cli(box, "rollback", "--level", "1", "--drill")
        assert drill.exit_code == 0, drill.output
        result = cli(box, "rollback", "--level", "1", "--yes", "--json")
        assert result.exit_code in (0, 3), result.output
        reload = {s["type"]: s for s in json.loads(result.stdout)["levels"][0]["steps"]}["app.reload"]
        pid = record.pid_file.read_text().strip()
        assert re.fullmatch(rf"sent SIGHUP to pid {pid} \(\S*python\S* \S*/sandbox/app_main\.py.*\) "
                            rf"\(from {re.escape(str(record.pid_file))}\)", reload["detail"]), reload["detail"]
        deadline = time.monotonic() + 10
        while AppControl(record.url).status()["reloads"] < 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert AppControl(record.url).status()["reloads"] >= 1
    finally:
        config.write_text(original)
        cli(box, "sandbox", "app", "stop")
