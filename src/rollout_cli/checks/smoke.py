"""`rollout smoke`, the CI smoke step: the suite against every model, a fallback drill, a cost guard.

Checks per run (each one JUnit test case):
- every suite case against every selected model, with fallbacks off so the
  model itself answers (as in health); cases of one model run in order, the
  models run at the same time. A model that is down or rate-limited gets no
  further cases: they would fail or throttle the same way and spend the free
  tier's budget, so they are reported as skipped, not sent;
- the fallback drill: one request to the primary with `mock_testing_fallbacks`
  must be served by the next alias in the chain. A gateway that refuses the
  parameter (it must set `dangerously_allow_mock_testing_request_params`) makes
  it *not verifiable*: never passed, inconclusive (exit 3 unless something failed);
- the cost guard over every model of the gateway config (not only --model ones).

Exit: 0 all passed, 1 any failed, 2 bad input or key refused, 3 only
inconclusive (rate-limited, not verifiable), 4 gateway unreachable.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from rollout_cli.checks.budget import RequestBudget
from rollout_cli.checks.classify import BROKEN, FAILING, HEALTHY, classify
from rollout_cli.checks.classify import INCONCLUSIVE as UNSURE
from rollout_cli.checks.cost import CostReport, catalog_urls, check_cost
from rollout_cli.checks.evidence import Evidence
from rollout_cli.checks.junit import smoke_junit_xml
from rollout_cli.checks.markdown import smoke_markdown
from rollout_cli.checks.preflight import NO_MODELS, GatewayState, known_aliases, select_models
from rollout_cli.checks.suite import Suite, evaluate, load_suite, suite_path
from rollout_cli.core.quota import Forecast, QuotaLedger, forecast, require_room
from rollout_cli.core.result import Result
from rollout_cli.core.workspace import Workspace
from rollout_cli.errors import ExitCode, InputError
from rollout_cli.gateway.topology import Topology, load_topology
from rollout_cli.io.atomic import atomic_write_text

PASS = "pass"
FAIL = "fail"
INCONCLUSIVE = "inconclusive"
NOT_VERIFIABLE = "not-verifiable"
SKIPPED = "skipped"

DRILL = "fallback-drill"
COST = "cost"
_MOCK_PARAM_HINT = "dangerously_allow_mock_testing_request_params"


@dataclass
class CheckResult:
    """One model x one check: a JUnit test case."""

    model: str
    check: str
    status: str  # pass | fail | inconclusive | not-verifiable | skipped
    detail: str = ""
    model_status: str | None = None  # the classify() status of the answer, when one was sent
    latency_ms: float | None = None
    http_status: int | None = None
    served_by: str | None = None
    requests: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SmokePlan:
    """What a run will send, before anything is sent."""

    models: list[str]
    cases: list[str]
    per_model: dict[str, int]
    drill: dict[str, Any] | None  # {"model", "expected", "requests"}
    catalogs: list[str]
    cap: int | None = None

    @property
    def completions(self) -> int:
        return sum(self.per_model.values()) + (self.drill["requests"] if self.drill else 0)

    @property
    def fits(self) -> bool:
        return self.cap is None or self.completions <= self.cap

    def to_json(self) -> dict[str, Any]:
        return {
            "models": self.models,
            "cases": self.cases,
            "per_model": self.per_model,
            "drill": self.drill,
            "catalog_requests": len(self.catalogs),
            "catalogs": self.catalogs,
            "completions": self.completions,
            "cap": self.cap,
            "fits": self.fits,
        }


@dataclass
class SmokeReport:
    gateway: GatewayState
    suite: Suite
    plan: SmokePlan
    checks: list[CheckResult] = field(default_factory=list)
    cost: CostReport | None = None
    requests: dict[str, Any] = field(default_factory=dict)
    duration_ms: float = 0.0
    config: str | None = None
    junit_xml: str | None = None  # where `smoke --junit-xml` wrote it
    markdown: str | None = None  # where `smoke --markdown` wrote it

    @property
    def counts(self) -> dict[str, int]:
        out = {s: 0 for s in (PASS, FAIL, INCONCLUSIVE, NOT_VERIFIABLE, SKIPPED)}
        for c in self.checks:
            out[c.status] = out.get(c.status, 0) + 1
        return out

    @property
    def verdict(self) -> str:
        """unreachable | auth-error | failed | inconclusive | passed."""
        if self.gateway.problem in ("unreachable", "auth-error"):
            return self.gateway.problem
        counts = self.counts
        if counts[FAIL] or self.gateway.problem:
            return "failed"
        if counts[INCONCLUSIVE] or counts[NOT_VERIFIABLE]:
            return "inconclusive"
        return "passed"

    @property
    def exit_code(self) -> ExitCode:
        return {
            "unreachable": ExitCode.UNAVAILABLE,
            "auth-error": ExitCode.BAD_INPUT,
            "failed": ExitCode.FAILED,
            "inconclusive": ExitCode.HOLD,
        }.get(self.verdict, ExitCode.OK)

    @property
    def messages(self) -> list[str]:
        lines = [self.gateway.message] if self.gateway.message else []
        for c in self.checks:
            if c.status in (FAIL, INCONCLUSIVE, NOT_VERIFIABLE):
                lines.append(f"{c.status}: {c.model} {c.check}: {c.detail}")
        return lines

    def to_json(self) -> dict[str, Any]:
        written = {k: v for k, v in (("junit_xml", self.junit_xml), ("markdown", self.markdown)) if v is not None}
        return {
            "mode": "run",
            "verdict": self.verdict,
            "gateway": self.gateway.to_json(),
            "config": self.config,
            "suite": self.suite.to_json(),
            "plan": self.plan.to_json(),
            "checks": [c.to_json() for c in self.checks],
            "counts": self.counts,
            "cost": self.cost.to_json() if self.cost else None,
            "requests": self.requests,
            "duration_ms": self.duration_ms,
            **written,
        }

    def to_result(self) -> Result[SmokeReport]:
        return Result("smoke", self, self.messages, self.exit_code)


@dataclass(frozen=True)
class SmokePlanPayload:
    """`rollout smoke --plan`: the requests a run would send; nothing was sent."""

    plan: SmokePlan
    forecast: Forecast | None = None  # against rollout's share of the free quota today

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"mode": "plan", "plan": self.plan.to_json()}
        if self.forecast is not None:
            out["forecast"] = self.forecast.to_json()
        return out


def prepare(
    ws: Workspace, suite_file: Path | None = None, models: Sequence[str] | None = None,
    max_requests: int | None = None, topology: Topology | None = None,
) -> tuple[Suite, Topology | None, SmokePlan]:
    """Validate the suite, the gateway config and --model, and plan the requests; sends nothing."""
    suite = load_suite(suite_path(suite_file, ws.playbooks))
    topology = topology if topology is not None else load_topology(ws.gateway.config)
    if topology is None:  # no gateway config: the models are the gateway's, checked once it answered
        selected = list(dict.fromkeys(models or []))
    else:
        selected = select_models(models, known_aliases(topology), f"gateway config {topology.source}")
    drill = None
    if suite.drill.enabled and topology is not None and topology.primary in selected:
        drill = {"model": topology.primary, "expected": topology.next_in_chain(topology.primary), "requests": 1}
    plan = SmokePlan(
        models=selected,
        cases=[c.name for c in suite.cases],
        per_model={alias: len(suite.cases) for alias in selected},
        drill=drill,
        catalogs=catalog_urls(topology) if topology else [],
        cap=max_requests,
    )
    if max_requests is not None and not plan.fits:
        raise InputError(
            f"the smoke plan needs {plan.completions} requests ({len(selected)} model(s) x "
            f"{len(suite.cases)} case(s){' + 1 fallback drill' if drill else ''}) but --max-requests is "
            f"{max_requests}; raise it, or narrow the run with --model"
        )
    return suite, topology, plan


def plan_smoke(
    ws: Workspace, suite_file: Path | None = None, models: Sequence[str] | None = None, max_requests: int | None = None
) -> SmokePlan:
    return prepare(ws, suite_file, models, max_requests)[2]


def run_smoke(
    ws: Workspace,
    suite_file: Path | None = None,
    models: Sequence[str] | None = None,
    *,
    max_requests: int | None = None,
    evidence: Evidence | None = None,
) -> SmokeReport:
    """Run the smoke step; never raises for what it finds (InputError for bad input only).

    `evidence` shares the parsed gateway config, the client and the preflight
    with the other checks of one decision.
    """
    started = time.perf_counter()
    suite, topology, plan = prepare(ws, suite_file, models, max_requests,
                                    topology=evidence.topology if evidence else None)
    own = evidence is None
    evidence = evidence or Evidence(ws, topology=topology)
    cost_box: dict[str, CostReport] = {}
    cost_thread = None
    if topology is not None:
        # The catalog is another host: read it while the models answer.
        cost_thread = threading.Thread(target=lambda: cost_box.update(cost=check_cost(topology)), daemon=True)
        cost_thread.start()
    try:
        state = evidence.gateway()
        if topology is None and state.usable:
            served = select_models(models, known_aliases(None, state), f"gateway {ws.gateway.url}")
            plan = replace(plan, models=served, per_model={alias: len(suite.cases) for alias in served})
        if state.usable:
            require_room(evidence.ledger, ws.openrouter, "smoke", plan.completions)  # exit 3 past rollout's share
        budget = RequestBudget(evidence.client, cap=max_requests, planned=plan.completions, shared=evidence.answers)
        checks: list[CheckResult] = [_gateway_check(state)]
        if state.usable:
            jobs: list[Callable[[], list[CheckResult]]] = [
                partial(_run_cases, budget, suite, alias) for alias in plan.models
            ]
            drill = plan.drill
            if drill:
                jobs.append(lambda: [_run_drill(budget, suite, drill)])
            if not plan.models:
                checks.append(CheckResult("gateway", "models", FAIL, NO_MODELS))
            if jobs:
                with ThreadPoolExecutor(max_workers=len(jobs), thread_name_prefix="smoke") as pool:
                    for found in pool.map(lambda job: job(), jobs):
                        checks.extend(found)
            _drill_by_its_fallback(checks, drill)
        else:
            for alias in plan.models:
                checks.extend(CheckResult(alias, case, SKIPPED, f"not sent: {state.problem}") for case in plan.cases)
    finally:
        if own:
            evidence.close()
    cost = None
    if cost_thread is not None:
        cost_thread.join()
        cost = cost_box.get("cost")
    checks.extend(_cost_checks(cost, plan))
    return SmokeReport(
        gateway=state,
        suite=suite,
        plan=plan,
        checks=checks,
        cost=cost,
        requests={**budget.to_json(), "catalog": len(cost.catalogs) if cost else 0},
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
        config=str(topology.source) if topology and topology.source else None,
    )


def _gateway_check(state: GatewayState) -> CheckResult:
    """The gateway itself as a test case, so a CI report shows why nothing else ran."""
    if state.problem is None:
        return CheckResult("gateway", "gateway", PASS, "alive, ready, key accepted")
    return CheckResult("gateway", "gateway", FAIL, state.message or state.problem)


def _run_cases(budget: RequestBudget, suite: Suite, alias: str) -> list[CheckResult]:
    out: list[CheckResult] = []
    stopped: str | None = None
    for case in suite.cases:
        if stopped:
            out.append(CheckResult(alias, case.name, SKIPPED, f"not sent: {stopped}"))
            continue
        seen, sent = budget.ask_counted(alias, case.prompt, max_tokens=case.max_tokens, timeout=case.timeout_s,
                                        extra={"stream": True} if case.stream else None)
        verdict = classify(seen, alias)
        result = CheckResult(
            alias, case.name, PASS, "", verdict.status, seen.latency_ms, seen.status, seen.served_by, sent
        )
        if verdict.status == HEALTHY:
            reasons = evaluate(case, seen)
            result.status = FAIL if reasons else PASS
            result.detail = "; ".join(reasons) if reasons else "all assertions hold"
        else:
            result.status = INCONCLUSIVE if verdict.status in UNSURE else FAIL
            result.detail = f"{verdict.status} ({verdict.error_class}): {verdict.message or ''}".rstrip(": ")
            if verdict.status in UNSURE or (verdict.status in FAILING and verdict.status != BROKEN):
                stopped = f"{alias} was {verdict.status} in case '{case.name}'"
            elif verdict.status == BROKEN and verdict.error_class == "unknown-model":
                stopped = f"the gateway does not serve {alias}"
        if sent == 0:
            result.detail += " (answer shared with another check of this decision: not sent again)"
        out.append(result)
    return out


def _run_drill(budget: RequestBudget, suite: Suite, drill: dict[str, Any]) -> CheckResult:
    primary, expected = drill["model"], drill["expected"]
    if expected is None:
        return CheckResult(primary, DRILL, FAIL, f"no fallback for {primary} in router_settings.fallbacks")
    seen, sent = budget.ask_counted(
        primary,
        suite.drill.prompt,
        max_tokens=suite.drill.max_tokens,
        timeout=suite.drill.timeout_s,
        disable_fallbacks=False,
        # max_fallbacks 1: each fallback the drill tries fails (or serves) on its own, without walking on from
        # there, so every fallback it causes is counted under the primary's mock exception (metrics.DRILL_CLASS)
        # and none looks like the app's (a failing fallback's own chain would count under its real error)
        extra={"mock_testing_fallbacks": True, "max_fallbacks": 1},
    )
    result = CheckResult(
        primary, DRILL, FAIL, "", None, seen.latency_ms, seen.status, seen.served_by, sent
    )
    message = seen.message or ""
    if seen.status == 400 and _MOCK_PARAM_HINT in message:
        result.status = NOT_VERIFIABLE
        result.detail = (
            "the gateway refuses mock_testing_fallbacks (general_settings."
            f"{_MOCK_PARAM_HINT} is off), so the fallback chain was not exercised"
        )
    elif seen.status == 200 and seen.served_by == expected:
        result.status = PASS
        result.detail = f"{primary} made to fail; served by {expected} (next in chain)"
    elif seen.status == 200 and seen.served_by in (primary, None):
        result.status = NOT_VERIFIABLE
        result.detail = f"the gateway ignored mock_testing_fallbacks: served by {seen.served_by or 'unknown'}"
    elif seen.status == 200:
        result.detail = f"served by {seen.served_by}, expected {expected} (next in the chain after {primary})"
    else:
        verdict = classify(seen, primary)
        result.model_status = verdict.status
        result.status = INCONCLUSIVE if verdict.status in UNSURE else FAIL
        result.detail = f"fallback from {primary} failed: HTTP {seen.status or '-'} {verdict.message or ''}".strip()
    return result


def _drill_by_its_fallback(checks: list[CheckResult], drill: dict[str, Any] | None) -> None:
    """A drill whose fallback was throttled or out of quota proves nothing either way: inconclusive, not failed."""
    done = next((c for c in checks if c.check == DRILL and c.status == FAIL and c.http_status), None)
    if drill is None or done is None:
        return
    unsure = next((c for c in checks if c.model == drill["expected"] and c.model_status in UNSURE), None)
    if unsure is not None:
        done.status = INCONCLUSIVE
        done.detail = f"the fallback {unsure.model} was {unsure.model_status}: {done.detail}"


def _cost_checks(cost: CostReport | None, plan: SmokePlan) -> list[CheckResult]:
    if cost is None:
        return [
            CheckResult(
                "gateway", COST, NOT_VERIFIABLE,
                "no gateway config (gateway.config in rollout.yaml): which models it serves is unknown",
            )
        ]
    unreached = [c["url"] for c in cost.catalogs if not c["reachable"]]
    out = []
    for m in cost.models:
        detail = m.reason
        if m.status == "free" and not m.verified and unreached:
            detail += f" ({', '.join(unreached)})"
        out.append(CheckResult(m.alias, COST, PASS if m.status == "free" else FAIL, detail, requests=0))
    return out


def smoke(
    ws: Workspace,
    suite_file: Path | None = None,
    models: Sequence[str] | None = None,
    *,
    max_requests: int | None = None,
    plan_only: bool = False,
    junit_xml: Path | None = None,
    markdown: Path | None = None,
) -> Result[SmokeReport] | Result[SmokePlanPayload]:
    """The `rollout smoke` command's core: plan, or run and write the JUnit and Markdown files."""
    if plan_only:
        planned = plan_smoke(ws, suite_file, models, max_requests)
        found = forecast(QuotaLedger(ws.state_dir), ws.openrouter, "smoke", planned.completions)
        return Result("smoke", SmokePlanPayload(planned, found), [found.text],
                      ExitCode.OK if found.fits else ExitCode.HOLD)
    report = run_smoke(ws, suite_file, models, max_requests=max_requests)
    if junit_xml is not None:
        _write_report(junit_xml, smoke_junit_xml(report.to_result().to_json()), "--junit-xml")
        report.junit_xml = str(junit_xml)
    if markdown is not None:
        _write_report(markdown, smoke_markdown(report.to_result().to_json()), "--markdown")
        report.markdown = str(markdown)
    return report.to_result()


def _write_report(path: Path, text: str, option: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, text)
    except OSError as exc:
        raise InputError(f"cannot write {option} file {path}: {exc.strerror or exc}; choose another path") from exc
