"""Rollback level 3 against the real Docker engine and a real running container.

On a process sandbox: test_effects_traffic.py; on the sandbox's real LiteLLM container: test_gateway.py.
"""

from __future__ import annotations

import json
import uuid

import pytest

from rollout_cli.sandbox.sample_app import git
from support import make_world


@pytest.fixture
def gateway_box(docker_engine, busybox_image):
    """A running container standing in for the gateway (level 3 only stops it)."""
    name = f"rollout-test-gw-{uuid.uuid4().hex[:8]}"
    service = f"svc-{uuid.uuid4().hex[:6]}"
    box = docker_engine.containers.run(
        busybox_image, name=name, detach=True, network_mode="host",
        labels={"com.docker.compose.service": service},
    )
    yield name, service
    box.remove(force=True)


def _status(docker_engine, name):
    return docker_engine.containers.get(name).status


@pytest.mark.docker
def test_level_3_stops_the_container_and_twice_is_harmless(tmp_path, docker_engine, gateway_box):
    name, _ = gateway_box
    world = make_world(tmp_path, container=name)
    result = world.cli("rollback", "--level", "3", "--yes", "--reason", "drill for real", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert [lvl["level"] for lvl in data["levels"]] == [1, 2, 3]
    assert data["levels"][2]["steps"][1]["detail"].startswith(f"verified: gateway {name} exited")
    assert _status(docker_engine, name) == "exited"
    record = world.history()[-1]
    assert {"container": name, "before": "running", "after": "exited"} in record["changes"]
    again = world.cli("rollback", "--level", "3", "--yes", "--json")
    assert again.exit_code == 0
    assert json.loads(again.stdout)["levels"][2]["steps"][0]["status"] == "unchanged"


@pytest.mark.docker
def test_level_3_finds_container_by_compose_service(tmp_path, docker_engine, gateway_box):
    name, service = gateway_box
    world = make_world(tmp_path, container=service)
    result = world.cli("rollback", "--level", "3", "--yes")
    assert result.exit_code == 0, result.output
    assert _status(docker_engine, name) == "exited"


@pytest.mark.docker
def test_level_3_drill_checks_engine_and_container_without_stopping(tmp_path, docker_engine, gateway_box):
    name, _ = gateway_box
    world = make_world(tmp_path, container=name)
    snap = world.snapshot()
    result = world.cli("rollback", "--level", "4", "--drill")
    assert result.exit_code == 0, result.output
    assert f"container {name} found (running)" in result.stdout
    assert _status(docker_engine, name) == "running"
    assert world.snapshot() == snap


@pytest.mark.docker
def test_container_absent_names_it(tmp_path, docker_engine):
    world = make_world(tmp_path, container="no-such-gateway-xyz")
    result = world.cli("rollback", "--level", "3", "--yes", "--json")
    assert result.exit_code == 4
    step = json.loads(result.stdout)["levels"][2]["steps"][0]
    assert "no container named 'no-such-gateway-xyz'" in step["detail"]
    assert "check gateway.container in rollout.yaml" in step["detail"]


@pytest.mark.docker
def test_engine_down_levels_1_and_2_still_take_effect(tmp_path, docker_engine, gateway_box):
    name, _ = gateway_box
    world = make_world(tmp_path, container=name)
    result = world.cli(
        "rollback", "--level", "3", "--yes", "--json",
        env={"DOCKER_HOST": f"unix://{tmp_path}/no-engine.sock"},
    )
    assert result.exit_code == 4
    data = json.loads(result.stdout)
    assert "LITELLM_ROLLOUT_PERCENTAGE=0" in world.app.env_file.read_text()
    assert "restore router" in git(world.app.repo, "log", "-1", "--format=%s")
    level3 = data["levels"][2]["steps"][0]
    assert level3["status"] == "failed" and "Docker engine does not answer" in level3["detail"]
    assert any("level 1" in line for line in data["took_effect"])
    assert any("level 2" in line for line in data["took_effect"])
    assert _status(docker_engine, name) == "running"


@pytest.mark.docker
def test_level_4_runs_after_levels_1_to_3(tmp_path, docker_engine, gateway_box):
    name, _ = gateway_box
    world = make_world(tmp_path, container=name)
    result = world.cli("rollback", "--level", "4", "--yes", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert all(lvl["within_budget"] for lvl in data["levels"])
    assert _status(docker_engine, name) == "exited"
    assert not (world.app.repo / "server/litellm-client.ts").exists()
    assert git(world.app.repo, "status", "--porcelain", "--untracked-files=no").strip() == "M flags.json"


@pytest.mark.docker
def test_status_shows_container_state(tmp_path, docker_engine, gateway_box):
    name, _ = gateway_box
    world = make_world(tmp_path, container=name)
    result = world.cli("status", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["container"]["status"] == "running"


@pytest.mark.docker
def test_level_3_stops_a_paused_container(tmp_path, docker_engine, gateway_box):
    name, _ = gateway_box
    docker_engine.containers.get(name).pause()
    world = make_world(tmp_path, container=name)
    result = world.cli("rollback", "--level", "3", "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["levels"][2]["steps"][0]["status"] == "ok"
    assert _status(docker_engine, name) == "exited"


@pytest.fixture
def term_ignoring_box(docker_engine, busybox_image):
    """A container whose PID 1 ignores SIGTERM: only the SIGKILL after the grace period stops it."""
    name = f"rollout-test-stubborn-{uuid.uuid4().hex[:8]}"
    box = docker_engine.containers.run(
        busybox_image, ["/bin/sh", "-c", "trap '' TERM; while :; do sleep 1; done"],
        name=name, detach=True, network_mode="host",
    )
    yield name
    box.remove(force=True)


@pytest.mark.docker
def test_level_3_kills_a_container_that_ignores_sigterm(tmp_path, docker_engine, term_ignoring_box):
    """The shipped level 3 (container.stop, 10 s grace): SIGTERM is ignored, the engine's SIGKILL ends it."""
    name = term_ignoring_box
    world = make_world(tmp_path, container=name)
    result = world.cli("rollback", "--level", "3", "--yes", "--json")
    assert result.exit_code == 0, result.output
    level3 = json.loads(result.stdout)["levels"][2]
    stop, verify, direct = level3["steps"]
    assert (stop["status"], stop["detail"]) == ("ok", f"stopped container {name} (exited)")
    assert stop["duration_s"] >= 10  # the whole grace period went by: SIGTERM did nothing
    assert verify["detail"].startswith(f"verified: gateway {name} exited")
    # the level's last step checks the app's direct path; this world names no app.probe
    assert (direct["type"], direct["status"]) == ("verify.app", "skipped")
    assert direct["detail"].startswith("not checked: rollout.yaml names no app.probe")
    state = docker_engine.containers.get(name).attrs["State"]
    assert (state["Status"], state["ExitCode"]) == ("exited", 137)  # 128 + SIGKILL: the forced path
    assert level3["within_budget"] is True
