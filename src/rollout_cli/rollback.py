"""`rollout rollback --level N`: levels 1..N of the rollback playbooks, in order.

Levels are cumulative so that traffic is off (level 1) before the router code,
the gateway container or the git history is touched.
"""

from __future__ import annotations

import time
from typing import Literal

from .audit import AuditLog
from .errors import InputError
from .lock import WorkspaceLock
from .playbook import engine
from .playbook.context import StepContext
from .playbook.model import Playbook, find_playbook, load_rollback_playbook
from .playbook.steps import STEP_TYPES
from .result import Result
from .workspace import Workspace

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


def rollback(ws: Workspace, level: int, *, reason: str | None = None, mode: Mode = "run") -> Result:
    plan = load_levels(ws, level)
    ctx = StepContext(ws)
    started = time.monotonic()
    if mode == "dry-run":
        reports = engine.preview(plan, ctx)
    elif mode == "drill":
        reports = engine.drill(plan, ctx)
    else:
        with WorkspaceLock(ws.state_dir, command=f"rollout rollback --level {level}"):
            reports = engine.execute(plan, ctx)
    total = time.monotonic() - started
    code = engine.exit_code_of(reports)
    took_effect = [
        f"level {r.level} step {s.index}: {s.detail}"
        for r in reports for s in r.steps if s.status == "ok" and s.type != "verify"
    ]
    data = {
        "level": level,
        "mode": mode,
        "reason": reason,
        "budget_s": plan[-1].budget_s,
        "duration_s": round(total, 4),
        "within_budget": total <= plan[-1].budget_s,
        "levels": [r.to_json() for r in reports],
        "took_effect": took_effect,
    }
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
    return Result("rollback", data, exit_code=code)
