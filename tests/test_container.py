"""The Docker adapter against the real engine and a real (tiny) image."""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rollout_cli.errors import ContainerNotFound, DockerUnavailable, InputError, UnavailableError
from rollout_cli.io.container import ContainerRuntime, ContainerState, connect, find_container, read_state

pytestmark = pytest.mark.docker

# Prints lines, then idles until SIGTERM, on which it exits 0 at once.
CHATTY = "trap 'exit 0' TERM; for i in 1 2 3 4 5; do echo line$i; done; while :; do sleep 1; done"


def unique(prefix: str = "rollout-test") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def wait_for(predicate: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(0.1)


@pytest.fixture
def runtime(docker_engine) -> ContainerRuntime:
    return ContainerRuntime(docker_engine)


@pytest.fixture
def make_container(runtime: ContainerRuntime, busybox_image: str) -> Iterator[Callable[..., ContainerState]]:
    """Run test-image containers under unique names; remove them all afterwards."""
    names: list[str] = []

    def make(name: str | None = None, **kwargs) -> ContainerState:
        name = name or unique()
        names.append(name)
        return runtime.run_detached(busybox_image, name, **kwargs)

    yield make
    for name in names:
        runtime.remove(name)


def test_find_by_exact_name_not_by_substring(runtime, make_container, docker_engine):
    name = unique()
    make_container(f"{name}-longer")
    make_container(name)

    assert find_container(docker_engine, name).name == name
    assert runtime.state(f"{name}-longer").name == f"{name}-longer"


def test_find_by_compose_service_label_picks_newest_when_none_is_up(runtime, make_container):
    service = unique("gateway")
    older = make_container(f"proj-{service}-1", labels={"com.docker.compose.service": service})
    time.sleep(0.05)
    newest = make_container(f"proj-{service}-2", labels={"com.docker.compose.service": service})
    runtime.stop(older.name)
    runtime.stop(newest.name)

    assert runtime.find(service).name == newest.name == f"proj-{service}-2"


def test_compose_service_skips_one_offs_prefers_the_running_one_and_refuses_two(runtime, make_container):
    service = unique("gateway")
    labels = {"com.docker.compose.service": service}
    running = make_container(f"proj-{service}-1", labels=labels)
    time.sleep(0.05)
    stopped = make_container(f"proj-{service}-2", labels=labels)
    runtime.stop(stopped.name)
    time.sleep(0.05)
    oneoff = make_container(f"proj-{service}-run-abc", labels={**labels, "com.docker.compose.oneoff": "True"})
    runtime.stop(oneoff.name)

    assert runtime.find(service).name == running.name  # not the newer stopped one, never the one-off
    assert read_state(service).name == running.name
    runtime.start(stopped.name)
    for ask in (runtime.state, read_state):
        with pytest.raises(InputError, match=f"compose service '{service}' has 2 containers up "
                                             fr"\(proj-{service}-1, proj-{service}-2\): which one is meant is "
                                             "unclear; set gateway.container in rollout.yaml to one container's "
                                             "exact name"):
            ask(service)


def test_exact_name_wins_over_compose_service(runtime, make_container):
    name = unique()
    make_container(name)
    make_container(f"proj-{name}-1", labels={"com.docker.compose.service": name})

    assert runtime.find(name).name == name


def test_find_includes_stopped_containers(runtime, make_container):
    state = make_container()
    runtime.stop(state.name)

    assert runtime.state(state.name).status == "exited"


def test_not_found_names_the_container_and_the_config_key(runtime):
    name = unique("absent")
    with pytest.raises(ContainerNotFound, match=f"no container named '{name}'") as caught:
        runtime.stop(name)

    message = str(caught.value)
    assert f"no container named '{name}' or with compose service '{name}'" in message
    assert "docker ps -a" in message and "gateway.container in rollout.yaml" in message


def test_run_detached_uses_host_network_env_and_labels(make_container, docker_engine):
    state = make_container(environment={"ROLLOUT_X": "1"}, labels={"rollout.test": "yes"})
    attrs = docker_engine.containers.get(state.name).attrs

    assert state.running and state.changed
    assert attrs["HostConfig"]["NetworkMode"] == "host"
    assert "ROLLOUT_X=1" in attrs["Config"]["Env"]
    assert attrs["Config"]["Labels"]["rollout.test"] == "yes"


def test_running_state_fields(make_container, busybox_image):
    before = datetime.now(UTC)
    state = make_container()

    assert state.status == "running" and state.running
    assert len(state.id) == 12
    assert state.image == busybox_image
    assert state.health is None  # the test image has no healthcheck
    assert state.exit_code is None and state.finished_at is None
    assert state.started_at is not None
    assert before - timedelta(seconds=1) <= state.started_at <= datetime.now(UTC)  # this run, not an old one
    assert state.uptime_s is not None and state.uptime_s >= 0
    assert state.restart_count == 0 and not state.oom_killed


def test_stop_running_container_changes_state(runtime, make_container, docker_engine):
    name = make_container().name

    state = runtime.stop(name, timeout=5)

    assert state.changed and not state.running
    assert state.status == "exited" and state.exit_code == 0
    assert state.finished_at is not None and state.uptime_s is None
    assert docker_engine.containers.get(name).status == "exited"  # seen independently


def test_stop_twice_is_harmless(runtime, make_container):
    name = make_container().name
    runtime.stop(name)

    again = runtime.stop(name)

    assert not again.changed
    assert again.status == "exited" and again.exit_code == 0


def test_start_stopped_container_then_start_again_is_harmless(runtime, make_container, docker_engine):
    name = make_container().name
    runtime.stop(name)

    started = runtime.start(name)
    again = runtime.start(name)

    assert started.changed and started.running and started.exit_code is None
    assert docker_engine.containers.get(name).status == "running"
    assert not again.changed and again.running


def test_restart_gives_a_new_start_time(runtime, make_container):
    before = make_container()
    time.sleep(0.05)

    after = runtime.restart(before.name, timeout=5)

    assert after.running and after.changed
    assert after.started_at > before.started_at


def test_restart_count_and_exit_code_of_a_crashing_container(runtime, make_container):
    name = make_container(command=["sh", "-c", "echo boom; exit 3"], restart="on-failure:2").name

    wait_for(lambda: (s := runtime.state(name)).status == "exited" and s.restart_count == 2)
    state = runtime.state(name)

    assert state.exit_code == 3 and not state.running and not state.oom_killed
    assert runtime.logs(name).count("boom") == 3  # first run plus two restarts


def test_logs_tail_returns_the_last_lines(runtime, make_container):
    name = make_container(command=["sh", "-c", CHATTY]).name
    wait_for(lambda: "line5" in runtime.logs(name))

    assert runtime.logs(name, tail=2) == "line4\nline5\n"
    assert runtime.logs(name, tail=100).splitlines() == [f"line{i}" for i in range(1, 6)]


def test_follow_logs_yields_lines_until_the_container_exits(runtime, make_container):
    name = make_container(command=["sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.2; done"]).name

    assert list(runtime.follow_logs(name, tail=100)) == ["line1", "line2", "line3"]


def test_run_detached_with_missing_image_says_so(runtime):
    with pytest.raises(UnavailableError, match="image 'rollout-test/absent:never' is not in") as caught:
        runtime.run_detached("rollout-test/absent:never", unique())

    assert "image 'rollout-test/absent:never' is not in the Docker engine" in str(caught.value)


def test_remove_is_harmless_when_absent(runtime, make_container, docker_engine):
    name = make_container().name

    assert runtime.remove(name) is True
    assert runtime.remove(name) is False
    assert not docker_engine.containers.list(all=True, filters={"name": name})


@pytest.fixture
def silent_socket(tmp_path: Path) -> Iterator[str]:
    """A unix socket that exists but where nobody accepts connections."""
    path = tmp_path / "silent.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.bind(str(path))  # bound, never listening: connect() is refused
    yield f"unix://{path}"
    sock.close()


@pytest.mark.parametrize("kind", ["missing socket file", "socket nobody answers"])
def test_docker_unavailable_names_the_host(kind, monkeypatch, request):
    host = "unix:///tmp/nonexistent.sock" if kind == "missing socket file" else request.getfixturevalue("silent_socket")
    monkeypatch.setenv("DOCKER_HOST", host)

    with pytest.raises(DockerUnavailable, match="Docker engine does not answer at ") as caught:
        ContainerRuntime()

    message = str(caught.value)
    assert message.startswith(f"Docker engine does not answer at {host}: ")
    assert "scripts/docker-up.sh" in message and "DOCKER_HOST" in message
    assert "\n" not in message

    with pytest.raises(DockerUnavailable, match="Docker engine does not answer at "):
        connect(timeout=1)


# --- read_state: the same answers over the engine's socket, without the SDK (gateway status) ----------


def test_read_state_answers_as_the_sdk_does(runtime, make_container):
    name = unique()
    make_container(f"{name}-longer")
    make_container(name)
    service = unique("gateway")
    older = make_container(f"proj-{service}-1", labels={"com.docker.compose.service": service})
    time.sleep(0.05)  # the same second: the container list's Created cannot tell them apart
    newer = make_container(f"proj-{service}-2", labels={"com.docker.compose.service": service})
    runtime.stop(older.name)  # neither up: the newest wins
    runtime.stop(newer.name)
    stopped = make_container()
    runtime.stop(stopped.name)

    for target in (name, f"{name}-longer", service, stopped.name):
        by_socket = read_state(target)
        assert by_socket is not None
        by_sdk = runtime.state(target)
        assert by_socket.as_dict() | {"uptime_s": None} == by_sdk.as_dict() | {"uptime_s": None}, target
    assert read_state(service).name == f"proj-{service}-2"
    assert read_state(stopped.name).status == "exited" and read_state(stopped.name).exit_code == 0


def test_read_state_not_found_and_dead_engine_say_what_the_sdk_path_says(runtime, monkeypatch, tmp_path):
    name = unique("absent")
    with pytest.raises(ContainerNotFound, match=f"no container named '{name}' or with compose service '{name}'"):
        read_state(name)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-engine.sock")
    with pytest.raises(DockerUnavailable, match=r"does not answer at unix://.*no-engine\.sock: No such file or "
                                                r"directory; start it \(e\.g\. scripts/docker-up\.sh\)"):
        read_state(name)
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:1")
    assert read_state(name) is None  # not a unix socket: the caller asks through the SDK
