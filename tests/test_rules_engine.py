"""The playbook engine's rules (playbook/engine.py): order, halting, previews, drills, what took effect, exit codes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, ClassVar

import pytest

from rollout_cli.errors import ExitCode, GitError, InputError, RolloutError
from rollout_cli.playbook import engine
from rollout_cli.playbook.engine import (
    LevelReport,
    StepReport,
    drill,
    execute,
    exit_code_of,
    preview,
    read_inputs,
    took_effect,
)
from rollout_cli.playbook.model import Check, Outcome, PartialFailure, Playbook, Preview, Step

CTX: Any = SimpleNamespace()  # what the engine must hand every step (it sets the level's deadline, `ends`, on it)


@dataclass
class Fake(Step):
    """A step that does what it is told: `outcome` "ok"/"unchanged", or raises `error`."""

    type: ClassVar[str] = "fake.step"
    label: str = "fake"
    outcome: str = "ok"
    error: Exception | None = None
    changes: bool = True
    checks: list[Check] = field(default_factory=list)
    ran: list[str] = field(default_factory=list)

    def describe(self, ctx: Any) -> str:
        assert ctx is CTX
        if isinstance(self.error, KeyError) and self.outcome == "describe-fails":
            raise self.error
        if isinstance(self.error, InputError) and self.outcome == "describe-fails":
            raise self.error
        return f"do {self.label}"

    def preview(self, ctx: Any) -> Preview:
        assert ctx is CTX
        if self.error is not None:
            raise self.error
        return Preview(f"would {self.label}", diff=f"-{self.label}", changes=self.changes)

    def preconditions(self, ctx: Any) -> list[Check]:
        assert ctx is CTX
        if self.error is not None:
            raise self.error
        return self.checks

    def read_inputs(self, ctx: Any) -> None:
        assert ctx is CTX
        self.ran.append(f"read {self.label}")
        if isinstance(self.error, InputError):
            raise self.error

    def run(self, ctx: Any) -> Outcome:
        assert ctx is CTX
        self.ran.append(self.label)
        if self.error is not None:
            raise self.error
        return Outcome(self.outcome, f"{self.label} done", [{"file": self.label}])


@dataclass
class Verify(Fake):
    type: ClassVar[str] = "verify.fake"


def book(level: int, *steps: Step, budget: float = 30.0) -> Playbook:
    return Playbook(f"level {level}", level, budget, list(steps), Path(f"/p/{level}.yaml"))


def statuses(reports: list[LevelReport]) -> list[list[str]]:
    return [[s.status for s in level.steps] for level in reports]


def test_steps_run_in_order_across_levels_and_are_reported():
    ran: list[str] = []
    plan = [book(1, Fake(label="a", ran=ran), Fake(label="b", outcome="unchanged", ran=ran)), book(2, Fake(label="c", ran=ran))]
    reports = execute(plan, CTX)
    assert ran == ["a", "b", "c"]
    assert statuses(reports) == [["ok", "unchanged"], ["ok"]]
    first = reports[0].steps[0]
    assert (first.index, first.type, first.description, first.detail, first.changes) == (
        1, "fake.step", "do a", "a done", [{"file": "a"}])
    assert [s.index for s in reports[0].steps] == [1, 2]
    assert (reports[1].level, reports[1].name, reports[1].budget_s, reports[1].source) == (2, "level 2", 30.0, "/p/2.yaml")
    assert exit_code_of(reports) == ExitCode.OK
    assert took_effect(reports) == ["level 1 step 1: a done", "level 2 step 1: c done"]


def test_a_failure_that_stops_skips_every_later_step_and_level():
    ran: list[str] = []
    plan = [book(1, Fake(label="a", ran=ran), Fake(label="b", error=GitError("git broke"), stop_on_failure=True, ran=ran),
                 Fake(label="c", ran=ran), Fake(label="c2", ran=ran)),
            book(2, Fake(label="d", ran=ran), Fake(label="e", ran=ran))]
    reports = execute(plan, CTX)
    assert ran == ["a", "b"]
    assert statuses(reports) == [["ok", "failed", "skipped", "skipped"], ["skipped", "skipped"]]
    assert took_effect(reports) == ["level 1 step 1: a done"]
    assert reports[0].steps[2].detail == "not run: level 1 step 2 (fake.step) failed"
    assert reports[1].steps[0].detail == "not run: level 1 step 2 (fake.step) failed"
    assert reports[0].steps[2].description == "do c"
    failed = reports[0].steps[1]
    assert (failed.index, failed.type, failed.description, failed.detail, failed.exit_code) == (
        2, "fake.step", "do b", "git broke", int(ExitCode.UNAVAILABLE))
    assert exit_code_of(reports) == ExitCode.UNAVAILABLE
    assert reports[0].failed and not reports[1].failed


def test_a_failure_that_does_not_stop_lets_the_rest_run():
    ran: list[str] = []
    plan = [book(1, Fake(label="a", error=RolloutError("no"), ran=ran), Fake(label="b", ran=ran))]
    reports = execute(plan, CTX)
    assert ran == ["a", "b"] and statuses(reports) == [["failed", "ok"]]
    assert exit_code_of(reports) == ExitCode.FAILED


def test_an_unforeseen_error_fails_its_step_without_its_text():
    plan = [book(1, Fake(label="a", error=KeyError("secret-key-text"), stop_on_failure=True), Fake(label="b"))]
    reports = execute(plan, CTX)
    failed = reports[0].steps[0]
    assert (failed.index, failed.type, failed.description) == (1, "fake.step", "do a")
    assert failed.detail == "unexpected error (KeyError): a bug in rollout; please report it"
    assert failed.exit_code == int(ExitCode.FAILED) and "secret" not in failed.detail
    assert statuses(reports) == [["failed", "skipped"]]


def test_a_partial_failure_reports_what_took_effect_first():
    partial = PartialFailure(GitError("conflict"), [{"commit": "abc"}], "reverted abc")
    reports = execute([book(4, Fake(label="a"), Fake(label="revert", error=partial))], CTX)
    failed = reports[0].steps[1]
    assert (failed.type, failed.description) == ("fake.step", "do revert")
    assert (failed.detail, failed.partial, failed.changes) == (
        "conflict (before that: reverted abc)", "reverted abc", [{"commit": "abc"}])
    assert failed.exit_code == int(ExitCode.UNAVAILABLE)
    assert took_effect(reports) == ["level 4 step 1: a done", "level 4 step 2 (then failed): reverted abc"]
    assert failed.to_json()["partial"] == "reverted abc"


def test_verify_steps_and_unchanged_ones_took_no_effect():
    reports = execute([book(1, Fake(label="a", outcome="unchanged"), Verify(label="v"), Fake(label="b"))], CTX)
    assert took_effect(reports) == ["level 1 step 3: b done"]


def test_reports_go_into_the_callers_list_as_they_are_made():
    into: list[LevelReport] = []
    assert execute([book(1, Fake())], CTX, into=into) is into and len(into) == 1


def test_a_description_that_raises_is_reported_not_raised():
    plan = [book(1, Fake(label="a", outcome="describe-fails", error=InputError("bad file")))]
    assert preview(plan, CTX)[0].steps[0].description == "fake.step (bad file)"
    plan = [book(1, Fake(label="a", outcome="describe-fails", error=KeyError("x")))]
    assert preview(plan, CTX)[0].steps[0].description == (
        "fake.step (unexpected error (KeyError): a bug in rollout; please report it)")


def test_preview_says_what_would_change_and_costs_no_time():
    plan = [book(1, Fake(label="a"), Fake(label="b", changes=False), Verify(label="v"),
                 Fake(label="c", error=GitError("no repo"), stop_on_failure=True), Fake(label="d"))]
    (level,) = preview(plan, CTX)
    assert [s.status for s in level.steps] == ["would-change", "unchanged", "would-verify", "failed", "would-change"]
    assert (level.steps[0].detail, level.steps[0].diff) == ("would a", "-a")
    assert level.duration_s == 0.0 and all(s.duration_s == 0.0 for s in level.steps)
    assert level.steps[3].exit_code == int(ExitCode.UNAVAILABLE)
    assert [s.description for s in level.steps] == ["do a", "do b", "do v", "do c", "do d"]


def test_drill_checks_every_precondition_and_reports_the_first_failure():
    checks = [Check("git", True, "clean"), Check("lock", False, "held by pid 7", 4), Check("x", False, "later", 2)]
    plan = [book(1, Fake(label="a", checks=[Check("a", True, "ok")]), Fake(label="b", checks=checks),
                 Fake(label="c", error=InputError("bad")), Fake(label="d", error=ValueError("boom")),
                 Fake(label="e", stop_on_failure=True, checks=[Check("e", False, "no", 1)]), Fake(label="f"))]
    (level,) = drill(plan, CTX)
    assert [s.status for s in level.steps] == ["pass", "fail", "fail", "fail", "fail", "pass"]
    assert (level.steps[0].detail, level.steps[0].exit_code) == ("1 precondition(s) hold", 0)
    assert (level.steps[1].detail, level.steps[1].exit_code) == ("held by pid 7", 4)
    assert level.steps[1].checks == [c.__dict__ for c in checks]
    assert (level.steps[2].detail, level.steps[2].exit_code) == ("bad", int(ExitCode.BAD_INPUT))
    assert level.steps[2].checks == [{"name": "preconditions", "ok": False, "detail": "bad", "exit_code": 2}]
    assert level.steps[3].detail == "unexpected error (ValueError): a bug in rollout; please report it"
    assert level.steps[3].checks == [{"name": "preconditions", "ok": False, "detail": level.steps[3].detail,
                                      "exit_code": 1}]
    assert [s.description for s in level.steps] == ["do a", "do b", "do c", "do d", "do e", "do f"]
    assert level.steps[3].exit_code == int(ExitCode.FAILED)
    assert level.failed and exit_code_of([level]) == ExitCode.UNAVAILABLE
    assert level.steps[5].detail == "0 precondition(s) hold"


def test_read_inputs_reads_every_step_before_any_runs():
    ran: list[str] = []
    plan = [book(1, Fake(label="a", ran=ran)), book(2, Fake(label="b", ran=ran))]
    read_inputs(plan, CTX)
    assert ran == ["read a", "read b"]
    with pytest.raises(InputError):
        read_inputs([book(1, Fake(label="a", ran=ran, error=InputError("missing")))], CTX)


@pytest.mark.parametrize(("duration", "within"), [(29.9, True), (30.0, True), (30.1, False)])
def test_a_level_is_within_budget_up_to_its_budget(duration, within):
    level = LevelReport(1, "x", 30.0, "/p", duration_s=duration)
    assert level.within_budget is within and level.to_json()["within_budget"] is within


def test_exit_code_is_the_first_failures_and_a_failure_without_one_is_1():
    def level(*steps: tuple[str, int]) -> LevelReport:
        return LevelReport(1, "x", 1, "/p", [StepReport(i, "t", "", s, "", exit_code=c) for i, (s, c) in enumerate(steps)])

    assert exit_code_of([level(("ok", 0), ("failed", 4), ("failed", 2))]) == ExitCode.UNAVAILABLE
    assert exit_code_of([level(("pass", 0)), level(("fail", 2))]) == ExitCode.BAD_INPUT
    assert exit_code_of([level(("failed", 0))]) == ExitCode.FAILED
    assert exit_code_of([level(("skipped", 0), ("would-change", 0))]) == ExitCode.OK


def test_report_json_drops_empty_fields_and_rounds_times():
    step = StepReport(1, "env.set", "set X", "ok", "done", duration_s=0.123456)
    assert step.to_json() == {"index": 1, "type": "env.set", "description": "set X", "status": "ok", "detail": "done",
                              "duration_s": 0.1235, "exit_code": 0}
    level = LevelReport(1, "flag", 30.0, "/p/1.yaml", [step], duration_s=1.23456)
    assert level.to_json() == {"level": 1, "name": "flag", "budget_s": 30.0, "duration_s": 1.2346, "within_budget": True,
                               "source": "/p/1.yaml", "steps": [step.to_json()]}


def test_each_step_and_level_is_timed(monkeypatch):
    ticks = iter([0.0, 10.0, 12.5, 20.0])
    monkeypatch.setattr(engine.time, "monotonic", lambda: next(ticks))
    (level,) = execute([book(1, Fake())], CTX)
    assert (level.steps[0].duration_s, level.duration_s) == (2.5, 20.0)
    assert CTX.ends == 0.0 + 30.0  # steps that wait stop at the level's budget from its start
