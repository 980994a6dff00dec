"""The autopilot's tick decision as tables: breach vs hold vs promote, the threshold, one rollback per breach.

The breach checks are the judge's own gates on recorded snapshots (tests/snapshots/, as test_judge.py);
the decision is a pure function of what a tick knows. No I/O, no clock.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from rollout_cli.autopilot.decide import (
    AWAIT_APPROVAL,
    BREACH,
    BREACH_GATES,
    COMPLETE,
    HOLD,
    PAUSED,
    PROMOTE,
    ROLLBACK,
    SOAK,
    BreachCheck,
    TickFacts,
    breach_check,
    decide,
)
from rollout_cli.autopilot.trail import approval, paused_by
from rollout_cli.errors import PlaybookError
from rollout_cli.rollout.judge import judge
from rollout_cli.rollout.plan import AutopilotSettings, parse_plan
from rollout_cli.rollout.snapshot import Snapshot
from rollout_cli.schemas import load_schema
from support import make_world, wait_until
from test_judge import plan, recorded

BROKEN = BreachCheck("breach", ("primary glm-4.5-air: down, HTTP 500",))
SHARED = BreachCheck("shared", ("primary glm-4.5-air: down; the direct path fails too",))
CLEAR = BreachCheck("clear")


@pytest.mark.parametrize(("snapshot", "status", "gate"), [
    ("prometheus-healthy", "clear", None),
    ("primary-down-gateway-only", "breach", "primary glm-4.5-air: down, HTTP 500"),
    ("gateway-only", "breach", "error rate vs direct: gateway 5.00%"),
    # the provider down for everyone: the judge holds it, so it is never a breach
    ("primary-down-everywhere", "shared", "the direct path fails too"),
    ("provider-wide", "shared", "the direct path fails too"),
    # a window that cannot be judged (no samples) is not a breach either
    ("gateway-source", "clear", None),
])
def test_breach_checks_are_the_judges_gates_on_recorded_snapshots(snapshot: str, status: str, gate: str | None):
    check = breach_check(judge(Snapshot.from_json(recorded(snapshot)), plan()))
    assert check.status == status
    assert len(check.gates) == len(check.reasons) and set(check.gates) <= set(BREACH_GATES)
    if gate is None:
        assert check.reasons == ()
    else:
        assert any(gate in reason for reason in check.reasons), check.reasons


def test_only_breach_gates_breach_a_failing_smoke_or_catalog_blocks_promotion_only():
    decision = judge(Snapshot.from_json(recorded("prometheus-healthy")), plan())
    for gate in decision.gates:
        if gate.name not in BREACH_GATES:
            gate.status = "fail"
    assert breach_check(decision) == CLEAR


def facts(**changes) -> TickFacts:  # type: ignore[no-untyped-def]
    base = TickFacts(stage=50, next_stage=100, breach=CLEAR, consecutive=0, threshold=2, soak_left_s=10.0)
    return replace(base, **changes)


@pytest.mark.parametrize(("given", "action", "streak"), [
    # a breach counts; the threshold-th in a row rolls back
    (facts(breach=BROKEN), BREACH, 1),
    (facts(breach=BROKEN, consecutive=1), ROLLBACK, 2),
    (facts(breach=BROKEN, consecutive=0, threshold=1), ROLLBACK, 1),
    (facts(breach=BROKEN, consecutive=1, threshold=3), BREACH, 2),
    # a clear tick ends the streak (one transient bad tick never rolls back)
    (facts(breach=CLEAR, consecutive=1), SOAK, 0),
    # a failure the direct path shares holds, and neither counts nor clears the streak
    (facts(breach=SHARED, consecutive=1), HOLD, 1),
    (facts(breach=SHARED, consecutive=0, soak_left_s=0.0), HOLD, 0),
    # breach checks run while soaking and while waiting for approval
    (facts(breach=BROKEN, consecutive=1, soak_left_s=0.0, approval_needed=True), ROLLBACK, 2),
    # promotion: soak, then approval, then the advance gates
    (facts(soak_left_s=5.0), SOAK, 0),
    (facts(soak_left_s=0.0), PROMOTE, 0),
    (facts(soak_left_s=0.0, approval_needed=True), AWAIT_APPROVAL, 0),
    (facts(soak_left_s=0.0, approval_needed=True, approved=True), PROMOTE, 0),
    (facts(soak_left_s=None), HOLD, 0),  # no audit record of entering the stage: never promote blind
    (facts(stage=0, next_stage=10, breach=None, soak_left_s=0.0), PROMOTE, 0),
    (facts(stage=100, next_stage=None), COMPLETE, 0),
    (facts(stage=100, next_stage=None, breach=BROKEN, consecutive=1), ROLLBACK, 2),
    # paused: nothing at all, whatever the evidence
    (facts(paused="paused by ops", breach=BROKEN, consecutive=5), PAUSED, 0),
])
def test_tick_decision(given: TickFacts, action: str, streak: int):
    decided = decide(given)
    assert (decided.action, decided.consecutive) == (action, streak)
    if action in (BREACH, ROLLBACK):
        assert decided.reasons == BROKEN.reasons


def test_one_breach_gives_one_rollback_the_rollback_pauses_the_next_ticks():
    """A streak of breached ticks: the rollback on the threshold-th, then its own record pauses every later tick."""
    trail: list[dict] = []
    actions = []
    streak = 0
    for _ in range(6):
        pause = paused_by(trail)
        decided = decide(facts(breach=BROKEN, consecutive=streak, paused="p" if pause else None))
        streak = decided.consecutive
        actions.append(decided.action)
        if decided.action == ROLLBACK:  # what rollback() writes ahead
            trail.append({"time": "2026-01-01T00:00:00Z", "actor": "autopilot", "command": "rollback --level 1",
                          "phase": "started"})
    assert actions == [BREACH, ROLLBACK, PAUSED, PAUSED, PAUSED, PAUSED]
    trail.append({"time": "2026-01-01T00:01:00Z", "actor": "ops", "command": "autopilot resume", "reason": "fixed"})
    assert paused_by(trail) is None


@pytest.mark.parametrize(("records", "paused"), [
    ([], False),
    ([{"command": "autopilot pause"}], True),
    ([{"command": "autopilot pause"}, {"command": "autopilot resume"}], False),
    ([{"command": "rollback --level 2", "phase": "started"}], True),
    ([{"command": "rollback --level 1", "phase": "finished"}], False),  # the started record is the one that counts
    ([{"command": "rollback --level 1 --drill"}], False),  # a drill changes nothing
    ([{"command": "rollback --level 1", "phase": "started"}, {"command": "autopilot resume"},
      {"command": "advance", "phase": "started"}], False),
])
def test_paused_by_the_audit_trail(records: list[dict], paused: bool):
    assert (paused_by(records) is not None) == paused


def test_an_approval_counts_only_for_its_stage_and_after_entering_the_current_one():
    records = [{"command": "approve", "to": 100, "time": "2026-01-01T00:00:10Z", "actor": "ann", "reason": "ok"}]
    entered_before, entered_after = 1767225600.0, 1767225600.0 + 60  # 00:00:00 and 00:01:00
    assert approval(records, 100, entered_before) is not None
    assert approval(records, 50, entered_before) is None
    assert approval(records, 100, entered_after) is None  # an approval from before this stage began


def test_autopilot_settings_parse_with_defaults_and_every_bad_value_is_named():
    assert parse_plan({"stages": [10, 50, 100]}, Path("p.yaml")).autopilot == AutopilotSettings()
    parsed = parse_plan(yaml.safe_load("autopilot: {interval: 10s, failure_threshold: 3, on_breach: rollback-2, "
                                       "approve_before: [100]}"), Path("p.yaml")).autopilot
    assert parsed == AutopilotSettings(10.0, 3, 2, (100,))
    for raw, message in [
        ("autopilot: {interval: 0s}", "'autopilot.interval' must be at least 1s"),
        ("autopilot: {interval: soon}", "autopilot.interval: expected a duration"),
        ("autopilot: {failure_threshold: 0}", "'autopilot.failure_threshold' must be a whole number >= 1"),
        ("autopilot: {failure_threshold: true}", "'autopilot.failure_threshold' must be a whole number >= 1"),
        ("autopilot: {on_breach: rollback-9}", "'autopilot.on_breach' must be rollback-1..rollback-4, got"),
        ("autopilot: {approve_before: [75]}", "'autopilot.approve_before' names stage 75"),
        ("autopilot: {approve_before: 100}", "'autopilot.approve_before' must be a list of stages"),
        ("autopilot: {threshold: 2}", "unknown key 'autopilot.threshold'"),
        ("autopilot: 5", "'autopilot' must be a mapping"),
    ]:
        with pytest.raises(PlaybookError, match=message.replace("(", r"\(").replace("[", r"\[")):
            parse_plan(yaml.safe_load(raw), Path("p.yaml"))


# --- through `rollout`, on a workspace with no gateway: the controls and bad settings ---------------------


@pytest.fixture
def world(tmp_path: Path):  # type: ignore[no-untyped-def]
    w = make_world(tmp_path, percentage=50)
    (w.ws / "books").mkdir()
    (w.ws / "books" / "rollout.yaml").write_text("kind: rollout\nautopilot: {approve_before: [100]}\n")
    (w.ws / "rollout.yaml").write_text((w.ws / "rollout.yaml").read_text() + "playbooks: ./books\n")
    return w


@pytest.mark.parametrize("bad", ["autopilot: {failure_threshold: 0}", "autopilot: {interval: -5s}",
                                 "autopilot: {on_breach: rollback-0}", "autopilot: {approve_before: [42]}"])
def test_a_bad_autopilot_setting_is_exit_2_and_nothing_starts(world, bad: str):
    (world.ws / "books" / "rollout.yaml").write_text(f"kind: rollout\n{bad}\n")
    before = world.snapshot()
    result = world.cli("autopilot", "--once")
    assert result.exit_code == 2, result.output
    assert "autopilot" in result.stderr and "Traceback" not in result.output
    state = world.ws / ".rollout"
    assert not (state / "autopilot.json").exists() and not (state / "autopilot.lease").exists()
    assert world.snapshot() == before


def test_pause_holds_every_tick_and_resume_approve_are_recorded_with_who_and_why(world):
    assert world.cli("autopilot", "pause").exit_code == 2  # --reason is required
    paused = world.cli("autopilot", "pause", "--reason", "change freeze", env={"ROLLOUT_ACTOR": "ann"})
    assert paused.exit_code == 0 and "recorded `autopilot pause` by ann" in paused.stdout
    ticked = world.cli("autopilot", "--once")  # paused: no check is sent (this workspace has no gateway at all)
    assert ticked.exit_code == 0 and " 50% paused: paused by ann at " in ticked.stdout
    assert "change freeze" in ticked.stdout
    status = world.cli("autopilot", "status")
    assert status.exit_code == 0
    assert "nothing until `rollout autopilot resume --reason TEXT`" in status.stdout
    assert "no autopilot runs on this workspace" in status.stdout
    approved = world.cli("approve", "--reason", "looks good", "--json", env={"ROLLOUT_ACTOR": "bob"})
    record = json.loads(approved.stdout)["record"]
    assert (record["actor"], record["from"], record["to"], record["reason"]) == ("bob", 50, 100, "looks good")
    assert world.cli("autopilot", "resume", "--reason", "freeze over").exit_code == 0
    for schema, args in (("autopilot status", []), ("autopilot pause", ["--reason", "r"]),
                         ("autopilot resume", ["--reason", "r"]), ("approve", ["--reason", "r"])):
        out = json.loads(world.cli(*schema.split(), *args, "--json").stdout)
        assert not list(Draft202012Validator(load_schema(schema)).iter_errors(out)), schema
    commands = [(r["command"], r["actor"], r["reason"]) for r in world.history()]
    assert commands[0] == ("autopilot pause", "ann", "change freeze")
    assert commands[1:4] == [("approve", "bob", "looks good"), ("autopilot resume", commands[2][1], "freeze over"),
                             ("autopilot pause", commands[2][1], "r")]


def test_approve_at_100_is_refused(tmp_path: Path):
    w = make_world(tmp_path, percentage=100)
    result = w.cli("approve", "--reason", "x")
    assert result.exit_code == 2 and "nothing to approve: the rollout is complete at 100%" in result.stderr
    assert w.history() == []


def test_the_service_survives_a_failing_tick_and_stops_on_sigterm_with_exit_0(world):
    """A tick that cannot read the env file (an edit under way) is reported; the next tick runs; SIGTERM ends it."""
    (world.ws / "books" / "rollout.yaml").write_text("kind: rollout\nautopilot: {interval: 1s}\n")
    assert world.cli("autopilot", "pause", "--reason", "no checks in this test").exit_code == 0
    env_file = world.app.env_file
    good = env_file.read_text()
    env_file.write_text(good.replace("LITELLM_ROLLOUT_PERCENTAGE=50", "LITELLM_ROLLOUT_PERCENTAGE=half"))
    out_path, err_path = world.root / "out.jsonl", world.root / "err.txt"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        pilot = subprocess.Popen([sys.executable, "-m", "rollout_cli", "-w", str(world.ws), "autopilot", "--json"],
                                 stdout=out, stderr=err, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        try:
            wait_until(lambda: "this tick failed" in err_path.read_text(), 30, "a failed tick reported")
            env_file.write_text(good)
            wait_until(lambda: '"action": "paused"' in out_path.read_text(), 30, "a tick after the file was fixed")
        finally:
            pilot.send_signal(signal.SIGTERM)
            pilot.wait(timeout=60)
    assert pilot.returncode == 0, err_path.read_text()
    lines = [json.loads(line) for line in out_path.read_text().splitlines()]
    assert "is not a whole number 0..100" in lines[0]["error"]["message"]
    assert lines[-1]["action"] == "paused" and not (world.ws / ".rollout" / "autopilot.lease").exists()
