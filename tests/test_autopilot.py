"""`rollout autopilot` on a real sandbox: the simulator, the real LiteLLM proxy and the sample app under load.

One process sandbox for the module (tests/conftest.py, rule 6); each test puts the stage where it
needs it. Ticks run with `--once` (each tick is the whole decision: its evidence, its action) except
where the foreground loop itself is the subject (SIGTERM, a second autopilot, the healthy run).
Faults are on the gateway path only (`--via gateway`): the app's direct path stays healthy, so a
failing primary is the gateway's breach, not the provider's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime

import pytest

from rollout_cli.core.audit import AuditLog
from rollout_cli.core.workspace import PERCENTAGE_KEY
from rollout_cli.sandbox.app import AppControl, load_app
from rollout_cli.schemas import load_schema
from rollout_cli.simulator import GATEWAY_ALIASES
from support import at_stage, process_sandbox, rollout, wait_until

pytestmark = [pytest.mark.gateway, pytest.mark.xdist_group("test_autopilot"), pytest.mark.slow(240)]

PRIMARY = "glm-4.5-air"


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory):
    with process_sandbox(tmp_path_factory.mktemp("autopilot") / "sb") as info:
        yield info


@pytest.fixture
def sb(box):
    """The sandbox at 0 % with no faults, a fresh audit trail and autopilot state, its own plan back."""
    box.admin.clear()
    for name in ("history.jsonl", "autopilot.json", "autopilot.lease", "notifications.jsonl", "notify-failures.jsonl"):
        (box.root / ".rollout" / name).unlink(missing_ok=True)
    plan = box.root / "playbooks" / "rollout.yaml"
    original = plan.read_text()
    at_stage(box, 0)
    yield box
    app(box).load(0, 0, PRIMARY, GATEWAY_ALIASES[PRIMARY])  # a load the test outlived stops here
    box.admin.clear()
    plan.write_text(original)


def cli(box, *args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return rollout("-w", str(box.root), *args, env=env)


def tick(box) -> dict:  # type: ignore[no-untyped-def]
    """One `rollout autopilot --once --json`: its one line, valid against the shipped schema."""
    from jsonschema import Draft202012Validator

    result = cli(box, "autopilot", "--once", "--json")
    lines = result.stdout.splitlines()
    assert len(lines) == 1, result.output
    data = json.loads(lines[0])
    assert not list(Draft202012Validator(load_schema("autopilot")).iter_errors(data))
    assert data["exit_code"] == result.exit_code
    return data


def enter(box, percentage: int) -> None:  # type: ignore[no-untyped-def]
    """Put the app at `percentage` and record entering it in the audit trail (its soak begins now)."""
    at_stage(box, percentage)
    AuditLog(box.root / ".rollout").append("advance", reason="test: entered", result="ok",
                                           changes=[{"key": PERCENTAGE_KEY, "before": "0", "after": str(percentage)}])


def received(box) -> list[dict]:  # type: ignore[no-untyped-def]
    """The webhook bodies the sandbox's notification receiver got, oldest first, each valid against the schema."""
    from jsonschema import Draft202012Validator

    result = cli(box, "sandbox", "notifications", "--json")
    assert result.exit_code == 0, result.output
    bodies = [r["body"] for r in json.loads(result.stdout)["received"]]
    for body in bodies:
        assert not list(Draft202012Validator(load_schema("notification")).iter_errors(body)), body
    return bodies


def stage_of(box) -> int:  # type: ignore[no-untyped-def]
    return json.loads(cli(box, "status", "--json").stdout)["stage"]["percentage"]


def records(box, prefix: str) -> list[dict]:  # type: ignore[no-untyped-def]
    """The audit records of `prefix` (e.g. "rollback --level") that changed something, started ones once each."""
    return [r for r in AuditLog(box.root / ".rollout").records()
            if str(r.get("command", "")).startswith(prefix) and r.get("phase") != "started" and r.get("changes")]


def app(box) -> AppControl:  # type: ignore[no-untyped-def]
    record = load_app(box.root)
    assert record is not None
    return AppControl(record.url)


def load(box, seconds: float, rps: float = 10) -> AppControl:  # type: ignore[no-untyped-def]
    control = app(box)
    control.load(rps, seconds, PRIMARY, GATEWAY_ALIASES[PRIMARY])
    return control


def fault(box, *extra: str) -> None:  # type: ignore[no-untyped-def]
    result = cli(box, "sandbox", "fault", PRIMARY, "--status", "500", "--via", "gateway", *extra)
    assert result.exit_code == 0, result.output


def autopilot_process(box, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen:  # type: ignore[no-untyped-def]
    return subprocess.Popen(
        [sys.executable, "-m", "rollout_cli", "-w", str(box.root), "autopilot", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1"},
    )


def lease_of(box) -> dict | None:  # type: ignore[no-untyped-def]
    path = box.root / ".rollout" / "autopilot.lease"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# --- must show 2: a breach on the gateway path rolls back once, by itself ----------------------------


def test_primary_broken_on_the_gateway_path_at_50_rolls_back_once_and_the_apps_gateway_traffic_stops(sb):
    enter(sb, 50)
    control = load(sb, 60)
    wait_until(lambda: any(r["path"] == "gateway" for r in control.requests(time.time() - 2)), 30,
               "the app's traffic through the gateway at 50%")
    fault(sb)
    first = tick(sb)
    assert (first["action"], first["consecutive_failures"], first["stage"]) == ("breach", 1, 50), first
    assert any("primary glm-4.5-air: down, HTTP 500" in r for r in first["reasons"])
    assert [n["kind"] for n in first["notifications"]] == ["breach"]
    assert first["notifications"][0]["severity"] == "warning"
    second = tick(sb)
    assert (second["action"], second["consecutive_failures"]) == ("rollback", 2), second
    assert second["rollback"]["level"] == 1
    rolled_at = time.time()
    assert [(n["kind"], n["severity"]) for n in second["notifications"]] == [("rolled_back", "critical")]
    assert second["notifications"][0]["deliveries"][0]["ok"] is True
    assert stage_of(sb) == 0
    # the app follows: none of its requests goes through the gateway any more (rollout's own checks left out)
    wait_until(lambda: not any(r["path"] == "gateway" for r in control.requests(time.time() - 2))
               and any(r["path"] == "direct" for r in control.requests(time.time() - 2)),
               30, "the app's gateway traffic to stop")
    assert time.time() - rolled_at < 30
    # the same breach, still there: no second rollback (the autopilot's own rollback paused it)
    third = tick(sb)
    assert third["action"] == "paused" and "breach on 2 ticks in a row at 50%" in third["reasons"][0]
    rollbacks = records(sb, "rollback --level")
    assert len(rollbacks) == 1, rollbacks
    assert rollbacks[0]["actor"] == "autopilot"
    assert rollbacks[0]["reason"].startswith("autopilot: breach on 2 ticks in a row at 50%: primary glm-4.5-air")
    # the receiver: a warning at the first breached tick, then one critical notification naming the breach
    bodies = received(sb)
    assert [(b["event"], b["severity"]) for b in bodies] == [("breach", "warning"), ("rolled_back", "critical")]
    critical = bodies[1]
    assert critical["actor"] == "autopilot" and critical["stage"] == {"from": 50, "to": 0}
    assert any("primary glm-4.5-air: down, HTTP 500" in r for r in critical["reasons"]), critical
    # must show 8: no secret in any notification, tick line, state file or audit record
    secrets = [(sb.root / ".rollout" / name).read_text().strip() for name in ("master.key", "notify-secret")]
    seen = json.dumps([first, second, third, bodies]) + "".join(
        (sb.root / ".rollout" / name).read_text() for name in ("history.jsonl", "autopilot.json"))
    assert all(secret and secret not in seen for secret in secrets)


# --- must show 6: the receiver failing never delays or stops the rollback ---------------------------


def test_a_receiver_answering_500_neither_stops_the_rollback_and_the_failed_delivery_shows_in_status(sb):
    assert cli(sb, "sandbox", "notifications", "--answer", "500").exit_code == 0
    try:
        enter(sb, 50)
        load(sb, 60)
        fault(sb)
        assert tick(sb)["action"] == "breach"
        rolled = tick(sb)
        assert rolled["action"] == "rollback" and stage_of(sb) == 0, rolled
        assert rolled["notifications"][0]["deliveries"][0]["ok"] is False
        status = json.loads(cli(sb, "autopilot", "status", "--json").stdout)
        failed = {(f["event"], f["severity"]) for f in status["failed_deliveries"]}
        assert {("breach", "warning"), ("rolled_back", "critical")} <= failed, status["failed_deliveries"]
        assert "rolled_back (critical) to sandbox: " in cli(sb, "autopilot", "status").stdout
    finally:
        cli(sb, "sandbox", "notifications", "--answer", "ok")


# --- must show 3: one transient failed tick rolls nothing back --------------------------------------


def test_one_transient_failed_tick_warns_and_rolls_nothing_back(sb):
    enter(sb, 10)
    fault(sb)
    bad = tick(sb)
    assert (bad["action"], bad["consecutive_failures"]) == ("breach", 1), bad
    sb.admin.clear()  # the fault is gone before the next tick
    good = tick(sb)
    assert good["action"] in ("soak", "hold") and good["breach"] == "clear", good
    assert good["consecutive_failures"] == 0
    assert stage_of(sb) == 10 and records(sb, "rollback --level") == []
    assert [(b["event"], b["severity"]) for b in received(sb)] == [("breach", "warning")]
    status = json.loads(cli(sb, "autopilot", "status", "--json").stdout)
    assert status["consecutive_failures"] == 0 and status["last_tick"]["action"] == good["action"]


# --- must show 5 (and the foreground loop): one autopilot per workspace, SIGTERM ends it cleanly -------


def test_a_second_autopilot_exits_4_naming_the_first_which_stops_on_sigterm_with_exit_0(sb):
    assert cli(sb, "autopilot", "pause", "--reason", "test: no action wanted").exit_code == 0
    first = autopilot_process(sb, "--json")
    try:
        holder = wait_until(lambda: lease_of(sb), 30, "the first autopilot's lease")
        assert holder["pid"] == first.pid
        wait_until(lambda: json.loads(cli(sb, "autopilot", "status", "--json").stdout)["last_tick"], 30,
                   "the first autopilot's first tick")
        second = cli(sb, "autopilot", "--once")
        assert second.exit_code == 4, second.output
        assert f"another autopilot runs on this workspace: pid {first.pid} on " in second.stderr
        status = json.loads(cli(sb, "autopilot", "status", "--json").stdout)
        assert status["running"]["pid"] == first.pid and status["running"]["alive"] is True
    finally:
        first.send_signal(signal.SIGTERM)
        out, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    ticks = [json.loads(line) for line in out.splitlines()]
    assert ticks and all(t["action"] == "paused" for t in ticks)
    assert lease_of(sb) is None  # released on the way out


def test_a_dead_autopilots_lease_is_taken_over(sb):
    assert cli(sb, "autopilot", "pause", "--reason", "test: no action wanted").exit_code == 0
    first = autopilot_process(sb)
    try:
        wait_until(lambda: lease_of(sb), 30, "the first autopilot's lease")
    finally:
        first.kill()  # kill -9: its lease file stays, its flock goes
        first.communicate(timeout=30)
    assert lease_of(sb)["pid"] == first.pid
    again = cli(sb, "autopilot", "--once")
    assert again.exit_code == 0, again.output
    assert f"took over the lease of a dead autopilot: pid {first.pid}" in again.stderr


# --- must show 7: a person's rollback pauses the autopilot until resume -------------------------------


def test_a_manual_rollback_pauses_the_autopilot_until_resume(sb):
    enter(sb, 10)
    assert tick(sb)["action"] in ("soak", "hold")
    manual = cli(sb, "rollback", "--level", "1", "--yes", "--reason", "test: paged, rolling back by hand")
    assert stage_of(sb) == 0, manual.output
    paused = tick(sb)
    assert paused["action"] == "paused"
    assert "test: paged, rolling back by hand" in paused["reasons"][0]
    status = json.loads(cli(sb, "autopilot", "status", "--json").stdout)
    assert status["paused"]["reason"] == "test: paged, rolling back by hand"
    assert cli(sb, "autopilot", "resume").exit_code == 2  # --reason is required
    resumed = cli(sb, "autopilot", "resume", "--reason", "test: fixed", "--json")
    assert resumed.exit_code == 0 and json.loads(resumed.stdout)["record"]["command"] == "autopilot resume"
    after = tick(sb)  # at 0 %, resumed: the first step's gates judged, and advanced on GO
    assert after["action"] == "promote" and after["verdict"] == "GO", after
    assert stage_of(sb) == 10


# --- must show 4: kill -9 in each phase, then a restart -------------------------------------------------


@pytest.mark.parametrize("phase", ["before-rollback", "after-rollback"])
def test_kill_9_around_the_rollback_then_a_restart_rolls_back_exactly_once(sb, phase: str):
    enter(sb, 50)
    control = load(sb, 60)
    fault(sb)
    assert tick(sb)["action"] == "breach"
    killed = autopilot_process(sb, "--once", env={"ROLLOUT_AUTOPILOT_FAILPOINT": phase})
    killed.communicate(timeout=120)
    assert killed.returncode == -signal.SIGKILL
    state = json.loads((sb.root / ".rollout" / "autopilot.json").read_text())
    assert state["pending"]["action"] == "rollback"  # written ahead of the change
    assert stage_of(sb) == (50 if phase == "before-rollback" else 0)
    restarted = tick(sb)
    assert restarted["recovered"] and "killed during rollback 50% -> 0%" in restarted["recovered"]
    assert restarted["action"] == ("rollback" if phase == "before-rollback" else "paused"), restarted
    assert tick(sb)["action"] == "paused"
    assert stage_of(sb) == 0 and len(records(sb, "rollback --level")) == 1
    del control


# Soaks of seconds and a small request floor: a stage soaks while the test watches, on real load.
QUICK_PLAN = """kind: rollout
stages: [10, 50, 100]
soak: 10s
gates: {max_added_latency_p95_ms: 5000, min_requests: 1}
autopilot: {interval: 2s, failure_threshold: 2, approve_before: [100]}
"""


def quick_plan(box) -> None:  # type: ignore[no-untyped-def]
    (box.root / "playbooks" / "rollout.yaml").write_text(QUICK_PLAN)


def soaked(box) -> bool:  # type: ignore[no-untyped-def]
    return json.loads(cli(box, "autopilot", "status", "--json").stdout)["soak_left_s"] == 0


@pytest.mark.parametrize("phase", ["before-advance", "after-advance"])
def test_kill_9_around_an_advance_then_a_restart_advances_exactly_once_soak_clock_from_the_trail(sb, phase: str):
    quick_plan(sb)
    load(sb, 120, rps=20)
    first = tick(sb)  # 0 % -> 10 %, as `rollout advance` does it (its baseline sample opens the window)
    assert (first["action"], first["verdict"], stage_of(sb)) == ("promote", "GO", 10), first
    # ticks while it soaks, as a running autopilot's (their samples open the gateway's counter window),
    # stopping 8 s before its end: a tick on a loaded machine can take seconds to decide, and one that decided
    # after the soak's end would promote, leaving the failpoint's run nothing to do (seen with 3 s)
    wait_until(lambda: tick(sb)["soak_left_s"] <= 8, 60, "the 10 s soak at 10% nearly over")
    wait_until(lambda: soaked(sb), 20, "the 10 s soak at 10%")
    killed = autopilot_process(sb, "--once", env={"ROLLOUT_AUTOPILOT_FAILPOINT": phase})
    out, err = killed.communicate(timeout=120)
    assert killed.returncode == -signal.SIGKILL, (out, err)
    assert stage_of(sb) == (10 if phase == "before-advance" else 50)
    restarted = tick(sb)
    assert "killed during advance 10% -> 50%" in restarted["recovered"]
    if phase == "before-advance":  # nothing took effect: judged afresh, advanced now
        assert restarted["action"] == "promote" and restarted["advance"] is not None, restarted
    else:  # it took effect: the new soak runs from the audit record of entering 50 % (its post-check
        # may have outlasted the 10 s soak: then 100 % waits for its approval), nothing is advanced again
        entered = next(r for r in reversed(records(sb, "advance")) if r["decision"]["to"] == 50)
        since = time.time() - datetime.fromisoformat(entered["time"].replace("Z", "+00:00")).timestamp()
        assert restarted["advance"] is None and restarted["action"] in ("soak", "await-approval"), restarted
        assert restarted["soak_left_s"] == pytest.approx(max(0.0, 10 - since), abs=3)
    assert stage_of(sb) == 50
    to_50 = [r for r in records(sb, "advance") if r["actor"] == "autopilot" and r["decision"]["to"] == 50]
    assert len(to_50) == 1, to_50


# --- must show 1: healthy, unattended 0 -> 10 -> 50 -> 100, each after its soak, 100 after approval ------


def test_healthy_run_promotes_unattended_each_stage_after_its_soak_and_100_only_after_approve(sb):
    quick_plan(sb)
    control = load(sb, 240, rps=20)
    pilot = autopilot_process(sb, "--json")
    try:
        # a tick that chose to wait (status alone says "pending" from the soak, maybe before any tick has)
        wait_until(lambda: (json.loads(cli(sb, "autopilot", "status", "--json").stdout)["last_tick"] or {})
                   .get("action") == "await-approval", 180, "the autopilot at 50% waiting for approval")
        assert stage_of(sb) == 50
        status = json.loads(cli(sb, "autopilot", "status", "--json").stdout)
        assert status["pending_approval"] == {"to": 100} and status["soak_left_s"] == 0
        assert cli(sb, "approve").exit_code == 2  # --reason is required
        approved = cli(sb, "approve", "--reason", "test: dashboards look good", "--json")
        assert approved.exit_code == 0, approved.output
        assert json.loads(approved.stdout)["record"] | {"from": 50, "to": 100} == json.loads(approved.stdout)["record"]
        wait_until(lambda: stage_of(sb) == 100, 120, "the autopilot to advance to 100% once approved")
    finally:
        pilot.send_signal(signal.SIGTERM)
        out, err = pilot.communicate(timeout=120)
    assert pilot.returncode == 0, err
    ticks = [json.loads(line) for line in out.splitlines()]
    assert {"promote", "soak", "await-approval"} <= {t["action"] for t in ticks}
    assert all(t["breach"] in ("clear", None) for t in ticks), [t["reasons"] for t in ticks if t["breach"]]
    moves = [r for r in records(sb, "advance") if r["actor"] == "autopilot"]
    assert [(r["decision"]["from"], r["decision"]["to"]) for r in moves] == [(0, 10), (10, 50), (50, 100)]
    times = [datetime.fromisoformat(r["time"].replace("Z", "+00:00")) for r in moves]
    assert (times[1] - times[0]).total_seconds() >= 10 and (times[2] - times[1]).total_seconds() >= 10
    approval = next(r for r in AuditLog(sb.root / ".rollout").records() if r["command"] == "approve")
    assert approval["time"] <= moves[2]["time"] and approval["reason"] == "test: dashboards look good"
    assert any(r["path"] == "gateway" for r in control.requests(time.time() - 5))
    events = [(b["event"], b["stage"]["from"], b["stage"]["to"]) for b in received(sb)]
    assert events[:2] == [("autopilot.started", None, None), ("advanced", 0, 10)], events
    assert ("advanced", 10, 50) in events and ("approval_needed", 50, 100) in events
    assert events.index(("approval_needed", 50, 100)) < events.index(("advanced", 50, 100))
    assert events[-1][0] == "autopilot.stopped"


def test_a_retired_fallback_a_promotion_finds_is_notified_once(sb):
    quick_plan(sb)
    load(sb, 90, rps=20)
    assert cli(sb, "sandbox", "fault", "kimi-k2", "--retired").exit_code == 0
    first = tick(sb)  # 0 % -> 10 %: the catalog gate passes, warning of the retired fallback
    assert first["action"] == "promote" and stage_of(sb) == 10, first
    assert [n["kind"] for n in first["notifications"]] == ["catalog_warning", "advanced"], first
    wait_until(lambda: soaked(sb), 60, "the soak at 10%")
    second = tick(sb)  # 10 % -> 50 %, the same warning: not told again
    assert second["action"] == "promote" and stage_of(sb) == 50, second
    assert [n["kind"] for n in second["notifications"]] == ["advanced"], second
    warned = [b for b in received(sb) if b["event"] == "catalog_warning"]
    assert len(warned) == 1 and "retired fallback kimi-k2" in warned[0]["summary"], warned


def test_approval_is_asked_once_per_climb_and_again_after_a_new_climb(sb):
    quick_plan(sb)
    load(sb, 120, rps=20)
    asked = []
    for climb in (1, 2):  # the second entry into 50 %: as after a rollback and a new climb
        enter(sb, 50)
        wait_until(lambda: soaked(sb), 60, f"the soak at 50% (climb {climb})")
        ticks = [tick(sb), tick(sb)]
        assert [t["action"] for t in ticks] == ["await-approval"] * 2, ticks
        asked.append([n["kind"] for t in ticks for n in t["notifications"]])
    assert asked == [["approval_needed"], ["approval_needed"]]
    assert [b["event"] for b in received(sb)].count("approval_needed") == 2


def test_a_hold_repeating_every_tick_is_notified_once(sb):
    at_stage(sb, 10)  # set by hand: no audit record of entering 10 %, so its soak cannot be measured
    first, second = tick(sb), tick(sb)
    assert first["action"] == second["action"] == "hold", (first, second)
    assert "the soak at 10% cannot be measured" in first["reasons"][0]
    assert [n["kind"] for n in first["notifications"]] == ["hold"] and second["notifications"] == []
    assert [(b["event"], b["severity"]) for b in received(sb)] == [("hold", "warning")]
