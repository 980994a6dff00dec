"""The generic engine: run, preview (`--dry-run`) or rehearse (`--drill`) playbooks.

Every playbook of the plan is validated before any step runs. Steps run in
order and are timed; a failing step stops what follows only when it says going
on would be unsafe (`stop_on_failure`), so a rollback goes as far as it safely
can and reports exactly which steps took effect. An error nobody foresaw (a
bug) fails its step like any other failure: the steps before it still get
reported and recorded.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rollout_cli.errors import ExitCode, RolloutError
from rollout_cli.playbook.context import StepContext
from rollout_cli.playbook.model import Check, PartialFailure, Playbook, Step, unexpected


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
    partial: str | None = None  # a failed step's part that took effect before it failed

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
    except Exception as exc:
        return f"{step.type} ({unexpected(exc)})"


def _failed(index: int, step: Step, description: str, exc: Exception) -> StepReport:
    """The report of a step that raised: its one-line message, exit code, and what it changed first."""
    if isinstance(exc, PartialFailure):
        return StepReport(index, step.type, description, "failed", f"{exc} (before that: {exc.done})",
                          changes=exc.changes, exit_code=int(exc.exit_code), partial=exc.done)
    if isinstance(exc, RolloutError):
        return StepReport(index, step.type, description, "failed", str(exc), exit_code=int(exc.exit_code))
    return StepReport(index, step.type, description, "failed", unexpected(exc), exit_code=int(ExitCode.FAILED))


StepRunner = Callable[[Playbook, int, Step, str], StepReport]


def _walk(plan: list[Playbook], ctx: StepContext, one: StepRunner, *, halting: bool,
          into: list[LevelReport] | None = None) -> list[LevelReport]:
    """Every step of every playbook in order, each turned into a timed report by `one`.

    With `halting`, a failed step that stops on failure marks every later step
    (and level) "skipped" instead of running it. Reports go into `into` as they
    are made, so a caller interrupted half-way still knows what ran.
    """
    reports: list[LevelReport] = [] if into is None else into
    halted: str | None = None
    for book in plan:
        level = LevelReport(book.level, book.name, book.budget_s, str(book.source))
        reports.append(level)
        started = time.monotonic()
        ctx.ends = started + book.budget_s  # steps that wait (verify.traffic, app.reload) stop here
        for index, step in enumerate(book.steps, 1):
            description = _describe(step, ctx)
            if halted:
                level.steps.append(StepReport(index, step.type, description, "skipped", halted))
                continue
            t0 = time.monotonic()
            report = one(book, index, step, description)
            report.duration_s = time.monotonic() - t0
            level.steps.append(report)
            if halting and report.status == "failed" and step.stops_on_failure:
                halted = f"not run: level {book.level} step {index} ({step.type}) failed"
        level.duration_s = time.monotonic() - started
    return reports


def execute(plan: list[Playbook], ctx: StepContext, *, into: list[LevelReport] | None = None) -> list[LevelReport]:
    """Run every step of every playbook in order; never raises for a step's failure, even an unforeseen one."""

    def run(book: Playbook, index: int, step: Step, description: str) -> StepReport:
        try:
            outcome = step.run(ctx)
        except Exception as exc:  # a bug must not cost the report and the record of what took effect
            return _failed(index, step, description, exc)
        return StepReport(index, step.type, description, outcome.status, outcome.detail, changes=outcome.changes)

    return _walk(plan, ctx, run, halting=True, into=into)


def preview(plan: list[Playbook], ctx: StepContext) -> list[LevelReport]:
    """What each step would do, reading the world and changing nothing."""

    def look(book: Playbook, index: int, step: Step, description: str) -> StepReport:
        try:
            seen = step.preview(ctx)
        except Exception as exc:
            return _failed(index, step, description, exc)
        status = "would-verify" if step.type.startswith("verify") else "would-change" if seen.changes else "unchanged"
        return StepReport(index, step.type, description, status, seen.detail, diff=seen.diff)

    reports = _walk(plan, ctx, look, halting=False)
    for level in reports:  # a preview costs no time worth reporting against a budget
        level.duration_s = 0.0
        for report in level.steps:
            report.duration_s = 0.0
    return reports


def drill(plan: list[Playbook], ctx: StepContext) -> list[LevelReport]:
    """Check every precondition of every step, changing nothing."""

    def rehearse(book: Playbook, index: int, step: Step, description: str) -> StepReport:
        try:
            checks = step.preconditions(ctx)
        except RolloutError as exc:
            checks = [Check("preconditions", False, str(exc), int(exc.exit_code))]
        except Exception as exc:
            checks = [Check("preconditions", False, unexpected(exc), int(ExitCode.FAILED))]
        failed = [c for c in checks if not c.ok]
        return StepReport(
            index, step.type, description,
            "fail" if failed else "pass",
            failed[0].detail if failed else f"{len(checks)} precondition(s) hold",
            exit_code=failed[0].exit_code if failed else 0,
            checks=[c.__dict__ for c in checks],
        )

    return _walk(plan, ctx, rehearse, halting=False)


def took_effect(reports: list[LevelReport]) -> list[str]:
    """What changed, step by step: each `ok` step (not `verify`), and the part a failed step did first."""
    out = []
    for level in reports:
        for step in level.steps:
            if step.status == "ok" and not step.type.startswith("verify"):
                out.append(f"level {level.level} step {step.index}: {step.detail}")
            elif step.status == "failed" and step.partial:
                out.append(f"level {level.level} step {step.index} (then failed): {step.partial}")
    return out


def read_inputs(plan: list[Playbook], ctx: StepContext) -> None:
    """Read and parse every file the plan's steps edit, before the first step changes anything.

    A missing or malformed env or flags file is bad input: refused here, the
    world is as it was; found at step N, steps 1..N-1 would already be done.
    """
    for book in plan:
        for step in book.steps:
            step.read_inputs(ctx)


def exit_code_of(reports: list[LevelReport]) -> ExitCode:
    """The first failure's exit code, or OK."""
    for level in reports:
        for step in level.steps:
            if step.status in ("failed", "fail"):
                return ExitCode(step.exit_code or ExitCode.FAILED)
    return ExitCode.OK
