"""The judging rules of rollout/gates.py: findings in, gates and a verdict out (recorded snapshots, no gateway)."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from rollout_cli.checks.catalog import CatalogReport, ModelEntry, Replacement
from rollout_cli.checks.cost import CostReport, ModelCost
from rollout_cli.checks.health import HealthReport, ModelHealth
from rollout_cli.checks.preflight import GatewayState
from rollout_cli.checks.smoke import CheckResult
from rollout_cli.core.audit import StageChange
from rollout_cli.core.playbooks import format_duration
from rollout_cli.core.stage import Stage
from rollout_cli.errors import ExitCode
from rollout_cli.rollout import gates as g
from rollout_cli.rollout import snapshot
from rollout_cli.rollout.gates import FAIL, INCONCLUSIVE, PASS, SKIPPED, Gate, Verdict
from rollout_cli.rollout.intervals import newcombe_difference
from rollout_cli.rollout.judge import judge
from rollout_cli.rollout.plan import Condition, CustomGate, Gates, StagePlan

NOW = datetime(2026, 3, 5, 12, 0, tzinfo=UTC).timestamp()
H = 3600.0
PLAN = StagePlan()  # 48 h soak, error rate <= 1 %, p95 <= 10 ms, fallback rate <= 5 %, 20 requests at least
AT_10 = Stage(10, True, 10, True, True)
ALIASES = ["glm", "deepseek", "minimax", "kimi", "qwen"]


@pytest.fixture(autouse=True)
def frozen_clock(monkeypatch):
    monkeypatch.setattr(g.time, "time", lambda: NOW)
    monkeypatch.setattr(snapshot.time, "time", lambda: NOW)


# The window's evidence is gathered (rollout/snapshot.py) apart from its rules (gates.py): these
# run both, as one evaluation does, so each case reads as the rule's inputs and its gate.
def soak_gate(p, stage, entered_, skip):  # type: ignore[no-untyped-def]
    return g.soak_gate(p, stage, entered_, skip, NOW)


def gathered(ws, p, stage, entered_, scrape, error, scraped_at=None):  # type: ignore[no-untyped-def]
    start = snapshot.window_start(p, stage.percentage, entered_, NOW)
    return snapshot.gateway_window(ws, stage.percentage, start, scraped_at or NOW, scrape, error)


def window_gates(ws, p, stage, entered_, scrape, error):  # type: ignore[no-untyped-def]
    return g.window_gates(p, gathered(ws, p, stage, entered_, scrape, error))


def fallback_gate(ws, p, stage, entered_, scrape, error, scraped_at=None):  # type: ignore[no-untyped-def]
    return g.fallback_gate(p, gathered(ws, p, stage, entered_, scrape, error, scraped_at))


def entered(hours_ago: float, after: int = 10) -> StageChange:
    iso = datetime.fromtimestamp(NOW - hours_ago * H, UTC).isoformat().replace("+00:00", "Z")
    return StageChange(iso, "ops", "advance", None, 0, after)


def plan(**gates) -> StagePlan:
    return replace(PLAN, gates=replace(Gates(), **gates))


def shape(name: str, p: StagePlan, stage: int, total: int) -> tuple[str, str]:
    """(source, threshold) every gate called `name` states: what it was judged from and against."""
    t = p.gates
    health = "health check (fallbacks off)"
    return {
        "soak": ("audit trail", f">= {format_duration(p.soak_for(stage))}"),
        "error rate": ("/metrics/ + watch samples", f"<= {t.max_error_rate * 100:g}%"),
        "added latency": ("/metrics/ + watch samples", f"p95 <= {t.max_added_latency_p95_ms:g} ms"),
        "fallback rate": ("/metrics/ fallback counters + watch samples", f"<= {t.max_fallback_rate * 100:g}%"),
        "env/flags agree": ("env + flags files", "equal"),
        "gateway": ("/health/liveliness, /readiness", "alive, ready, key accepted"),
        "primary model": (health, "healthy"),
        "healthy models": (health, f">= {t.min_healthy_models} of {total}"),
        "smoke": ("smoke suite + fallback drill", "passes"),
        "cost": ("gateway config + /models pricing", "$0.00: free models only"),
        "catalog": ("OpenRouter /api/v1/models", "listed, free, supports app.requires"),
    }[name]


def checked(*gates: Gate, p: StagePlan = PLAN, stage: int = 10, total: int = 5):
    for gate in gates:
        source, threshold = shape(gate.name, p, stage, total)
        assert gate.source.startswith(source) and gate.threshold == threshold, gate
        if gate.status in (FAIL, INCONCLUSIVE):
            assert gate.reason and gate.value, gate
    return gates[0] if len(gates) == 1 else list(gates)


# --- combine ---------------------------------------------------------------------


@pytest.mark.parametrize(("statuses", "verdict"), [
    ([], Verdict.GO), ([PASS], Verdict.GO), ([PASS, SKIPPED], Verdict.GO),
    ([PASS, INCONCLUSIVE], Verdict.HOLD), ([INCONCLUSIVE, SKIPPED], Verdict.HOLD),
    ([PASS, FAIL], Verdict.NO_GO), ([INCONCLUSIVE, FAIL, PASS], Verdict.NO_GO),
])
def test_one_failure_is_no_go_one_unknown_is_hold(statuses, verdict):
    assert g.combine([Gate(f"g{i}", s, "", "", "", "") for i, s in enumerate(statuses)]) is verdict


@pytest.mark.parametrize(("verdict", "code"), [(Verdict.GO, ExitCode.OK), (Verdict.HOLD, ExitCode.HOLD),
                                               (Verdict.NO_GO, ExitCode.FAILED)])
def test_verdict_exit_codes(verdict, code):
    assert verdict.exit_code == code


# --- soak -------------------------------------------------------------------------


@pytest.mark.parametrize(("hours", "status", "value"), [
    (0.5, INCONCLUSIVE, "30m00s of 48h00m"), (47.99, INCONCLUSIVE, "47h59m of 48h00m"),
    (48, PASS, "48h00m of 48h00m"), (100, PASS, "100h00m of 48h00m"),
])
def test_soak_passes_once_the_stage_has_lasted_the_soak(hours, status, value):
    gate = checked(soak_gate(PLAN, AT_10, entered(hours), None))
    assert (gate.name, gate.status, gate.value, gate.threshold, gate.source) == ("soak", status, value, ">= 48h00m",
                                                                                "audit trail")
    if status == INCONCLUSIVE:
        assert gate.reason == f"soak {value} at 10% (since {entered(hours).time})"
    else:
        assert gate.reason == f"soak {value}: elapsed"


def test_soak_per_stage_override_is_what_the_stage_needs():
    overridden = replace(PLAN, soak_overrides={10: 2 * H})
    assert checked(soak_gate(overridden, AT_10, entered(3), None), p=overridden).status == PASS
    at_50 = soak_gate(overridden, Stage(50, True, 50, True, True), entered(3, 50), None)
    assert checked(at_50, p=overridden, stage=50).status == INCONCLUSIVE


def test_soak_without_a_record_of_entering_is_unknown_and_a_skip_is_recorded():
    unknown = checked(soak_gate(PLAN, AT_10, None, None))
    assert (unknown.name, unknown.status, unknown.value) == ("soak", INCONCLUSIVE, "unknown")
    assert unknown.reason == ("no audit record of entering 10%; soak cannot be measured"
                              " (advance with --skip-soak --reason TEXT if you know it has soaked)")
    skipped = checked(soak_gate(PLAN, AT_10, None, "incident drill"))
    assert skipped.name == "soak"
    assert (skipped.status, skipped.value, skipped.reason) == (SKIPPED, "skipped", "soak skipped: incident drill")


# --- the soak window ---------------------------------------------------------------


@pytest.mark.parametrize(("hours_ago", "start_hours_ago"), [
    (1, 1),  # opens at the stage's entry: the previous stage's traffic is not in it
    (48, 48),
    (100, 48),  # reaches back at most the soak: an old incident is not in it
])
def test_the_window_opens_at_the_stages_entry_and_reaches_back_at_most_the_soak(hours_ago, start_hours_ago):
    assert snapshot.window_start(PLAN, 10, entered(hours_ago)) == NOW - start_hours_ago * H


def test_without_a_record_the_window_is_the_soak():
    assert snapshot.window_start(PLAN, 10, None) == NOW - 48 * H
    assert snapshot.window_start(replace(PLAN, soak_overrides={50: H}), 50, None) == NOW - H


def summary(requests: float, failed: float = 0, fallbacks: float = 0, failed_fallbacks: float = 0,
            fast: float | None = None, slow: float = 0, drill_fallbacks: float = 0) -> dict:
    """A /metrics/ summary: `fast` requests added under 5 ms, `slow` ones 20..50 ms (cumulative buckets)."""
    fast = requests - slow if fast is None else fast
    overhead = {"0.005": fast, "0.02": fast, "0.05": fast + slow, "+Inf": fast + slow}
    return {"has_litellm_metrics": True, "requests": requests, "failed": failed, "fallbacks": fallbacks,
            "failed_fallbacks": failed_fallbacks, "drill_fallbacks": drill_fallbacks, "overhead_buckets": overhead,
            "latency_buckets": {}, "models": {}}


def workspace(tmp_path, samples: list[tuple[float, dict]]):
    """A workspace whose `rollout watch` recorded `samples` (hours ago, summary)."""
    lines = [json.dumps({"time": f"-{h}h", "ts": NOW - h * H, "metrics": m}) for h, m in samples]
    (tmp_path / "samples.jsonl").write_text("".join(line + "\n" for line in lines))
    return SimpleNamespace(state_dir=tmp_path)


def window(tmp_path, samples, scrape, *, stage_hours_ago: float = 100, p: StagePlan = PLAN, error=None):
    ws = workspace(tmp_path, samples)
    error_gate, latency_gate = window_gates(ws, p, AT_10, entered(stage_hours_ago), scrape, error)
    assert (error_gate.name, latency_gate.name) == ("error rate", "added latency")
    return checked(error_gate, latency_gate, p=p)


def test_the_previous_stages_traffic_stays_out_of_the_window(tmp_path):
    # 50 failures happened at the previous stage (2 h ago .. 1 h ago); the stage began 1 h ago
    samples = [(2, summary(0)), (0.5, summary(100, failed=50))]
    error_gate, _ = window(tmp_path, samples, summary(300, failed=50), stage_hours_ago=1)
    assert (error_gate.status, error_gate.value) == (PASS, "0.00% (0 of 200)")


def test_an_old_incident_beyond_the_soak_stays_out_of_the_window(tmp_path):
    samples = [(60, summary(0)), (40, summary(100, failed=100))]
    error_gate, _ = window(tmp_path, samples, summary(300, failed=100), stage_hours_ago=100)
    assert (error_gate.status, error_gate.value) == (PASS, "0.00% (0 of 200)")


# requests, failed, min_requests, max_error_rate -> status
ERROR_RATES = [
    pytest.param(200, 0, 20, 0.01, PASS, id="clean"),
    pytest.param(200, 2, 20, 0.01, PASS, id="at the limit"),
    pytest.param(200, 3, 20, 0.01, FAIL, id="over the limit"),
    pytest.param(20, 0, 20, 0.01, PASS, id="just enough requests"),
    pytest.param(19, 0, 20, 0.01, INCONCLUSIVE, id="too few, no failure: unknown"),
    pytest.param(5, 1, 20, 0.01, FAIL, id="too few, but the failures alone breach the limit"),
    pytest.param(10, 1, 20, 0.10, INCONCLUSIVE, id="too few: 1 of 10 could be 1 of 20 = 5 %"),
    pytest.param(10, 2, 20, 0.10, INCONCLUSIVE, id="too few: 2 of 20 is the limit, not over it"),
    pytest.param(10, 3, 20, 0.10, FAIL, id="too few, 3 of at least 20 is over 10 %"),
]


@pytest.mark.parametrize(("requests", "failed", "min_requests", "max_rate", "status"), ERROR_RATES)
def test_error_rate_with_few_requests_only_a_clear_breach_is_conclusive(tmp_path, requests, failed, min_requests,
                                                                         max_rate, status):
    p = plan(min_requests=min_requests, max_error_rate=max_rate)
    error_gate, _ = window(tmp_path, [(1, summary(0))], summary(requests, failed), p=p)
    assert error_gate.status == status
    assert error_gate.value == f"{failed / requests * 100:.2f}% ({failed} of {requests})"
    assert error_gate.threshold == f"<= {max_rate * 100:g}%"
    if status == INCONCLUSIVE:
        assert error_gate.reason == (f"only {requests} requests in the window (< {min_requests}):"
                                     " too few to judge the error rate")
    elif status == FAIL:
        assert error_gate.reason == f"error rate {error_gate.value} > {max_rate * 100:g}%"
    else:
        assert error_gate.reason == f"error rate {error_gate.value} <= {max_rate * 100:g}%"


@pytest.mark.parametrize(("requests", "slow", "status", "value"), [
    (100, 0, PASS, "p95 4.8 ms"),
    (100, 4, PASS, "p95 4.9 ms"),  # 4 % slow: the p95 is still in the fast bucket
    (100, 6, FAIL, "p95 25.0 ms"),
    (19, 0, INCONCLUSIVE, "p95 4.8 ms"),  # too few observations for a p95
    (20, 0, PASS, "p95 4.8 ms"),
])
def test_added_latency_is_judged_on_the_windows_p95(tmp_path, requests, slow, status, value):
    _, latency = window(tmp_path, [(1, summary(0))], summary(requests, slow=slow))
    assert (latency.status, latency.value, latency.threshold) == (status, value, "p95 <= 10 ms")
    if status == FAIL:
        assert latency.reason == f"p95 overhead {value[4:]} > 10 ms"
    elif status == PASS:
        assert latency.reason == f"p95 overhead {value[4:]} <= 10 ms"
    else:
        assert latency.reason.startswith(f"only {requests} latency observations in the window (< 20)")


def test_added_latency_at_the_limit_passes(tmp_path):
    at_limit = {**summary(100), "overhead_buckets": {"0.01": 95.0, "0.02": 100.0, "+Inf": 100.0}}
    _, latency = window(tmp_path, [(1, summary(0))], at_limit)
    assert (latency.status, latency.value, latency.reason) == (PASS, "p95 10.0 ms", "p95 overhead 10.0 ms <= 10 ms")


def test_one_request_is_too_few_not_none(tmp_path):
    error_gate, _ = window(tmp_path, [(1, summary(0))], summary(1))
    assert (error_gate.status, error_gate.value) == (INCONCLUSIVE, "0.00% (0 of 1)")
    gate = fallback(tmp_path, [(1, summary(0))], summary(1))
    assert (gate.status, gate.value) == (INCONCLUSIVE, "0.00% (0 of 1)")


def test_a_stages_own_soak_bounds_its_window(tmp_path):
    short = replace(PLAN, soak_overrides={10: H})
    samples = [(2, summary(0)), (0.5, summary(100, failed=50))]
    ws = workspace(tmp_path, samples)
    error_gate, _ = window_gates(ws, short, AT_10, None, summary(300, failed=50), None)
    assert (error_gate.status, error_gate.value) == (PASS, "0.00% (0 of 200)")
    gate = fallback_gate(ws, short, AT_10, None, summary(300, failed=50, fallbacks=50), None)
    assert (gate.status, gate.value) == (FAIL, "25.00% (50 of 200)")


def test_the_fallback_window_keeps_the_previous_stage_out(tmp_path):
    samples = [(2, summary(0)), (0.5, summary(100, fallbacks=50))]
    ws = workspace(tmp_path, samples)
    gate = fallback_gate(ws, PLAN, AT_10, entered(1), summary(300, fallbacks=50), None)
    assert (gate.status, gate.value) == (PASS, "0.00% (0 of 200)")


def test_a_summary_without_fallback_counters_counts_none(tmp_path):
    bare = {k: v for k, v in summary(100).items() if k not in ("fallbacks", "failed_fallbacks")}
    gate = fallback(tmp_path, [(1, {k: v for k, v in summary(0).items() if k not in ("fallbacks", "failed_fallbacks")})],
                    bare)
    assert (gate.status, gate.value) == (PASS, "0.00% (0 of 100)")


def test_added_latency_without_observations_is_unknown(tmp_path):
    _, latency = window(tmp_path, [(1, summary(0))], summary(100, fast=0))
    assert (latency.status, latency.value) == (INCONCLUSIVE, "unknown")


def test_added_latency_reads_the_overhead_histogram():
    p95, observed = g.added_latency({"overhead_buckets": {"0.01": 90.0, "0.02": 100.0, "+Inf": 100.0}})
    assert (round(p95, 6), observed) == (15.0, 100.0)
    assert g.added_latency({"overhead_buckets": {}}) == (None, 0)


@pytest.mark.parametrize(("samples", "scrape", "error", "value", "reason"), [
    ([(1, summary(0))], None, "refused", "unknown", "metrics cannot be read: refused"),
    ([(1, summary(0))], {**summary(5), "has_litellm_metrics": False}, None, "unknown",
     "the gateway exposes no litellm_* metrics (enable the prometheus callback)"),
    ([], summary(5), None, "unknown",
     "no metrics sample recorded since 10% began; run `rollout watch` during the soak so the window can be judged"),
    ([(1, {})], summary(5), None, "unknown", "no metrics sample recorded since 10% began"),
    ([(1, summary(5))], summary(5), None, "0 requests", "no requests through the gateway in the window (since -1h)"),
    ([(1, summary(9))], summary(5), None, "0.00% (0 of 5)", "only 5 requests"),  # a restarted proxy: counters from 0
])
def test_a_window_that_cannot_be_judged_is_unknown(tmp_path, samples, scrape, error, value, reason):
    error_gate, latency = window(tmp_path, samples, scrape, error=error)
    assert (error_gate.status, error_gate.value) == (INCONCLUSIVE, value)
    assert error_gate.reason.startswith(reason) and latency.status == INCONCLUSIVE
    if value in ("unknown", "0 requests"):  # nothing to judge either gate on: both say why
        assert (latency.value, latency.reason) == (value, error_gate.reason)


def test_a_failed_scrape_falls_back_to_the_latest_sample(tmp_path):
    samples = [(3, summary(0)), (2, summary(50, failed=1)), (1, summary(100, failed=5))]
    error_gate, _ = window(tmp_path, samples, None, error="refused")
    assert (error_gate.status, error_gate.value) == (FAIL, "5.00% (5 of 100)")
    assert error_gate.source == "/metrics/ + watch samples (latest sample: live scrape failed)"


# --- fallback rate ---------------------------------------------------------------


def fallback(tmp_path, samples, scrape, *, p: StagePlan = PLAN, scraped_at=None, error=None):
    ws = workspace(tmp_path, samples)
    gate = fallback_gate(ws, p, AT_10, entered(100), scrape, error, scraped_at)
    assert gate.name == "fallback rate"
    return checked(gate, p=p)


@pytest.mark.parametrize(("requests", "fell", "failed_fell", "drills", "status", "value"), [
    (100, 0, 0, 0, PASS, "0.00% (0 of 100)"),
    (100, 5, 0, 0, PASS, "5.00% (5 of 100)"),
    (100, 3, 3, 0, FAIL, "6.00% (6 of 100)"),  # failed fallbacks count too
    (100, 6, 0, 1, PASS, "5.00% (5 of 100)"),  # the fallback of a drill rollout forced is not the app's
    (100, 3, 4, 2, PASS, "5.00% (5 of 100)"),  # nor are the hops a drill took past a failing first fallback
    (100, 0, 0, 1, PASS, "0.00% (0 of 100)"),  # never below 0
    (10, 0, 0, 0, INCONCLUSIVE, "0.00% (0 of 10)"),
    (10, 2, 0, 0, FAIL, "20.00% (2 of 10)"),  # 2 of at least 20 is over 5 %
    (10, 1, 0, 0, INCONCLUSIVE, "10.00% (1 of 10)"),
    (20, 1, 0, 0, PASS, "5.00% (1 of 20)"),
])
def test_fallback_rate_over_the_window_less_rollouts_own_drills(tmp_path, requests, fell, failed_fell, drills, status,
                                                                 value):
    gate = fallback(tmp_path, [(1, summary(0))], summary(requests, fallbacks=fell, failed_fallbacks=failed_fell,
                                                         drill_fallbacks=drills))
    assert (gate.status, gate.value, gate.threshold) == (status, value, "<= 5%")
    if status == FAIL:
        assert gate.reason == f"fallback rate {value} > 5%: a model behind the fallbacks is failing"
    elif status == PASS:
        assert gate.reason == f"fallback rate {value} <= 5%"
    else:
        assert gate.reason.startswith(f"only {requests} requests in the window (< 20)")


def test_a_drill_before_the_window_is_not_subtracted(tmp_path):
    then = summary(0, fallbacks=1, drill_fallbacks=1)  # in the counters at the window's start already
    gate = fallback(tmp_path, [(1, then)], summary(100, fallbacks=7, drill_fallbacks=1))
    assert (gate.status, gate.value) == (FAIL, "6.00% (6 of 100)")


@pytest.mark.parametrize(("samples", "scrape", "value", "reason"), [
    ([(1, summary(0))], None, "unknown", "fallback rate: metrics cannot be read: refused"),
    # the same gathered window as the error rate's, so the same reasons (rollout/snapshot.py)
    ([], summary(5), "unknown", "fallback rate: no metrics sample recorded since 10% began; run `rollout watch`"),
    ([(1, summary(0))], {**summary(5), "has_litellm_metrics": False}, "unknown",
     "fallback rate: the gateway exposes no litellm_* metrics"),
    ([(1, summary(5))], summary(5), "0 requests", "fallback rate: no requests through the gateway in the window (since -1h)"),
])
def test_a_fallback_window_that_cannot_be_judged_is_unknown(tmp_path, samples, scrape, value, reason):
    gate = fallback(tmp_path, samples, scrape, error="refused")
    assert (gate.status, gate.value) == (INCONCLUSIVE, value) and gate.reason.startswith(reason)


def test_the_fallback_gate_falls_back_to_the_latest_sample(tmp_path):
    samples = [(3, summary(0)), (2, summary(50, fallbacks=1)), (1, summary(100, fallbacks=10, drill_fallbacks=1))]
    gate = fallback(tmp_path, samples, None)  # the drill's fallback in the latest sample is left out
    assert (gate.status, gate.value) == (FAIL, "9.00% (9 of 100)")


# --- env/flags agreement ---------------------------------------------------------------


@pytest.mark.parametrize(("stage", "status", "value"), [
    (AT_10, PASS, "env 10%, flags 10%"),
    (Stage(10, False, 10, True, True), FAIL, "env 0%, flags 10%"),
    (Stage(10, True, None, None, False), PASS, "env 10%, no flags file"),
])
def test_env_and_flags_must_agree(stage, status, value):
    gate = checked(g.agreement_gate(stage))
    assert (gate.name, gate.status, gate.value, gate.threshold) == ("env/flags agree", status, value, "equal")
    assert gate.reason == (f"drift: {stage.drift}" if status == FAIL else f"{value}: agree")


# --- health -----------------------------------------------------------------------


def health(*statuses: str, problem: str | None = None, primary: str | None = "glm", **detail) -> HealthReport:
    models = [ModelHealth(alias, status) for alias, status in zip(ALIASES, statuses, strict=False)]
    for model in models:
        for key, value in detail.get(model.alias, {}).items():
            setattr(model, key, value)
    return HealthReport(GatewayState("http://gw", problem=problem, message="boom" if problem else None), models,
                        primary=primary)


def by_name(gates: list[Gate]) -> dict[str, Gate]:
    return {gate.name: gate for gate in gates}


@pytest.mark.parametrize(("statuses", "primary", "healthy"), [
    (["healthy"] * 5, PASS, PASS),
    (["healthy"] * 4 + ["down"], PASS, PASS),  # a fallback down: 4 of 5 is enough
    (["rate-limited"] + ["healthy"] * 4, INCONCLUSIVE, PASS),
    (["down"] + ["healthy"] * 4, FAIL, PASS),
    (["healthy"] * 3 + ["rate-limited", "down"], PASS, INCONCLUSIVE),  # 3 healthy + 1 unknown could make 4
    (["healthy"] * 3 + ["down", "down"], PASS, FAIL),
    (["healthy"] * 3 + ["quota-exhausted", "upstream-throttled"], PASS, INCONCLUSIVE),
])
def test_health_gates(statuses, primary, healthy):
    gates = by_name(checked(*g.health_gates(PLAN, health(*statuses), None)))
    assert (gates["gateway"].status, gates["gateway"].value) == (PASS, "alive, ready")
    assert gates["gateway"].reason == "gateway http://gw: alive and ready"
    assert gates["primary model"].status == primary
    assert gates["healthy models"].status == healthy
    count = statuses.count("healthy")
    assert gates["healthy models"].value == f"{count} of 5 healthy"
    assert gates["healthy models"].threshold == ">= 4 of 5"


def test_healthy_models_reasons_and_warnings():
    ok = by_name(g.health_gates(PLAN, health("healthy", "healthy", "healthy", "healthy", "down",
                                             qwen={"http_status": 500}), None))["healthy models"]
    assert ok.reason == "4 of 5 healthy >= 4"
    assert ok.warnings == ["qwen: down, HTTP 500 (a fallback model; the gate allows it)"]
    unsure = by_name(g.health_gates(PLAN, health("healthy", "healthy", "healthy", "rate-limited", "down"),
                                    None))["healthy models"]
    assert unsure.reason == "3 of 5 healthy < 4, with 1 inconclusive: kimi: rate-limited; qwen: down"
    failing = by_name(g.health_gates(PLAN, health("down", "healthy", "healthy", "healthy", "down"),
                                     None))["healthy models"]
    assert failing.reason == "3 of 5 healthy < 4: glm: down; qwen: down"


def test_a_down_primary_never_hides_among_the_warnings():
    gates = by_name(g.health_gates(PLAN, health("down", *["healthy"] * 4), None))
    assert gates["primary model"].reason == "primary glm: down" and gates["healthy models"].warnings == []


def test_without_a_health_check_every_health_gate_fails():
    gates = g.health_gates(PLAN, None, "gateway config unreadable")
    assert [(x.name, x.status, x.value, x.threshold, x.source) for x in gates] == [
        ("gateway", FAIL, "unknown", "healthy", "health check (fallbacks off)"),
        ("primary model", FAIL, "unknown", "healthy", "health check (fallbacks off)"),
        ("healthy models", FAIL, "unknown", ">= 4 of 5", "health check (fallbacks off)")]
    assert {x.reason for x in gates} == {"health check could not run: gateway config unreadable"}
    assert gates[2].threshold == ">= 4 of 5"
    off = g.health_gates(plan(gateway_healthy=False, primary_healthy=False), None, "x")
    assert [x.name for x in off] == ["healthy models"]


def test_gateway_problem_and_missing_primary_fail():
    gates = by_name(checked(*g.health_gates(PLAN, health(*["healthy"] * 5, problem="auth-error", primary=None), None)))
    assert (gates["gateway"].status, gates["gateway"].value) == (FAIL, "auth-error")
    assert gates["gateway"].reason == "gateway http://gw: auth-error (boom)"
    quiet = health("healthy", problem="not-ready")
    quiet.gateway.message = None
    assert g.health_gates(PLAN, quiet, None)[0].reason == "gateway http://gw: not-ready"
    assert gates["primary model"].reason == "no primary model found in the gateway config"
    assert [x.name for x in g.health_gates(plan(gateway_healthy=False, primary_healthy=False), health("healthy"),
                                           None)] == ["healthy models"]


@pytest.mark.parametrize(("model", "text"), [
    (ModelHealth("a", "healthy"), ""),
    (ModelHealth("a", "down", http_status=500, error_class="http-500"), "down, HTTP 500"),
    (ModelHealth("a", "down", error_class="timeout"), "down, timeout"),
    (ModelHealth("a", "down", served_by="b", error_class="fallback"), "down, fallback, served by b"),
    (ModelHealth("a", "healthy", served_by="a"), ""),
    (ModelHealth("a", "rate-limited", http_status=429, retry_after=2.5), "rate-limited, HTTP 429, retry after 2.5 s"),
])
def test_model_text(model, text):
    assert g.model_text(model) == text


# --- smoke and cost ---------------------------------------------------------------------


def smoke(*checks: tuple[str, str, str], cost: CostReport | None = None):
    return SimpleNamespace(checks=[CheckResult(model, check, status, "why" if status != "pass" else "")
                                   for model, check, status in checks], cost=cost)


def test_smoke_gate_rules():
    assert g.smoke_gate(None, "suite unreadable").status == FAIL
    assert g.smoke_gate(None, "suite unreadable").reason == "smoke could not run: suite unreadable"
    assert checked(g.smoke_gate(None, "x")).value == "not run"
    passing = checked(g.smoke_gate(smoke(("glm", "chat", "pass"), ("kimi", "chat", "pass"), ("glm", "cost", "fail"),
                                         ("kimi", "tools", "not-verifiable")), None))
    assert (passing.name, passing.status, passing.value) == ("smoke", PASS, "2 of 3 checks pass")
    assert passing.warnings == ["kimi tools: not-verifiable (why)"] and passing.reason == "smoke: 2 of 3 checks pass"
    failing = checked(g.smoke_gate(smoke(("glm", "chat", "fail"), ("kimi", "chat", "inconclusive"),
                                         ("qwen", "chat", "not-verifiable")), None))
    assert (failing.status, failing.reason) == (FAIL, "smoke failed: glm chat: fail (why)")
    assert failing.warnings == ["qwen chat: not-verifiable (why)"] and failing.value == "0 of 3 checks pass"
    unsure = checked(g.smoke_gate(smoke(("glm", "chat", "pass"), ("kimi", "chat", "inconclusive"),
                                        ("qwen", "chat", "not-verifiable")), None))
    assert (unsure.status, unsure.reason) == (INCONCLUSIVE, "smoke inconclusive: kimi chat: inconclusive (why)")
    assert unsure.warnings == ["qwen chat: not-verifiable (why)"]
    bare = SimpleNamespace(checks=[CheckResult("glm", "chat", "fail"), CheckResult("kimi", "chat", "fail", "a; b")])
    assert g.smoke_gate(bare, None).reason == "smoke failed: glm chat: fail; kimi chat: fail (a; b)"


def test_smoke_failures_of_a_fallback_the_health_gates_allow_are_warnings():
    allowed = health("healthy", "healthy", "healthy", "healthy", "down")
    report = smoke(("glm", "chat", "pass"), ("qwen", "chat", "fail"), ("glm", "fallback-drill", "inconclusive"))
    gate = g.smoke_gate(report, None, allowed, PLAN)
    assert gate.status == PASS
    assert gate.warnings == ["qwen chat: fail (why) (a fallback model the health gates allow)",
                             "glm fallback-drill: inconclusive (why) (a fallback model the health gates allow)"]
    # without enough healthy models nothing is tolerated; a primary's failure never is
    assert g.smoke_gate(report, None, health("healthy", "healthy", "healthy", "down", "down"), PLAN).status == FAIL
    primary = smoke(("glm", "chat", "fail"))
    assert g.smoke_gate(primary, None, health("down", *["healthy"] * 4), PLAN).status == FAIL
    assert g.smoke_gate(primary, None, allowed, PLAN).status == FAIL  # a fallback allowed does not excuse the primary
    assert g.smoke_gate(report, None, allowed).status == FAIL  # no plan: nothing tolerated


def costs(*models: ModelCost) -> CostReport:
    return CostReport(list(models))


def test_cost_gate_rules():
    assert checked(g.cost_gate(smoke(), "no config")).reason == "cost guard could not run: no config"
    missing = checked(g.cost_gate(None, None))
    assert (missing.name, missing.value) == ("cost", "unknown")
    assert (missing.status, missing.reason) == (
        INCONCLUSIVE, "cost guard: no gateway config to read (gateway.config in rollout.yaml)")
    free = costs(ModelCost("a", "m", "free", True, verified=True), ModelCost("b", "m", "free", True))
    gate = checked(g.cost_gate(smoke(cost=free), None))
    assert (gate.name, gate.status, gate.value, gate.reason) == ("cost", PASS, "2 free (1 price-checked)", "cost: 2 free (1 price-checked)")
    paid = costs(ModelCost("a", "m", "free", True), ModelCost("b", "m", "paid", True, reason="priced"))
    gate = checked(g.cost_gate(smoke(cost=paid), None))
    assert (gate.name, gate.status, gate.value, gate.reason) == ("cost", FAIL, "1 paid model(s)", "not free: b: priced")
    assert gate.threshold == "$0.00: free models only"


# --- catalog -----------------------------------------------------------------------------


def entry(alias: str, status: str = "ok", role: str = "fallback 1") -> ModelEntry:
    return ModelEntry(alias, f"x/{alias}:free", role, status, f"{alias} is {status}",
                      replacements=[Replacement("y/new:free", "New", 1000, "free")])


def catalog(*entries: ModelEntry, reachable: bool = True) -> CatalogReport:
    return CatalogReport([], list(entries), [{"url": "http://or/models", "reachable": reachable, "error": "refused"}],
                         primary="glm")


def test_catalog_gate_rules():
    unknown = checked(g.catalog_gate(None, PLAN))
    assert (unknown.name, unknown.status, unknown.value, unknown.reason) == (
        "catalog", INCONCLUSIVE, "unknown",
        "catalog: no gateway config (gateway.config in rollout.yaml): which models it serves is unknown")
    unread = checked(g.catalog_gate(catalog(reachable=False), PLAN))
    assert (unread.status, unread.reason) == (INCONCLUSIVE, "catalog cannot be read: http://or/models: refused")
    five = [entry(a) for a in ALIASES]
    assert g.catalog_gate(catalog(*five), PLAN).value == "5 of 5 fit"
    one_retired = catalog(*five[:4], entry("qwen", "retired"))
    gate = checked(g.catalog_gate(one_retired, PLAN))
    assert (gate.name, gate.status, gate.value, gate.reason) == ("catalog", PASS, "4 of 5 fit", "catalog: 4 of 5 fit")
    assert gate.warnings == ["retired fallback qwen (x/qwen:free): qwen is retired; free replacements: y/new:free"
                             " (replace: rollout models --replace qwen NEW)"]
    two_retired = catalog(*five[:3], entry("kimi", "retired"), entry("qwen", "retired"))
    gate = checked(g.catalog_gate(two_retired, PLAN))
    assert (gate.name, gate.status, gate.value) == ("catalog", FAIL, "3 of 5 fit")
    assert gate.reason == ("catalog: only 3 of 5 models left (< 4): kimi (x/kimi:free): kimi is retired; free replacements:"
                           " y/new:free; qwen (x/qwen:free): qwen is retired; free replacements: y/new:free")
    retired_primary = catalog(entry("glm", "retired", "primary"), *five[1:])
    assert g.catalog_gate(retired_primary, PLAN).status == FAIL
    not_free = checked(g.catalog_gate(catalog(*five[:4], entry("qwen", "not-free")), PLAN))
    assert (not_free.status, not_free.reason) == (
        FAIL, "catalog: qwen (x/qwen:free): qwen is not-free; free replacements: y/new:free")


# --- the verdict matrix --------------------------------------------------------------------


@pytest.mark.parametrize(("alias", "status", "checks", "smoke_status", "verdict"), [
    ("glm", "healthy", [], None, "pass"),
    ("glm", "healthy", ["pass"], "pass", "pass"),
    ("glm", "down", [], None, "fail"),  # the primary failing
    ("kimi", "down", [], None, "warn"),  # a fallback failing
    ("glm", "healthy", ["pass", "fail"], "fail", "fail"),
    ("glm", "healthy", ["fail", "inconclusive"], "fail", "fail"),  # the detail names both
    ("kimi", "healthy", ["fail"], "fail", "warn"),
    ("glm", "rate-limited", [], None, "inconclusive"),
    ("glm", "healthy", ["inconclusive", "pass"], "inconclusive", "inconclusive"),
    ("glm", "not-checked", [], None, "not-checked"),
    ("glm", "not-checked", ["pass"], "pass", "pass"),
    ("glm", "not-checked", ["skipped"], "skipped", "not-checked"),
    ("glm", "healthy", ["not-verifiable", "skipped"], "not-verifiable", "pass"),
])
def test_verdict_matrix_rows(alias, status, checks, smoke_status, verdict):
    report = health(*["healthy"] * 5)
    report.model(alias).status = status
    checked = smoke(*((alias, f"case{i}", s) for i, s in enumerate(checks)), (alias, "cost", "fail"))
    row = {r.alias: r for r in g.verdict_matrix(report, checked)}[alias]
    assert (row.health, row.smoke, row.verdict) == (status, smoke_status, verdict)
    failed_or_unsure = [f"case{i}: why" for i, s in enumerate(checks) if s in ("fail", "inconclusive")]
    assert row.smoke_detail == ("; ".join(failed_or_unsure) or None)


def test_verdict_matrix_roles_and_missing_reports():
    assert g.verdict_matrix(None, None) == []
    rows = g.verdict_matrix(health(*["healthy"] * 5, glm={"latency_ms": 12.5}), None)
    assert [r.role for r in rows] == ["primary", "fallback 1", "fallback 2", "fallback 3", "fallback 4"]
    assert (rows[0].latency_ms, rows[0].smoke, rows[0].verdict, rows[0].detail) == (12.5, None, "pass", "")


# --- the app's paths: the gateway's error rate against the direct path's --------------------


def paths(gw_requests: float, gw_failed: float, direct_requests: float, direct_failed: float) -> dict:
    """The app's metrics over the window: requests and failures on each path."""
    return {"problem": None, "gateway": {"requests": gw_requests, "failed": gw_failed},
            "direct": {"requests": direct_requests, "failed": direct_failed}}


VS_DIRECT = "gateway - direct <= 0.5 points (95% CI)"


@pytest.mark.parametrize(("app", "status", "value", "because"), [
    pytest.param(paths(1000, 0, 1000, 0), PASS, "gateway 0.00% (0 of 1000), direct 0.00% (0 of 1000)",
                 "difference +0.00 points, 95% CI [-0.38, +0.38]: upper bound <= 0.5", id="both clean"),
    pytest.param(paths(1, 0, 1, 0), INCONCLUSIVE, "gateway 0.00% (0 of 1), direct 0.00% (0 of 1)",
                 "difference +0.00 points, 95% CI [-79.35, +79.35]: too few requests to tell (the interval spans 0.5)",
                 id="one request a path is judged, and too few"),
    pytest.param(paths(1000, 100, 1000, 0), FAIL, "gateway 10.00% (100 of 1000), direct 0.00% (0 of 1000)",
                 "difference +10.00 points, 95% CI [+8.25, +12.02]: the gateway path fails more (lower bound > 0.5)",
                 id="the gateway fails more"),
    pytest.param(paths(40, 1, 400, 2), INCONCLUSIVE, "gateway 2.50% (1 of 40), direct 0.50% (2 of 400)",
                 "difference +2.00 points, 95% CI [-0.44, +12.39]: too few requests to tell (the interval spans 0.5)",
                 id="too few to tell"),
    pytest.param(paths(9.6, 12, 99.7, 0.2), FAIL, "gateway 100.00% (10 of 10), direct 0.00% (0 of 100)",
                 "difference +100.00 points, 95% CI [+72.00, +100.00]: the gateway path fails more (lower bound > 0.5)",
                 id="counts rounded, failures at most the requests"),
])
def test_error_rate_vs_direct_compares_the_paths_on_newcombes_interval(app, status, value, because):
    gate = g.error_rate_vs_direct_gate(plan(error_rate_vs_direct_margin=0.005), app, "the app's metrics")
    assert (gate.name, gate.status, gate.value, gate.threshold, gate.source) == (
        "error rate vs direct", status, value, VS_DIRECT, "the app's metrics")
    assert gate.reason == f"error rate vs direct: {value}; {because}"


def test_error_rate_vs_direct_states_its_figures():
    gate = g.error_rate_vs_direct_gate(plan(error_rate_vs_direct_margin=0.005), paths(40, 1, 400, 2), "app")
    low, high = newcombe_difference(1, 40, 2, 400)
    assert gate.detail == {"gateway": {"requests": 40, "failed": 1, "rate": 0.025},
                           "direct": {"requests": 400, "failed": 2, "rate": 0.005}, "difference": 0.02,
                           "ci95": [low, high], "margin": 0.005, "method": "Newcombe hybrid score (method 10)"}


def test_error_rate_vs_direct_bounds_at_the_margin():
    low, high = newcombe_difference(1, 40, 2, 400)
    at_upper = g.error_rate_vs_direct_gate(plan(error_rate_vs_direct_margin=high), paths(40, 1, 400, 2), "app")
    assert at_upper.status == PASS  # the upper bound at the margin is within it
    low, high = newcombe_difference(6, 200, 2, 400)
    at_lower = g.error_rate_vs_direct_gate(plan(error_rate_vs_direct_margin=low), paths(200, 6, 400, 2), "app")
    assert at_lower.status == INCONCLUSIVE  # the lower bound at the margin is not beyond it
    no_margin = g.error_rate_vs_direct_gate(PLAN, paths(1000, 0, 1000, 0), "app")
    assert (no_margin.threshold, no_margin.status) == ("gateway - direct <= 0 points (95% CI)", INCONCLUSIVE)


@pytest.mark.parametrize(("app", "reason"), [
    ({"problem": "Prometheus has no series of the app's llm_requests_total"},
     "error rate vs direct: Prometheus has no series of the app's llm_requests_total"),
    (paths(0, 0, 100, 0), "error rate vs direct: no app requests on the gateway path in the window"),
    (paths(0.4, 0, 100, 0), "error rate vs direct: no app requests on the gateway path in the window"),
    (paths(100, 0, 0, 0), "error rate vs direct: no app requests on the direct path in the window"),
    (paths(1, 0, 0, 0), "error rate vs direct: no app requests on the direct path in the window"),
])
def test_error_rate_vs_direct_without_both_paths_is_unknown(app, reason):
    gate = g.error_rate_vs_direct_gate(plan(error_rate_vs_direct_margin=0.005), app, "app")
    assert (gate.name, gate.status, gate.value, gate.reason, gate.threshold, gate.source) == (
        "error rate vs direct", INCONCLUSIVE, "unknown", reason, VS_DIRECT, "app")
    assert gate.detail is None
    assert g.error_rate_vs_direct_gate(PLAN, None, "app").status == INCONCLUSIVE


def durations(**buckets: float) -> dict:
    return {"duration_buckets": {le.replace("_", "."): n for le, n in buckets.items()}}


@pytest.mark.parametrize(("app", "latency"), [
    (None, None),
    ({"problem": "no series"}, None),
    ({"problem": None, "gateway": durations(**{"0_1": 100, "0_2": 200, "+Inf": 200}),
      "direct": durations(**{"0_05": 200, "+Inf": 200})},
     {"gateway_p50_ms": 100.0, "direct_p50_ms": 25.0, "added_p50_ms": 75.0,
      "gateway_p95_ms": 190.0, "direct_p95_ms": 47.5, "added_p95_ms": 142.5}),
    ({"problem": None, "gateway": durations(**{"0_1": 100, "+Inf": 100}), "direct": durations()},
     {"gateway_p50_ms": 50.0, "direct_p50_ms": None, "added_p50_ms": None,
      "gateway_p95_ms": 95.0, "direct_p95_ms": None, "added_p95_ms": None}),
    ({"problem": None, "gateway": durations(), "direct": durations(**{"0_1": 100, "+Inf": 100})},
     {"gateway_p50_ms": None, "direct_p50_ms": 50.0, "added_p50_ms": None,
      "gateway_p95_ms": None, "direct_p95_ms": 95.0, "added_p95_ms": None}),
])
def test_app_latency_is_the_gateway_paths_quantiles_minus_the_direct_paths(app, latency):
    found = g.app_latency(app)
    assert found == (latency if latency is None else pytest.approx(latency))


# --- custom gates ---------------------------------------------------------------------------


def custom(pass_if: str | None = None, fail_if: str | None = None) -> CustomGate:
    """A custom gate named "share" with conditions written as in a plan ("< 0.05")."""
    def condition(text: str | None) -> Condition | None:
        if text is None:
            return None
        op, bound = text.split()
        return Condition(op, float(bound))
    return CustomGate("share", "q", condition(pass_if), condition(fail_if))


@pytest.mark.parametrize(("gate", "found", "status", "value", "reason"), [
    (custom("< 0.05", ">= 0.2"), {"value": 0.01}, PASS, "0.01", "share: 0.01 < 0.05"),
    (custom("< 0.05", ">= 0.2"), {"value": 0.2}, FAIL, "0.2", "share: 0.2 >= 0.2"),
    (custom("< 0.05", ">= 0.2"), {"value": 0.1}, INCONCLUSIVE, "0.1",
     "share: 0.1 is neither < 0.05 (pass) nor >= 0.2 (fail)"),
    (custom("< 0.5", "> 0.1"), {"value": 0.3}, FAIL, "0.3", "share: 0.3 > 0.1"),  # both hold: fail wins
    (custom(None, ">= 0.2"), {"value": 0.1}, PASS, "0.1", "share: 0.1, not >= 0.2"),
    (custom(None, ">= 0.2"), {"value": 0.3}, FAIL, "0.3", "share: 0.3 >= 0.2"),
    (custom("< 0.05", None), {"value": 0.1}, FAIL, "0.1", "share: 0.1, not < 0.05"),
    (custom("< 0.05", None), {"value": 0.0}, PASS, "0", "share: 0 < 0.05"),
    (custom("< 0.05", ">= 0.2"), None, INCONCLUSIVE, "unknown",
     "share: the snapshot holds no result for it (a gate added after the evidence was gathered)"),
    (custom("< 0.05", ">= 0.2"), {"value": None, "error": "the query returned no series"}, INCONCLUSIVE, "unknown",
     "share: the query returned no series"),
    (custom("< 0.05", ">= 0.2"), {"value": math.nan}, INCONCLUSIVE, "unknown", "share: the query returned NaN"),
])
def test_custom_gate_rules(gate, found, status, value, reason):
    result = g.custom_gate(gate, found, "PromQL")
    assert (result.name, result.status, result.value, result.reason, result.source) == (
        "share", status, value, reason, "PromQL")


@pytest.mark.parametrize(("gate", "threshold"), [
    (custom("< 0.05", ">= 0.2"), "pass < 0.05, fail >= 0.2"),
    (custom("< 0.05"), "pass < 0.05"),
    (custom(None, ">= 0.2"), "fail >= 0.2"),
])
def test_custom_gate_threshold_names_its_conditions(gate, threshold):
    for found in ({"value": 0.0}, {"value": 0.1}, {"value": 0.3}, None):  # each outcome states it
        assert g.custom_gate(gate, found, "PromQL").threshold == threshold


# --- quota ----------------------------------------------------------------------------------

RESET = datetime(2026, 3, 6, 0, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(("quota", "statuses", "status", "value", "reason"), [
    ({"used": 12, "limit": 1000}, ["healthy"] * 5, PASS, "rollout used 12 today",
     "quota: not exhausted (rollout used 12 today)"),
    ({"used": 0}, ["healthy"] * 5, PASS, "rollout used 0 today", "quota: not exhausted (rollout used 0 today)"),
    ({}, ["healthy"] * 5, PASS, "ledger unreadable", "quota: not exhausted (ledger unreadable)"),
    ({"used": 3}, None, PASS, "rollout used 3 today", "quota: not exhausted (rollout used 3 today)"),
    ({"used": 3, "limit": 1000, "next_reset": RESET + 900}, ["healthy", "quota-exhausted", "healthy", "healthy",
                                                            "healthy"],
     INCONCLUSIVE, "0 of 1000 left", "OpenRouter free quota exhausted: 0 of 1000 left today, resets at 00:15 UTC"),
    ({"limit": 1000, "next_reset": RESET, "account": {"limit": 50, "reset": (RESET + 1800) * 1000}},
     ["quota-exhausted"] * 5, INCONCLUSIVE, "0 of 50 left",
     "OpenRouter free quota exhausted: 0 of 50 left today, resets at 00:30 UTC"),
    ({}, ["quota-exhausted"], INCONCLUSIVE, "0 of 0 left",
     "OpenRouter free quota exhausted: 0 of 0 left today, resets at 00:00 UTC"),
])
def test_an_exhausted_free_quota_holds(quota, statuses, status, value, reason):
    gate = g.quota_gate(quota, None if statuses is None else health(*statuses))
    assert (gate.name, gate.status, gate.value, gate.reason) == ("quota", status, value, reason)
    assert (gate.threshold, gate.source) == ("the account has free requests left today", "health check + quota ledger")


def test_an_empty_prometheus_window_names_when_it_began():
    empty = {"label": "Prometheus http://p", "start": NOW - 2 * H, "requests": 0.0, "failed": 0.0, "fallbacks": 0.0,
             "overhead_buckets": {}}
    why = "no requests through the gateway in the window (since 2026-03-05T10:00:00Z)"
    assert [(x.status, x.value, x.reason) for x in g.window_gates(PLAN, empty)] == [(INCONCLUSIVE, "0 requests", why)] * 2
    gate = g.fallback_gate(PLAN, empty)
    assert (gate.status, gate.value, gate.reason, gate.source) == (INCONCLUSIVE, "0 requests", f"fallback rate: {why}",
                                                                   "Prometheus http://p")


def test_several_findings_are_listed_in_one_reason():
    unsure = g.smoke_gate(smoke(("glm", "chat", "inconclusive"), ("kimi", "chat", "inconclusive")), None)
    assert unsure.reason == "smoke inconclusive: glm chat: inconclusive (why); kimi chat: inconclusive (why)"
    paid = costs(ModelCost("a", "m", "paid", True, reason="priced"), ModelCost("b", "m", "paid", True, reason="$1/M"))
    assert g.cost_gate(smoke(cost=paid), None).reason == "not free: a: priced; b: $1/M"
    two = CatalogReport([], [entry("glm")], [{"url": "http://a/models", "reachable": False, "error": "refused"},
                                             {"url": "http://b/models", "reachable": False, "error": "timed out"}])
    unread = g.catalog_gate(two, PLAN)
    assert (unread.value, unread.reason) == ("unknown",
                                             "catalog cannot be read: http://a/models: refused; http://b/models: timed out")


def test_every_failing_model_is_named_with_its_free_replacements():
    two = replace(entry("kimi", "not-free"), replacements=[Replacement("y/a:free", "A", 1000, "free"),
                                                          Replacement("y/b:free", "B", 1000, "free")])
    none = replace(entry("qwen", "not-free"), replacements=[])
    gate = g.catalog_gate(catalog(*[entry(a) for a in ALIASES[:3]], two, none), PLAN)
    assert (gate.status, gate.reason) == (FAIL, "catalog: kimi (x/kimi:free): kimi is not-free; free replacements:"
                                                " y/a:free, y/b:free; qwen (x/qwen:free): qwen is not-free;"
                                                " free replacements: none found")


def test_a_gateway_serving_no_models_fails_both_model_gates():
    gates = g.health_gates(PLAN, health(primary=None), None)
    assert [(x.name, x.status, x.value, x.threshold, x.source, x.reason) for x in gates[1:]] == [
        ("primary model", FAIL, "unknown", "healthy", "health check (fallbacks off)", "the gateway serves no models"),
        ("healthy models", FAIL, "0 of 0 healthy", ">= 4 of 0", "health check (fallbacks off)",
         "the gateway serves no models")]
    assert (gates[0].name, gates[0].status) == ("gateway", PASS)


def test_a_window_without_a_drill_count_subtracts_none():
    window = {"label": "Prometheus http://p", "start": NOW - H, "requests": 100.0, "failed": 0.0, "fallbacks": 3.0,
              "overhead_buckets": {}}  # a replayed snapshot written by hand
    assert g.fallback_gate(PLAN, window).value == "3.00% (3 of 100)"


# --- a swarm service's replicas (gates.min_ready_replicas) ---------------------------------------------


def _replica(slot: int, state: str = "running", live: bool = True, ready: bool = True, error: str | None = None,
             desired_state: str = "running") -> dict:
    probe = {"ok": live, "status": 200 if live else None, "latency_ms": 1.0, "error": None if live else "refused"}
    readiness = {"ok": ready, "status": 200 if ready else 503, "latency_ms": 1.0, "error": None}
    return {"slot": slot, "task_id": f"task{slot}", "state": state, "desired_state": desired_state, "node": "vm",
            "container_id": f"c{slot}" if state == "running" else None, "error": error, "since": None, "restarts": 0,
            "url": f"http://127.0.0.1:{4000 + slot}", "liveliness": probe, "readiness": readiness,
            "healthy": state == "running" and live and ready}


def _replicas(*listed: dict, desired: int = 2, error: str | None = None) -> dict:
    return {"service": "gw", "desired": desired, "status": "running", "replicas": list(listed), "error": error}


MIN_1 = replace(PLAN, gates=replace(PLAN.gates, min_ready_replicas=1))
MIN_3 = replace(PLAN, gates=replace(PLAN.gates, min_ready_replicas=3))


@pytest.mark.parametrize(("plan", "replicas", "status", "value", "reason"), [
    (PLAN, _replicas(_replica(1), _replica(2)), PASS, "2 of 2 ready", "replicas: 2 of 2 ready (>= 2)"),
    (PLAN, _replicas(_replica(1), _replica(2, live=False)), FAIL, "1 of 2 ready",
     "replicas: 1 of 2 ready < 2: replica 2 (task task2, container c2, http://127.0.0.1:4002): liveliness refused"),
    (PLAN, _replicas(_replica(1), _replica(2, ready=False)), FAIL, "1 of 2 ready",
     "replica 2 (task task2, container c2, http://127.0.0.1:4002): readiness HTTP 503"),
    # the swarm replacing a killed replica: on its way, so HOLD, not NO-GO
    (PLAN, _replicas(_replica(1), _replica(2, "starting")), INCONCLUSIVE, "1 of 2 ready",
     "replica 2 (task task2, http://127.0.0.1:4002): task starting: the swarm is starting it "
     "(wait for the swarm's replacement)"),
    (PLAN, _replicas(_replica(1), _replica(2, "preparing")), INCONCLUSIVE, "1 of 2 ready", "task preparing"),
    # the replacement while the restart delay runs: desired `ready`, on its way all the same
    (PLAN, _replicas(_replica(1), _replica(2, "pending", desired_state="ready")), INCONCLUSIVE, "1 of 2 ready",
     "task pending: the swarm is starting it"),
    (PLAN, _replicas(_replica(1), _replica(2, "pending", desired_state="shutdown")), FAIL, "1 of 2 ready",
     "task pending"),
    # failed and not yet replaced: NO-GO, the engine's reason named
    (PLAN, _replicas(_replica(1), _replica(2, "failed", error="task: non-zero exit (137)", desired_state="shutdown")),
     FAIL, "1 of 2 ready", "replica 2 (task task2, http://127.0.0.1:4002): task failed (task: non-zero exit (137))"),
    # a starting replica does not make up for a broken one when both are needed
    (PLAN, _replicas(_replica(1, live=False), _replica(2, "starting")), FAIL, "0 of 2 ready",
     "replicas: 0 of 2 ready < 2: replica 1"),
    (MIN_1, _replicas(_replica(1), _replica(2, live=False)), PASS, "1 of 2 ready", "replicas: 1 of 2 ready (>= 1)"),
    (MIN_1, _replicas(_replica(1, "starting"), _replica(2, "failed")), INCONCLUSIVE, "0 of 2 ready", "< 1"),
    (MIN_3, _replicas(_replica(1), _replica(2)), FAIL, "2 of 2 ready",
     "replicas: service gw desires 2, fewer than the 3 the plan requires (gates.min_ready_replicas)"),
    (PLAN, _replicas(_replica(1)), FAIL, "1 of 2 ready", "replicas: 1 of 2 ready < 2: "),  # a slot with no task
    (PLAN, _replicas(desired=0), FAIL, "0 of 0 ready", "replicas: service gw is scaled to 0"),
    (PLAN, _replicas(error="no swarm service named 'gw'"), INCONCLUSIVE, "unknown",
     "replicas of gw cannot be read: no swarm service named 'gw'"),
])
def test_replicas_gate_counts_ready_replicas(plan, replicas, status, value, reason):
    gate = g.replicas_gate(plan, replicas)
    assert (gate.status, gate.value) == (status, value)
    assert reason in gate.reason
    assert gate.threshold == (">= all desired ready" if plan.gates.min_ready_replicas is None
                              else f">= {plan.gates.min_ready_replicas} ready")


def test_replicas_the_gate_allows_are_warnings():
    gate = g.replicas_gate(MIN_1, _replicas(_replica(1), _replica(2, "starting")))
    assert gate.status == PASS
    assert gate.warnings == ["replica 2 (task task2, http://127.0.0.1:4002): task starting: the swarm is starting it "
                             "(the gate allows it)"]


def test_the_replicas_gate_judges_only_a_swarm_and_decides_the_verdict():
    plan = replace(PLAN, gates=replace(PLAN.gates, smoke=False, cost_free_only=False, catalog=False))
    models = [ModelHealth(a, "healthy") for a in ALIASES]
    plain = HealthReport(GatewayState("http://gw"), models, primary="glm")
    snap = snapshot.Snapshot(NOW, "report", Stage(0, False, 0, False, True), health=plain)
    assert judge(snap, plan).verdict == Verdict.GO
    assert "replicas" not in [gate.name for gate in judge(snap, plan).gates]
    snap.health = replace(plain, replicas=_replicas(_replica(1), _replica(2, "starting")))
    decision = judge(snap, plan)
    assert decision.verdict == Verdict.HOLD and any("replica 2" in r for r in decision.reasons)
    snap.health = replace(plain, replicas=_replicas(_replica(1), _replica(2, live=False)))
    assert judge(snap, plan).verdict == Verdict.NO_GO
    assert judge(snap, replace(plan, gates=replace(plan.gates, min_ready_replicas=1))).verdict == Verdict.GO
