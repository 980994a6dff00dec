"""Every step type executed through `rollout rollback`: run (ok, failing, timing out), wait,
container.start, and a level that overruns its budget.

Each test writes a workspace playbook override (`playbooks: ./books`) and runs the
real command; the effects are observed in the world (files, processes, the engine).
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import pytest

from support import make_world

LEVEL_1_HEAD = "kind: rollback\nlevel: 1\nname: test level 1\nbudget: {budget}\nsteps:\n"
TRAFFIC_OFF = "  - type: env.set\n    values: {LITELLM_ROLLOUT_PERCENTAGE: 0}\n  - type: flag.set\n    percentage: 0\n"


@pytest.fixture
def world(tmp_path):
    w = make_world(tmp_path, percentage=10)
    (w.ws / "books").mkdir()
    (w.ws / "rollout.yaml").write_text((w.ws / "rollout.yaml").read_text() + "playbooks: ./books\n")
    return w


def level_1(world, steps: str, budget: str = "30s") -> None:
    (world.ws / "books" / "rollback-1.yaml").write_text(LEVEL_1_HEAD.format(budget=budget) + steps)


def run_step(argv: list[str], timeout: float | None = None) -> str:
    text = f"  - type: run\n    argv: {json.dumps(argv)}\n"
    return text + (f"    timeout: {timeout}\n" if timeout is not None else "")


def rollback(world, *args: str) -> tuple[int, dict]:
    result = world.cli("rollback", "--level", "1", "--yes", "--json", *args)
    return result.exit_code, json.loads(result.stdout)


def steps_of(data: dict) -> list[tuple[str, str]]:
    return [(s["type"], s["status"]) for s in data["levels"][0]["steps"]]


def test_run_step_that_succeeds_runs_in_the_workspace_folder(world):
    script = "import os; open('ran.txt', 'w').write(os.getcwd())"
    level_1(world, TRAFFIC_OFF + run_step([sys.executable, "-c", script]))
    code, data = rollback(world)
    assert code == 0, data
    assert steps_of(data) == [("env.set", "ok"), ("flag.set", "ok"), ("run", "ok")]
    run = data["levels"][0]["steps"][2]
    assert run["detail"] == f"run {sys.executable} -c {script}: exit 0"
    assert (world.ws / "ran.txt").read_text() == str(world.ws)
    record = world.history()[-1]
    assert [(s["type"], s["status"]) for s in record["steps"]] == steps_of(data)


def test_run_step_that_fails_stops_the_level_and_names_its_exit_code(world):
    script = "import sys; sys.stderr.write('migration refused\\n'); sys.exit(3)"
    level_1(world, run_step([sys.executable, "-c", script]) + TRAFFIC_OFF)
    snap = world.snapshot()
    code, data = rollback(world)
    assert code == 1, data
    assert steps_of(data) == [("run", "failed"), ("env.set", "skipped"), ("flag.set", "skipped")]
    run = data["levels"][0]["steps"][0]
    assert run["detail"].startswith(f"run {sys.executable} -c ")
    assert run["detail"].endswith(" exited 3: migration refused")
    assert data["levels"][0]["steps"][1]["detail"] == "not run: level 1 step 1 (run) failed"
    assert world.snapshot() == snap  # the stop held: nothing after the failed step ran
    assert data["took_effect"] == []


def test_run_step_that_times_out_is_killed_and_fails(world, tmp_path):
    pid_file = tmp_path / "child.pid"
    script = f"import os, time; open({str(pid_file)!r}, 'w').write(str(os.getpid())); time.sleep(600)"
    level_1(world, TRAFFIC_OFF + run_step([sys.executable, "-c", script], timeout=1))
    code, data = rollback(world)
    assert code == 1, data
    assert steps_of(data) == [("env.set", "ok"), ("flag.set", "ok"), ("run", "failed")]
    run = data["levels"][0]["steps"][2]
    assert run["detail"].startswith(f"run {sys.executable} -c ")
    assert run["detail"].endswith(" timed out after 1 s (its process group was killed)")
    assert run["duration_s"] >= 1
    child = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError, match="No such process"):
        os.kill(child, 0)  # killed and reaped, not left sleeping


def test_a_run_step_never_outlives_its_levels_budget_and_a_later_one_is_not_started(world, tmp_path):
    """Its own timeout is 60 s; the level's budget of 2 s wins, and nothing runs once the budget is spent."""
    sleep = [sys.executable, "-c", "import time; time.sleep(600)"]
    level_1(world, TRAFFIC_OFF + run_step(sleep, timeout=60), budget="2s")
    started = time.monotonic()
    code, data = rollback(world)
    assert code == 1 and time.monotonic() - started < 30, data
    run = data["levels"][0]["steps"][2]
    assert run["detail"].endswith(", what was left of the rollback level's time budget (its process group was "
                                  "killed)"), run
    assert run["duration_s"] < 2.5


def test_with_the_levels_budget_spent_neither_a_program_nor_git_is_started(world):
    from rollout_cli.core.workspace import load_workspace
    from rollout_cli.errors import CheckFailed, GitError
    from rollout_cli.playbook.context import StepContext
    from rollout_cli.playbook.program import Run

    ctx = StepContext(load_workspace(world.ws), ends=time.monotonic() - 1)
    with pytest.raises(CheckFailed, match="not started: the rollback level's time budget ran out"):
        Run(argv=["true"]).run(ctx)
    with pytest.raises(GitError, match=r"git status in .* not started: the rollback level's time budget ran out"):
        ctx.repo().git("status")


def test_run_step_whose_program_is_missing_fails_the_drill_and_the_run(world):
    level_1(world, TRAFFIC_OFF + run_step(["no-such-program-h13"]))
    drill = world.cli("rollback", "--level", "1", "--drill", "--json")
    assert drill.exit_code == 2, drill.output
    checks = [c for s in json.loads(drill.stdout)["levels"][0]["steps"] for c in s.get("checks", [])]
    assert {"name": "program no-such-program-h13 present", "ok": False,
            "detail": "program 'no-such-program-h13' not found on PATH", "exit_code": 2} in checks
    code, data = rollback(world)
    assert code == 2 and steps_of(data)[2] == ("run", "failed")


def test_wait_step_waits_its_seconds(world):
    level_1(world, TRAFFIC_OFF + "  - type: wait\n    seconds: 0.3\n")
    code, data = rollback(world)
    assert code == 0, data
    wait = data["levels"][0]["steps"][2]
    assert (wait["type"], wait["status"], wait["detail"]) == ("wait", "ok", "wait 0.3 s")
    assert wait["duration_s"] >= 0.3


def test_a_level_that_overruns_its_budget_says_so_and_still_finishes(world):
    level_1(world, TRAFFIC_OFF + "  - type: wait\n    seconds: 1.2\n", budget="1s")
    result = world.cli("rollback", "--level", "1", "--yes")
    assert result.exit_code == 0, result.output  # late is reported, not failed: traffic is off
    assert "OVER its 1.0 s budget" in result.stdout
    code, data = rollback(world)
    assert code == 0
    assert data["within_budget"] is False and data["levels"][0]["within_budget"] is False
    assert data["duration_s"] > data["budget_s"] == 1.0
    assert world.history()[-1]["duration_s"] > 1.0


@pytest.mark.docker
def test_container_start_step_starts_a_stopped_container(world, busybox_image, docker_engine):
    from rollout_cli.io.container import ContainerRuntime

    name = f"rollout-test-start-{os.getpid()}"
    runtime = ContainerRuntime()
    runtime.run_detached(busybox_image, name)
    try:
        runtime.stop(name, timeout=5)
        assert docker_engine.containers.get(name).status == "exited"
        level_1(world, TRAFFIC_OFF + f"  - type: container.start\n    container: {name}\n")
        code, data = rollback(world)
        assert code == 0, data
        start = data["levels"][0]["steps"][2]
        assert (start["status"], start["detail"]) == ("ok", f"started container {name}")
        assert docker_engine.containers.get(name).status == "running"  # seen by the engine itself
        assert {"container": name, "before": "exited", "after": "running"} in world.history()[-1]["changes"]
        code, data = rollback(world)
        assert code == 0 and data["levels"][0]["steps"][2]["detail"] == f"container {name} already running"
    finally:
        runtime.remove(name)


def test_every_step_type_is_executed_by_some_test():
    """A new step type must come with a test that runs it: the registry and this suite agree."""
    from rollout_cli.playbook.steps import STEP_TYPES

    suite = "".join(p.read_text() for p in Path(__file__).parent.glob("test_*.py"))
    shipped = "".join(p.read_text() for p in (Path(__file__).parent.parent / "playbooks").glob("rollback-*.yaml"))
    for name in STEP_TYPES:
        assert f"type: {name}" in suite + shipped, f"no test or shipped playbook runs step type {name}"
