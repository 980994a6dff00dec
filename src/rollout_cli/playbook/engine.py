"""The generic engine: run, preview (`--dry-run`) or rehearse (`--drill`) playbooks.

Every playbook of the plan is validated before any step runs. Steps run in
order and are timed; a failing step stops what follows only when it says going
on would be unsafe (`stop_on_failure`), so a rollback goes as far as it safely
can and reports exactly which steps took effect.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from ..errors import ExitCode, RolloutError
from .context import StepContext
from .model import Playbook, Step


@dataclass
class StepReport:
    index: int
    type: str
    description: str
    status: str  # ok | unchanged | skipped | failed | would-change | pass | fail
    detail: str
    duration_s: float = 0.0
    diff: str | None = None
    changes: list[dict[str, Any]] = field(default_factory=list)
    exit_code: int = 0
    checks: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if v not in (None, [], {})}
        out["duration_s"] = round(self.duration_s, 4)
        out["exit_code"] = self.exit_code
        return out


@dataclass
class LevelReport:
    level: int
    name: str
    budget_s: float
    source: str
    steps: list[StepReport] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def within_budget(self) -> bool:
        return self.duration_s <= self.budget_s

    @property
    def failed(self) -> bool:
        return any(s.status in ("failed", "fail") for s in self.steps)

    def to_json(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "name": self.name,
            "budget_s": self.budget_s,
            "duration_s": round(self.duration_s, 4),
            "within_budget": self.within_budget,
            "source": self.source,
            "steps": [s.to_json() for s in self.steps],
        }


def _describe(step: Step, ctx: StepContext) -> str:
    try:
        return step.describe(ctx)
    except RolloutError as exc:
        return f"{step.type} ({exc})"


def execute(plan: list[Playbook], ctx: StepContext) -> list[LevelReport]:
    """Run every step of every playbook in order; never raises for a step's failure."""
    reports: list[LevelReport] = []
    halted: str | None = None
    for book in plan:
        level = LevelReport(book.level, book.name, book.budget_s, str(book.source))
        started = time.monotonic()
        for index, step in enumerate(book.steps, 1):
            description = _describe(step, ctx)
            if halted:
                level.steps.append(StepReport(index, step.type, description, "skipped", halted))
                continue
            t0 = time.monotonic()
            try:
                outcome = step.run(ctx)
            except RolloutError as exc:
                report = StepReport(
                    index, step.type, description, "failed", str(exc),
                    exit_code=int(exc.exit_code),
                )
                if step.stops_on_failure:
                    halted = f"not run: level {book.level} step {index} ({step.type}) failed"
            else:
                report = StepReport(
                    index, step.type, description, outcome.status, outcome.detail,
                    changes=outcome.changes,
                )
            report.duration_s = time.monotonic() - t0
            level.steps.append(report)
        level.duration_s = time.monotonic() - started
        reports.append(level)
    return reports


def preview(plan: list[Playbook], ctx: StepContext) -> list[LevelReport]:
    """What each step would do, reading the world and changing nothing."""
    reports = []
    for book in plan:
        level = LevelReport(book.level, book.name, book.budget_s, str(book.source))
        for index, step in enumerate(book.steps, 1):
            description = _describe(step, ctx)
            try:
                seen = step.preview(ctx)
            except RolloutError as exc:
                level.steps.append(
                    StepReport(index, step.type, description, "failed", str(exc), exit_code=int(exc.exit_code))
                )
                continue
            status = "would-change" if seen.changes else "unchanged"
            if step.type == "verify":
                status = "would-verify"
            level.steps.append(StepReport(index, step.type, description, status, seen.detail, diff=seen.diff))
        reports.append(level)
    return reports


def drill(plan: list[Playbook], ctx: StepContext) -> list[LevelReport]:
    """Check every precondition of every step, changing nothing."""
    reports = []
    for book in plan:
        level = LevelReport(book.level, book.name, book.budget_s, str(book.source))
        started = time.monotonic()
        for index, step in enumerate(book.steps, 1):
            t0 = time.monotonic()
            checks = step.preconditions(ctx)
            failed = [c for c in checks if not c.ok]
            level.steps.append(
                StepReport(
                    index, step.type, _describe(step, ctx),
                    "fail" if failed else "pass",
                    failed[0].detail if failed else f"{len(checks)} precondition(s) hold",
                    duration_s=time.monotonic() - t0,
                    exit_code=failed[0].exit_code if failed else 0,
                    checks=[c.__dict__ for c in checks],
                )
            )
        level.duration_s = time.monotonic() - started
        reports.append(level)
    return reports


def exit_code_of(reports: list[LevelReport]) -> ExitCode:
    """The first failure's exit code, or OK."""
    for level in reports:
        for step in level.steps:
            if step.status in ("failed", "fail"):
                return ExitCode(step.exit_code or ExitCode.FAILED)
    return ExitCode.OK
