"""One tick of `rollout autopilot`: read the world, decide (autopilot/decide.py), act at most once, record.

The breach checks are the judge's own gates (rollout/judge.py) on a snapshot
gathered by rollout/snapshot.py over the last interval, with the primary probed
alone; promotion is `rollout advance`'s evaluation and write (rollout/advance.py),
and a breach runs the rollback playbook (playbook/levels.py), both recorded in
the audit trail with the actor `autopilot`. What the tick is about to do is
written ahead into its state file, so a tick killed half-way is safe to run again.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from rollout_cli.autopilot.decide import (
    AWAIT_APPROVAL,
    BREACH,
    HOLD,
    PROMOTE,
    ROLLBACK,
    BreachCheck,
    TickFacts,
    breach_check,
    decide,
)
from rollout_cli.autopilot.state import PilotState
from rollout_cli.autopilot.trail import approval, pause_text, paused_by
from rollout_cli.core.audit import AuditLog, StageChange, unfinished_operation, utc_now
from rollout_cli.core.playbooks import format_duration
from rollout_cli.core.result import Result
from rollout_cli.core.stage import Stage, read_stage
from rollout_cli.core.workspace import Workspace
from rollout_cli.errors import ExitCode, RolloutError
from rollout_cli.notify import Delivery, Event, notify
from rollout_cli.playbook.levels import rollback
from rollout_cli.rollout.advance import advance
from rollout_cli.rollout.evaluate import evaluate
from rollout_cli.rollout.gates import FAIL, INCONCLUSIVE, Verdict
from rollout_cli.rollout.judge import Decision, judge
from rollout_cli.rollout.plan import StagePlan
from rollout_cli.rollout.samples import SampleStore
from rollout_cli.rollout.snapshot import gather, scrape_metrics, stage_started

ACTOR = "autopilot"
# Crash-testing hook (tests/test_autopilot.py): the process kills itself with SIGKILL at the named
# point, exactly where a kill -9 would leave the state file and the audit trail.
FAILPOINT_ENV = "ROLLOUT_AUTOPILOT_FAILPOINT"


def _failpoint(name: str) -> None:
    if os.environ.get(FAILPOINT_ENV) == name:
        os.kill(os.getpid(), signal.SIGKILL)


@contextmanager
def acting_as(name: str) -> Iterator[None]:
    """Every audit record and lock holder written meanwhile names `name` as the actor (io/lock.py's actor())."""
    before = os.environ.get("ROLLOUT_ACTOR")
    os.environ["ROLLOUT_ACTOR"] = name
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("ROLLOUT_ACTOR", None)
        else:
            os.environ["ROLLOUT_ACTOR"] = before


@dataclass
class TickPayload:
    """`rollout autopilot --json`: one line per tick (schemas/autopilot.schema.json)."""

    time: str
    stage: int
    next: int | None
    action: str
    reasons: list[str]
    breach: str | None  # clear | breach | shared | None (not judged: 0%, paused)
    consecutive_failures: int
    failure_threshold: int
    soak_left_s: float | None
    verdict: str | None = None  # the promotion verdict, when the full gates were judged
    approval: dict[str, Any] | None = None  # to, given, by, reason, time
    advance: dict[str, Any] | None = None
    rollback: dict[str, Any] | None = None
    recovered: str | None = None  # what a killed run was doing, and what came of it
    unfinished: dict[str, Any] | None = None  # an operation started and never finished (as `rollout status`)
    notifications: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def run_tick(ws: Workspace, plan: StagePlan) -> Result[TickPayload]:
    """One tick, acting as `autopilot`. Assumes the caller holds the lease."""
    with acting_as(ACTOR):
        return _tick(ws, plan)


def _tick(ws: Workspace, plan: StagePlan) -> Result[TickPayload]:
    settings = plan.autopilot
    state = PilotState.load(ws.state_dir)
    log = AuditLog(ws.state_dir)
    now = time.time()
    stage = read_stage(ws)
    recovered = _settle_pending(state, stage) if state.pending else None
    records = log.records()
    pause = paused_by(records)
    pct, nxt = stage.percentage, plan.next_stage(stage.percentage)
    check: BreachCheck | None = None
    gather_error: str | None = None
    if pause is None and pct > 0:
        try:
            check = breach_check(judge_breach(ws, plan, stage, _span(state, settings.interval_s, now)))
        except RolloutError as exc:  # evidence that cannot be gathered (quota refused, a bad file) holds
            gather_error = f"the breach checks could not run: {exc}"
    entered = stage_started(ws, pct) if pct else None
    soak_left = 0.0 if pct == 0 else (
        None if entered is None else max(0.0, plan.soak_for(pct) - (now - entered.timestamp)))
    needs_approval = nxt is not None and nxt in settings.approve_before
    given = approval(records, nxt, entered.timestamp if entered else 0.0) if needs_approval and nxt else None
    facts = TickFacts(pct, nxt, check, state.consecutive_failures, settings.failure_threshold, soak_left,
                      needs_approval, given is not None, pause_text(pause) if pause else None)
    decision = decide(facts)
    if gather_error and decision.action not in (ROLLBACK, BREACH):
        decision = replace(decision, action=HOLD, reasons=(gather_error,))
    payload = TickPayload(
        utc_now(), pct, nxt, decision.action, list(decision.reasons), check.status if check else None,
        decision.consecutive, settings.failure_threshold, soak_left,
        approval={"to": nxt, "given": given is not None, "by": given.get("actor") if given else None,
                  "reason": given.get("reason") if given else None, "time": given.get("time") if given else None}
        if needs_approval else None,
        recovered=recovered,
        unfinished=_brief(unfinished_operation(log)),
    )
    state.consecutive_failures = decision.consecutive
    state.breach = list(decision.reasons) if decision.action in (BREACH, ROLLBACK) else []
    code = ExitCode.OK
    hold_key: str | None = None
    if decision.action == ROLLBACK:
        code = _roll_back(ws, plan, state, payload)
    elif decision.action == BREACH and decision.consecutive == 1:
        _send(ws, payload, Event("breach", "warning", f"breach at {pct}%: {decision.reasons[0]} "
                                 f"(tick 1 of {settings.failure_threshold} before a rollback)",
                                 ACTOR, stage_from=pct, reasons=decision.reasons))
    elif decision.action == PROMOTE:
        code, hold_key = _promote(ws, plan, stage, state, payload)
    elif decision.action == AWAIT_APPROVAL and state.approval_asked != (asked := _approval_key(nxt, pct, entered)):
        state.approval_asked = asked
        _send(ws, payload, Event("approval_needed", "warning", f"the soak at {pct}% has elapsed; advancing to "
                                 f"{nxt}% waits for `rollout approve`", ACTOR, stage_from=pct, stage_to=nxt))
    elif decision.action == HOLD:  # the same hold is the same gates, whatever their counts say this tick
        hold_key = f"shared: {', '.join(check.gates)}" if check and check.status == "shared" else decision.reasons[0]
    if payload.action == HOLD:
        if hold_key != state.last_hold:  # a hold repeating every tick is sent once, until its reason changes
            _send(ws, payload, Event("hold", "warning", f"holding at {pct}%: {payload.reasons[0]}", ACTOR,
                                     verdict=payload.verdict or "HOLD", stage_from=pct, stage_to=nxt,
                                     reasons=tuple(payload.reasons)))
        state.last_hold = hold_key
    else:
        state.last_hold = None
    state.last_tick = {"time": payload.time, "ts": now, "stage": pct, "action": payload.action,
                       "reasons": payload.reasons}
    state.save(ws.state_dir)
    return Result("autopilot", payload, [], code)


def judge_breach(ws: Workspace, plan: StagePlan, stage: Stage, span_s: float) -> Decision:
    """The stage's gates judged over the last `span_s` seconds, the primary probed alone: the breach checks.

    The same gathering and the same judge as `advance` and `report`; only the window
    (the last interval, not the soak) and the checks left out (smoke, cost, catalog,
    custom gates: they only block promotion) differ.
    """
    window_plan = replace(plan, soak_s=span_s, soak_overrides={}, custom_gates=(),
                          gates=replace(plan.gates, smoke=False, cost_free_only=False, catalog=False))
    snap, _ = gather(ws, window_plan, stage, "autopilot", primary_only=True)
    if ws.metrics.source != "prometheus":  # the gateway's counters: the next tick's window starts at this sample
        scrape, error = scrape_metrics(ws)
        SampleStore(ws.state_dir).append({"stage": stage.percentage, "source": "autopilot", "metrics": scrape,
                                          "metrics_error": error})
    return judge(snap, window_plan)


def _span(state: PilotState, interval: float, now: float) -> float:
    """Since the last tick (the interval just past); after a long stop, one interval."""
    last = (state.last_tick or {}).get("ts")
    if isinstance(last, (int, float)) and 0 < now - last <= 3 * interval:
        return max(1.0, now - last)
    return interval


def _roll_back(ws: Workspace, plan: StagePlan, state: PilotState, payload: TickPayload) -> ExitCode:
    level = plan.autopilot.on_breach
    reason = (f"autopilot: breach on {payload.consecutive_failures} ticks in a row at {payload.stage}%: "
              + "; ".join(payload.reasons))
    state.pending = {"action": "rollback", "level": level, "from": payload.stage, "to": 0, "reason": reason,
                     "time": payload.time}
    state.save(ws.state_dir)  # written ahead: a restart knows a rollback was under way
    _failpoint("before-rollback")
    try:  # rollback() announces `rolled_back` (critical, its reason naming the breach) once it is done
        done = rollback(ws, level, reason=reason, announce_as=ACTOR)
    except RolloutError as exc:  # never started (the lock held by a person's command): the next breach retries
        state.pending = None
        payload.reasons.append(f"the rollback could not run: {exc}")
        return exc.exit_code
    _failpoint("after-rollback")
    state.pending, state.consecutive_failures, state.breach = None, 0, []
    payload.rollback = done.payload.to_json()
    _sent(payload, "rolled_back", "critical", done.payload.notifications)
    return done.exit_code


def _promote(ws: Workspace, plan: StagePlan, stage: Stage, state: PilotState,
             payload: TickPayload) -> tuple[ExitCode, str | None]:
    """Judge every advance gate over the soak; on GO advance exactly as `rollout advance` does."""
    try:
        decision = evaluate(ws, plan, stage, command="advance")
    except RolloutError as exc:
        payload.action, payload.reasons = HOLD, [f"the advance gates could not be judged: {exc}"]
        return ExitCode.OK, payload.reasons[0]
    payload.verdict = decision.verdict.value
    _warn_of_catalog(ws, state, payload, decision, stage.percentage)
    if decision.verdict is not Verdict.GO:
        payload.action, payload.reasons = HOLD, decision.reasons
        blocking = sorted(f"{g.name}: {g.status}" for g in decision.gates if g.status in (FAIL, INCONCLUSIVE))
        return ExitCode.OK, f"{decision.verdict.value}: " + ", ".join(blocking)
    soak = format_duration(plan.soak_for(stage.percentage)) if stage.percentage else "no soak"
    reason = f"autopilot: soak at {stage.percentage}% elapsed ({soak}), every gate GO"
    state.pending = {"action": "advance", "from": decision.current, "to": decision.next, "reason": reason,
                     "time": payload.time}
    state.save(ws.state_dir)  # written ahead
    _failpoint("before-advance")
    try:  # advance() announces `advanced` (or its post-check's rollback) once it is done
        done = advance(ws, reason=reason, evaluated=decision, announce_as=ACTOR)
    except RolloutError as exc:  # the stage moved meanwhile (a person), the lock held: judged again next tick
        state.pending = None
        payload.action, payload.reasons = HOLD, [f"the advance did not run: {exc}"]
        return ExitCode.OK, payload.reasons[0]
    _failpoint("after-advance")
    state.pending = None
    payload.advance = done.payload.to_json()
    if done.payload.rollback is not None:
        _sent(payload, "rolled_back", "critical", done.payload.rollback.notifications)
    elif done.payload.notifications is not None:
        _sent(payload, "advanced", "info", done.payload.notifications)
    return done.exit_code, None


def _approval_key(to: int | None, pct: int, entered: StageChange | None) -> str:
    """Which approval was asked for: once per climb, so a rollback and a new climb to this stage asks again."""
    return f"{to}% after entering {pct}% at {int(entered.timestamp) if entered else 0}"  # the record's whole second


def _warn_of_catalog(ws: Workspace, state: PilotState, payload: TickPayload, decision: Decision, pct: int) -> None:
    """A retired fallback the catalog gate passed with a warning: told once, until the warnings change."""
    warnings = [w for g in decision.gates if g.name == "catalog" for w in g.warnings]
    key = "; ".join(warnings) or None
    if key and key != state.catalog_warned:
        _send(ws, payload, Event("catalog_warning", "warning", f"catalog at {pct}%: {warnings[0]}", ACTOR,
                                 stage_from=pct, reasons=tuple(warnings)))
    state.catalog_warned = key


def _settle_pending(state: PilotState, stage: Stage) -> str:
    """What a killed run was doing, and what came of it; the audit trail decides the rest (nothing is redone)."""
    pending = state.pending or {}
    state.pending = None
    moved = stage.percentage != pending.get("from")
    outcome = (f"it took effect (now {stage.percentage}%, as the audit trail records)" if moved
               else f"nothing took effect (still {stage.percentage}%): judged afresh")
    return (f"a previous run was killed during {pending.get('action')} {pending.get('from')}% -> "
            f"{pending.get('to')}% at {pending.get('time')}: {outcome}")


def _brief(record: dict[str, Any] | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {k: record.get(k) for k in ("time", "actor", "command", "reason", "pid")}


def _send(ws: Workspace, payload: TickPayload, event: Event) -> None:
    _sent(payload, event.kind, event.severity, notify(ws, event))


def _sent(payload: TickPayload, kind: str, severity: str, deliveries: list[Delivery]) -> None:
    payload.notifications.append({"kind": kind, "severity": severity, "deliveries": [d.to_json() for d in deliveries]})
