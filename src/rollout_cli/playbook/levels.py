"""`rollout rollback --level N`: levels 1..N of the rollback playbooks, in order.

Levels are cumulative so that traffic is off (level 1) before the router code,
the gateway container or the git history is touched.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

from rollout_cli.core.audit import AuditLog
from rollout_cli.core.playbooks import find_playbook
from rollout_cli.core.result import Result
from rollout_cli.core.workspace import Workspace
from rollout_cli.errors import InputError
from rollout_cli.io.lock import WorkspaceLock
from rollout_cli.playbook import engine
from rollout_cli.playbook.context import StepContext
from rollout_cli.playbook.model import Playbook, load_rollback_playbook
from rollout_cli.playbook.steps import STEP_TYPES

LEVELS = (1, 2, 3, 4)
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
        }


def rollback(ws: Workspace, level: int, *, reason: str | None = None, mode: Mode = "run") -> Result[RollbackPayload]:
    """Validate, then run (or preview, or drill) levels 1..level."""
    return run_rollback(ws, plan_rollback(ws, level), reason=reason, mode=mode)


def run_rollback(
    ws: Workspace, plan: RollbackPlan, *, reason: str | None = None, mode: Mode = "run"
) -> Result[RollbackPayload]:
    level = plan.level
    ctx = StepContext(ws)
    started = time.monotonic()
    if mode == "dry-run":
        reports = engine.preview(plan.playbooks, ctx)
    elif mode == "drill":
        reports = engine.drill(plan.playbooks, ctx)
    else:
        with WorkspaceLock(ws.state_dir, command=f"rollout rollback --level {level}"):
            reports = engine.execute(plan.playbooks, ctx)
    total = time.monotonic() - started
    code = engine.exit_code_of(reports)
    took_effect = [
        f"level {r.level} step {s.index}: {s.detail}"
        for r in reports for s in r.steps if s.status == "ok" and not s.type.startswith("verify")
    ]
    payload = RollbackPayload(
        level=level,
        mode=mode,
        reason=reason,
        budget_s=plan.budget_s,
        duration_s=round(total, 4),
        levels=reports,
        took_effect=took_effect,
    )
    if mode != "dry-run":
        changes = [c for r in reports for s in r.steps for c in s.changes]
        AuditLog(ws.state_dir).append(
            f"rollback --level {level}" + (" --drill" if mode == "drill" else ""),
            reason=reason,
            result="ok" if code == 0 else "failed",
            exit_code=int(code),
            duration_s=round(total, 4),
            changes=changes,
            steps=[
                {"level": r.level, "index": s.index, "type": s.type, "status": s.status,
                 "detail": s.detail, "duration_s": round(s.duration_s, 4)}
                for r in reports for s in r.steps
            ],
        )
    return Result("rollback", payload, exit_code=code)
