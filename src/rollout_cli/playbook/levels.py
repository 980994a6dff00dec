"""`rollout rollback --level N`: levels 1..N of the rollback playbooks, in order.

Levels are cumulative so that traffic is off (level 1) before the router code,
the gateway container or the git history is touched.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

from rollout_cli.core.audit import AuditLog
from rollout_cli.core.playbooks import find_playbook
from rollout_cli.core.recovery import finish_interrupted_writes
from rollout_cli.core.result import Result
from rollout_cli.core.stage import read_stage
from rollout_cli.core.stagemetrics import write_stage_metrics
from rollout_cli.core.workspace import Workspace
from rollout_cli.errors import InputError, RolloutError
from rollout_cli.io.lock import WorkspaceLock
from rollout_cli.notify import Delivery, Event, delivery_messages, notify
from rollout_cli.playbook import engine
from rollout_cli.playbook.context import StepContext
from rollout_cli.playbook.model import Playbook, load_rollback_playbook
from rollout_cli.playbook.steps import STEP_TYPES

LEVELS = (1, 2, 3, 4)
INTERRUPTED = 130  # the exit code of a command ended by Ctrl-C, as the audit record notes it
Mode = Literal["run", "dry-run", "drill"]


def load_levels(ws: Workspace, level: int) -> list[Playbook]:
    """Playbooks for levels 1..level, every one validated before anything runs."""
    if level not in LEVELS:
        raise InputError(f"rollback level {level} does not exist; use --level 1, 2, 3 or 4")
    return [
        load_rollback_playbook(find_playbook(f"rollback-{n}.yaml", ws.playbooks), n, STEP_TYPES)
        for n in range(1, level + 1)
    ]


@dataclass(frozen=True)
class RollbackPlan:
    """Levels 1..level, validated: what `run_rollback` executes, previews or drills."""

    level: int
    playbooks: list[Playbook]

    @property
    def budget_s(self) -> float:
        return self.playbooks[-1].budget_s


def plan_rollback(ws: Workspace, level: int) -> RollbackPlan:
    """The one validation step: a bad level or playbook is an InputError before anything is asked or run."""
    return RollbackPlan(level, load_levels(ws, level))


@dataclass(frozen=True)
class RollbackPayload:
    """`rollout rollback`: every level's step reports, the time against the budget, what took effect."""

    level: int
    mode: Mode
    reason: str | None
    budget_s: float
    duration_s: float
    levels: list[engine.LevelReport]
    took_effect: list[str]
    notifications: list[Delivery] = field(default_factory=list)  # after the rollback, outside its duration

    @property
    def within_budget(self) -> bool:
        return self.duration_s <= self.budget_s

    def to_json(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "mode": self.mode,
            "reason": self.reason,
            "budget_s": self.budget_s,
            "duration_s": self.duration_s,
            "within_budget": self.within_budget,
            "levels": [r.to_json() for r in self.levels],
            "took_effect": self.took_effect,
            "notifications": [d.to_json() for d in self.notifications],
        }


def rollback(ws: Workspace, level: int, *, reason: str | None = None, mode: Mode = "run",
             announce_as: str | None = None) -> Result[RollbackPayload]:
    """Validate, then run (or preview, or drill) levels 1..level."""
    return run_rollback(ws, plan_rollback(ws, level), reason=reason, mode=mode, announce_as=announce_as)


def run_rollback(
    ws: Workspace, plan: RollbackPlan, *, reason: str | None = None, mode: Mode = "run",
    announce_as: str | None = None,
) -> Result[RollbackPayload]:
    """`announce_as`: the actor a run is announced as to the `notify:` sinks (`rolled_back`, critical), once
    the rollback is done and the lock let go; None announces nothing (a caller that notifies itself)."""
    level = plan.level
    command = f"rollback --level {level}"
    ctx = StepContext(ws)
    started = time.monotonic()
    messages: list[str] = []
    if mode == "dry-run":
        reports = engine.preview(plan.playbooks, ctx)
        code = engine.exit_code_of(reports)
    elif mode == "drill":
        reports = engine.drill(plan.playbooks, ctx)
        code = engine.exit_code_of(reports)
        AuditLog(ws.state_dir).append(command + " --drill", reason=reason, **_record(reports, code, started))
    else:
        reports = []
        with WorkspaceLock(ws.state_dir, command=f"rollout {command}"):
            finish_interrupted_writes(ws)  # a killed in-place write is finished (and said) before anything is read
            engine.read_inputs(plan.playbooks, ctx)  # a bad env or flags file: exit 2, nothing changed
            before = _percentage(ws) if announce_as is not None and ws.notify else None
            # Written ahead, before the first change: a kill part-way leaves a trace.
            op = AuditLog(ws.state_dir).begin(command, reason=reason)
            try:
                engine.execute(plan.playbooks, ctx, into=reports)
            except BaseException:  # Ctrl-C: record what ran, then let it end the command
                op.finish(**_record(reports, INTERRUPTED, started, result="interrupted"))
                raise
            code = engine.exit_code_of(reports)
            try:
                op.finish(**_record(reports, code, started))
            except RolloutError as exc:  # the changes are made: still report them, and say the record is missing
                messages.append(f"the audit record could not be written: {exc}")
                code = code or exc.exit_code
            messages += filter(None, [write_stage_metrics(ws)])
    duration_s = round(time.monotonic() - started, 4)  # the rollback's own time: notifying comes after it
    deliveries: list[Delivery] = []
    if mode == "run" and announce_as is not None and ws.notify:
        deliveries = notify(ws, _rolled_back(plan, reports, code, reason, announce_as, before, _percentage(ws)))
        messages.extend(delivery_messages(deliveries))
    payload = RollbackPayload(
        level=level,
        mode=mode,
        reason=reason,
        budget_s=plan.budget_s,
        duration_s=duration_s,
        levels=reports,
        took_effect=engine.took_effect(reports),
        notifications=deliveries,
    )
    return Result("rollback", payload, messages, exit_code=code)


def _rolled_back(plan: RollbackPlan, reports: list[engine.LevelReport], code: int, reason: str | None,
                 actor: str, before: int | None, after: int | None) -> Event:
    failed = [f"level {r.level} step {s.index + 1} ({s.type}) {s.status}: {s.detail}"
              for r in reports for s in r.steps if s.status not in ("ok", "unchanged", "skipped")]
    where = f": traffic {before}% -> {after}%" if before is not None and after is not None else ""
    summary = f"rolled back with level {plan.level}{where}" + (f" (exit {int(code)}: see the reasons)" if code else "")
    return Event("rolled_back", "critical", summary, actor, stage_from=before, stage_to=after,
                 reasons=tuple([f"reason: {reason}"] if reason else []) + tuple(failed))


def _percentage(ws: Workspace) -> int | None:
    """The stage for a notification; a file that cannot say it is not the notification's problem."""
    try:
        return read_stage(ws).percentage
    except RolloutError:
        return None


def _record(reports: list[engine.LevelReport], code: int, started: float, result: str | None = None) -> dict[str, Any]:
    """The audit record's fields of a run or a drill: how it ended, the changes, every step."""
    return {
        "result": result or ("ok" if code == 0 else "failed"),
        "exit_code": int(code),
        "duration_s": round(time.monotonic() - started, 4),
        "changes": [c for r in reports for s in r.steps for c in s.changes],
        "steps": [
            {"level": r.level, "index": s.index, "type": s.type, "status": s.status,
             "detail": s.detail, "duration_s": round(s.duration_s, 4)}
            for r in reports for s in r.steps
        ],
    }
