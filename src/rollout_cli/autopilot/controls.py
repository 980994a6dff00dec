"""The operator's controls: `rollout autopilot status|pause|resume` and `rollout approve`.

Pauses, resumes and approvals are audit records (who, when, why): the autopilot
reads them back on every tick, so they hold across its restarts.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from rollout_cli.autopilot.decide import AWAIT_APPROVAL, PAUSED, TickFacts, decide
from rollout_cli.autopilot.lease import read_lease
from rollout_cli.autopilot.state import PilotState
from rollout_cli.autopilot.trail import APPROVE, PAUSE, RESUME, approval, pause_text, paused_by
from rollout_cli.core.audit import AuditLog, unfinished_operation
from rollout_cli.core.result import Result
from rollout_cli.core.stage import read_stage
from rollout_cli.core.workspace import Workspace
from rollout_cli.errors import InputError
from rollout_cli.io.lock import actor
from rollout_cli.notify import Event, failed_deliveries, notify
from rollout_cli.rollout.plan import load_plan
from rollout_cli.rollout.snapshot import stage_started

NEXT_ACTION = {
    "paused": "nothing until `rollout autopilot resume --reason TEXT`",
    "soak": "soak, then judge every advance gate and advance on GO",
    "await-approval": "wait for `rollout approve --reason TEXT`, then judge the advance gates",
    "promote": "judge every advance gate and advance on GO",
    "complete": "keep running the breach checks at 100% (nothing left to promote)",
    "hold": "hold: the soak cannot be measured (see `rollout status`)",
}


@dataclass(frozen=True)
class AutopilotStatus:
    """`rollout autopilot status`."""

    stage: int
    next: int | None
    running: dict[str, Any] | None  # the lease holder: pid, host, started, heartbeat, alive
    paused: dict[str, Any] | None  # time, actor, command, reason of the record that paused it
    soak_left_s: float | None
    last_tick: dict[str, Any] | None
    consecutive_failures: int
    failure_threshold: int
    interval_s: float
    next_action: str
    pending_approval: dict[str, Any] | None  # to: the stage waiting for `rollout approve`
    pending: dict[str, Any] | None  # an action a killed run left under way
    unfinished: dict[str, Any] | None
    failed_deliveries: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


def status(ws: Workspace) -> Result[AutopilotStatus]:
    plan = load_plan(ws.playbooks)
    settings = plan.autopilot
    state = PilotState.load(ws.state_dir)
    log = AuditLog(ws.state_dir)
    records = log.records()
    stage = read_stage(ws)
    pct, nxt = stage.percentage, plan.next_stage(stage.percentage)
    entered = stage_started(ws, pct) if pct else None
    now = time.time()
    soak_left = 0.0 if pct == 0 else (
        None if entered is None else max(0.0, plan.soak_for(pct) - (now - entered.timestamp)))
    pause = paused_by(records)
    needs = nxt is not None and nxt in settings.approve_before
    given = approval(records, nxt, entered.timestamp if entered else 0.0) if needs and nxt is not None else None
    # What the next tick does if its breach checks are clear: the same decision, without the evidence.
    planned = decide(TickFacts(pct, nxt, None, state.consecutive_failures, settings.failure_threshold, soak_left,
                               needs, given is not None, pause_text(pause) if pause else None))
    holder = read_lease(ws.state_dir)
    running = {**holder.to_json(), "alive": holder.alive} if holder else None
    payload = AutopilotStatus(
        pct, nxt, running,
        {k: pause.get(k) for k in ("time", "actor", "command", "reason")} if pause else None,
        soak_left, state.last_tick, state.consecutive_failures, settings.failure_threshold, settings.interval_s,
        NEXT_ACTION.get(planned.action, planned.action),
        {"to": nxt} if planned.action == AWAIT_APPROVAL else None,
        state.pending, unfinished_operation(log), failed_deliveries(ws),
    )
    messages = []
    if running is None or not running["alive"]:
        messages.append("no autopilot runs on this workspace (start one: `rollout autopilot`)")
    if planned.action == PAUSED:
        messages.append(f"paused: {pause_text(pause or {})}")
    return Result("autopilot status", payload, messages)


@dataclass(frozen=True)
class ControlPayload:
    """`rollout autopilot pause|resume` and `rollout approve`: the audit record written."""

    record: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"record": self.record}


def _need_reason(reason: str | None, command: str) -> str:
    if not reason or not reason.strip():
        raise InputError(f"{command} needs --reason TEXT: why is recorded in the audit trail")
    return reason


def pause(ws: Workspace, reason: str | None) -> Result[ControlPayload]:
    why = _need_reason(reason, "rollout autopilot pause")
    read_stage(ws)  # a workspace whose files cannot be read: exit 2 before anything is recorded
    record = AuditLog(ws.state_dir).append(PAUSE, reason=why, result="ok")
    notify(ws, Event("paused", "warning", f"autopilot paused: {why}", actor()))
    return Result("autopilot pause", ControlPayload(record),
                  ["the autopilot is paused: breach checks, promotions and rollbacks wait for "
                   "`rollout autopilot resume --reason TEXT`"])


def resume(ws: Workspace, reason: str | None) -> Result[ControlPayload]:
    why = _need_reason(reason, "rollout autopilot resume")
    read_stage(ws)
    was = paused_by(AuditLog(ws.state_dir).records())
    record = AuditLog(ws.state_dir).append(RESUME, reason=why, result="ok")
    notify(ws, Event("resumed", "info", f"autopilot resumed: {why}", actor()))
    note = "the autopilot acts again from its next tick" if was else "the autopilot was not paused; recorded anyway"
    return Result("autopilot resume", ControlPayload(record), [note])


def approve(ws: Workspace, reason: str | None) -> Result[ControlPayload]:
    """Record the approval of advancing from the current stage to the next (`autopilot.approve_before`)."""
    why = _need_reason(reason, "rollout approve")
    plan = load_plan(ws.playbooks)
    pct = read_stage(ws).percentage
    nxt = plan.next_stage(pct)
    if nxt is None:
        raise InputError(f"nothing to approve: the rollout is complete at {pct}%")
    record = AuditLog(ws.state_dir).append(APPROVE, reason=why, result="ok", **{"from": pct, "to": nxt})
    notify(ws, Event("approved", "info", f"advancing {pct}% -> {nxt}% approved: {why}", actor(),
                     stage_from=pct, stage_to=nxt))
    extra = "" if nxt in plan.autopilot.approve_before else f" ({nxt}% is not in autopilot.approve_before: not needed)"
    return Result("approve", ControlPayload(record),
                  [f"approved advancing {pct}% -> {nxt}% once its soak has elapsed and every gate is GO{extra}"])
