"""Gates and verdicts: may the rollout leave its current stage?

GO when every gate passes; HOLD when none fails but one is inconclusive (soak
not elapsed, a rate-limited model the decision depends on, no metrics in the
window); NO-GO when any gate fails. Every gate states its value, its threshold,
its source, and a reason that reads as value versus condition.

Each rule here is a pure function of gathered evidence (rollout/snapshot.py)
and the plan; rollout/judge.py applies them all to one snapshot.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from rollout_cli.checks.catalog import CatalogReport
from rollout_cli.checks.classify import QUOTA_EXHAUSTED
from rollout_cli.checks.health import HealthReport
from rollout_cli.checks.preflight import NO_MODELS
from rollout_cli.checks.smoke import DRILL
from rollout_cli.core.audit import StageChange
from rollout_cli.core.playbooks import format_duration
from rollout_cli.core.quota import clock_text
from rollout_cli.core.stage import Stage
from rollout_cli.errors import ExitCode
from rollout_cli.gateway.control import count_replicas
from rollout_cli.rollout import metrics
from rollout_cli.rollout.intervals import newcombe_difference
from rollout_cli.rollout.plan import CustomGate, StagePlan

PASS, FAIL, INCONCLUSIVE, SKIPPED = "pass", "fail", "inconclusive", "skipped"


class Verdict(StrEnum):
    GO = "GO"
    HOLD = "HOLD"
    NO_GO = "NO-GO"

    @property
    def exit_code(self) -> ExitCode:
        return {Verdict.GO: ExitCode.OK, Verdict.HOLD: ExitCode.HOLD, Verdict.NO_GO: ExitCode.FAILED}[self]


@dataclass
class Gate:
    name: str
    status: str  # pass | fail | inconclusive | skipped
    value: str
    threshold: str
    source: str
    reason: str
    warnings: list[str] = field(default_factory=list)
    detail: dict[str, Any] | None = None  # the figures behind it (rates, counts, interval, shared failure)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ModelRow:
    """One row of the verdict matrix."""

    alias: str
    role: str  # primary | fallback N
    health: str  # healthy | rate-limited | down | broken | auth-error | unknown
    detail: str
    latency_ms: float | None
    smoke: str | None  # pass | fail | inconclusive | not-verifiable | skipped (none sent) | None (not run)
    smoke_detail: str | None
    verdict: str  # pass | warn | fail | inconclusive | not-checked

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def combine(gates: list[Gate]) -> Verdict:
    statuses = {g.status for g in gates}
    if FAIL in statuses:
        return Verdict.NO_GO
    if INCONCLUSIVE in statuses:
        return Verdict.HOLD
    return Verdict.GO


# --- the soak window ------------------------------------------------------------


def soak_gate(plan: StagePlan, stage: Stage, entered: StageChange | None, skip_reason: str | None, now: float) -> Gate:
    need = plan.soak_for(stage.percentage)
    threshold = f">= {format_duration(need)}"
    source = "audit trail"
    if skip_reason:
        return Gate("soak", SKIPPED, "skipped", threshold, source, f"soak skipped: {skip_reason}")
    if entered is None:
        return Gate(
            "soak", INCONCLUSIVE, "unknown", threshold, source,
            f"no audit record of entering {stage.percentage}%; soak cannot be measured "
            "(advance with --skip-soak --reason TEXT if you know it has soaked)",
        )
    elapsed = now - entered.timestamp
    value = f"{format_duration(elapsed)} of {format_duration(need)}"
    if elapsed < need:
        return Gate("soak", INCONCLUSIVE, value, threshold, source,
                    f"soak {value} at {stage.percentage}% (since {entered.time})")
    return Gate("soak", PASS, value, threshold, source, f"soak {value}: elapsed")


def agreement_gate(stage: Stage) -> Gate:
    source = "env + flags files"
    value = f"env {stage.env_effective}%" + (
        f", flags {stage.flags_effective}%" if stage.flags_effective is not None else ", no flags file"
    )
    if stage.drift:
        return Gate("env/flags agree", FAIL, value, "equal", source, f"drift: {stage.drift}")
    return Gate("env/flags agree", PASS, value, "equal", source, f"{value}: agree")


def _window_empty(window: dict[str, Any]) -> str | None:
    """Why the window cannot be judged at all, or None."""
    if window.get("problem"):
        return str(window["problem"])
    if window["requests"] <= 0:
        since = window.get("since") or format_time(window["start"])
        return f"no requests through the gateway in the window (since {since})"
    return None


def window_gates(plan: StagePlan, window: dict[str, Any]) -> list[Gate]:
    """Error rate and added latency over the soak window, from the gateway's counters."""
    g = plan.gates
    rate_t = f"<= {g.max_error_rate * 100:g}%"
    lat_t = f"p95 <= {g.max_added_latency_p95_ms:g} ms"
    source = window["label"]
    why = _window_empty(window)
    if why:
        value = "0 requests" if not window.get("problem") else "unknown"
        return [Gate("error rate", INCONCLUSIVE, value, rate_t, source, why),
                Gate("added latency", INCONCLUSIVE, value, lat_t, source, why)]
    requests, failed = window["requests"], window["failed"]
    few = requests < g.min_requests
    rate = failed / requests
    value = f"{rate * 100:.2f}% ({failed:.0f} of {requests:.0f})"
    # With few requests only a clear breach is conclusive: the failures alone exceed
    # the limit even if the missing requests had all succeeded.
    if failed / max(requests, g.min_requests) > g.max_error_rate:
        error_gate = Gate("error rate", FAIL, value, rate_t, source,
                          f"error rate {value} > {g.max_error_rate * 100:g}%")
    elif few:
        error_gate = Gate("error rate", INCONCLUSIVE, value, rate_t, source,
                          f"only {requests:.0f} requests in the window (< {g.min_requests}): too few to judge the error rate")
    else:
        error_gate = Gate("error rate", PASS, value, rate_t, source,
                          f"error rate {value} <= {g.max_error_rate * 100:g}%")
    p95, observed = added_latency(window)
    if p95 is None:
        latency_gate = Gate("added latency", INCONCLUSIVE, "unknown", lat_t, source,
                            "no litellm_overhead_latency_metric observations in the window")
    elif observed < g.min_requests:
        latency_gate = Gate("added latency", INCONCLUSIVE, f"p95 {p95:.1f} ms", lat_t, source,
                            f"only {observed:g} latency observations in the window (< {g.min_requests}): too few for a p95")
    else:
        over = p95 > g.max_added_latency_p95_ms
        latency_gate = Gate(
            "added latency", FAIL if over else PASS, f"p95 {p95:.1f} ms", lat_t, source,
            f"p95 overhead {p95:.1f} ms {'>' if over else '<='} {g.max_added_latency_p95_ms:g} ms",
        )
    return [error_gate, latency_gate]


def added_latency(window: dict[str, Any]) -> tuple[float | None, float]:
    """The window's p95 of the latency the gateway adds (ms), and how many requests it is over.

    The signal is LiteLLM's litellm_overhead_latency_metric: per request, its
    total time from receipt (the top of its auth, so auth and queueing count)
    to the end of processing, minus the time the upstream call took. It is the
    "total minus upstream" difference taken per request before bucketing, so
    its p95 is a real p95, unlike p95(total) - p95(upstream), which against
    upstream latencies of seconds is lost in buckets half a second wide. It
    costs no request. It leaves out the HTTP server's own parsing and writing
    around LiteLLM's handler, which benchmarks/gateway.py measures client-side
    (docs/PLAYBOOKS.md, "Added latency").
    """
    buckets = window["overhead_buckets"]
    p95 = metrics.quantile(buckets, 0.95)
    observed = sum(v for le, v in buckets.items() if le == "+Inf")
    return (None if p95 is None else p95 * 1000), observed


def format_time(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


# --- health, smoke and cost -------------------------------------------------------


def model_text(m: Any) -> str:
    parts = [] if m.ok else [m.status]
    if m.http_status:
        parts.append(f"HTTP {m.http_status}")
    elif m.error_class:
        parts.append(m.error_class)
    if m.served_by and m.served_by != m.alias:
        parts.append(f"served by {m.served_by}")
    if m.retry_after:
        parts.append(f"retry after {m.retry_after:g} s")
    return ", ".join(parts)


def health_gates(plan: StagePlan, health: Any, error: str | None) -> list[Gate]:
    g = plan.gates
    source = "health check (fallbacks off)"
    gates: list[Gate] = []
    if health is None:
        why = f"health check could not run: {error}"
        names = [n for n, on in (("gateway", g.gateway_healthy), ("primary model", g.primary_healthy)) if on]
        return [Gate(n, FAIL, "unknown", "healthy", source, why) for n in names] + [
            Gate("healthy models", FAIL, "unknown", f">= {g.min_healthy_models} of 5", source, why)
        ]
    gw = health.gateway
    if g.gateway_healthy:
        if gw.problem:
            gates.append(Gate("gateway", FAIL, gw.problem, "alive, ready, key accepted", "/health/liveliness, /readiness",
                              f"gateway {gw.url}: {gw.problem}" + (f" ({gw.message})" if gw.message else ""),
                              list(gw.warnings)))
        else:
            gates.append(Gate("gateway", PASS, "alive, ready", "alive, ready, key accepted",
                              "/health/liveliness, /readiness", f"gateway {gw.url}: alive and ready", list(gw.warnings)))
    primary = health.primary
    pm = health.model(primary) if primary else None
    if g.primary_healthy:
        if pm is None:
            why = NO_MODELS if health.no_models else "no primary model found in the gateway config"
            gates.append(Gate("primary model", FAIL, "unknown", "healthy", source, why))
        else:
            value = model_text(pm)
            status = PASS if pm.ok else INCONCLUSIVE if pm.inconclusive else FAIL
            gates.append(Gate("primary model", status, value, "healthy", source, f"primary {primary}: {value}"))
    total = len(health.models)
    healthy = health.healthy_count
    unsure = sum(1 for m in health.models if m.inconclusive)
    value = f"{healthy} of {total} healthy"
    threshold = f">= {g.min_healthy_models} of {total}"
    bad = [f"{m.alias}: {model_text(m)}" for m in health.models if not m.ok]
    if health.no_models:
        gates.append(Gate("healthy models", FAIL, value, threshold, source, NO_MODELS))
    elif healthy >= g.min_healthy_models:
        warnings = [f"{line} (a fallback model; the gate allows it)" for line in bad if not line.startswith(f"{primary}:")]
        gates.append(Gate("healthy models", PASS, value, threshold, source, f"{value} >= {g.min_healthy_models}", warnings))
    elif healthy + unsure >= g.min_healthy_models:
        gates.append(Gate("healthy models", INCONCLUSIVE, value, threshold, source,
                          f"{value} < {g.min_healthy_models}, with {unsure} inconclusive: " + "; ".join(bad)))
    else:
        gates.append(Gate("healthy models", FAIL, value, threshold, source,
                          f"{value} < {g.min_healthy_models}: " + "; ".join(bad)))
    return gates


def replicas_gate(plan: StagePlan, replicas: dict[str, Any]) -> Gate:
    """A swarm service's replicas: `gates.min_ready_replicas` of them (default all) live and ready, each
    probed at its own port; short only of replicas the swarm is starting is HOLD (gateway/control.py)."""
    count = count_replicas(replicas, plan.gates.min_ready_replicas)
    return Gate("replicas", count.status, count.value, count.threshold,
                "swarm tasks + each replica's /health/liveliness, /readiness", count.reason, count.warnings)


def _tolerated(health: Any, plan: StagePlan) -> set[str]:
    """Fallback models the health gates already judged (and allowed): their smoke failures are warnings."""
    if health is None or health.healthy_count < plan.gates.min_healthy_models:
        return set()
    return {m.alias for m in health.models if not m.ok and m.alias != health.primary}


def smoke_gate(smoke: Any, error: str | None, health: Any = None, plan: StagePlan | None = None) -> Gate:
    source = "smoke suite + fallback drill"
    if smoke is None:
        return Gate("smoke", FAIL, "not run", "passes", source, f"smoke could not run: {error}")
    tolerated = _tolerated(health, plan) if plan else set()
    fails, unsure, warnings = [], [], []
    for c in smoke.checks:
        if c.check == "cost":
            continue
        line = f"{c.model} {c.check}: {c.status}" + (f" ({c.detail})" if c.detail else "")
        if c.status == "not-verifiable":
            warnings.append(line)
        elif c.status in ("fail", "inconclusive") and (c.model in tolerated or (c.check == DRILL and tolerated)):
            warnings.append(line + " (a fallback model the health gates allow)")
        elif c.status == "fail":
            fails.append(line)
        elif c.status == "inconclusive":
            unsure.append(line)
    counted = [c for c in smoke.checks if c.check != "cost"]
    passed = sum(1 for c in counted if c.status == "pass")
    value = f"{passed} of {len(counted)} checks pass"
    if fails:
        return Gate("smoke", FAIL, value, "passes", source, "smoke failed: " + "; ".join(fails), warnings)
    if unsure:
        return Gate("smoke", INCONCLUSIVE, value, "passes", source, "smoke inconclusive: " + "; ".join(unsure), warnings)
    return Gate("smoke", PASS, value, "passes", source, f"smoke: {value}", warnings)


def cost_gate(smoke: Any, error: str | None) -> Gate:
    source = "gateway config + /models pricing"
    cost = getattr(smoke, "cost", None)
    if cost is None:
        why = f"cost guard could not run: {error}" if error else "cost guard: no gateway config to read (gateway.config in rollout.yaml)"
        return Gate("cost", INCONCLUSIVE, "unknown", "$0.00: free models only", source, why)
    if not cost.ok:
        paid = [f"{m.alias}: {m.reason}" for m in cost.models if m.status != "free"]
        return Gate("cost", FAIL, f"{len(paid)} paid model(s)", "$0.00: free models only", source,
                    "not free: " + "; ".join(paid))
    verified = sum(1 for m in cost.models if m.verified)
    value = f"{len(cost.models)} free ({verified} price-checked)"
    return Gate("cost", PASS, value, "$0.00: free models only", source, f"cost: {value}")


def catalog_gate(catalog: CatalogReport | None, plan: StagePlan) -> Gate:
    """Every configured model still listed, free, and capable of `app.requires`, per OpenRouter's /models.

    A retired fallback is a warning (with its replacements) while enough models
    are left; a retired primary, a priced model or a missing capability fails.
    """
    source = "OpenRouter /api/v1/models"
    threshold = "listed, free, supports app.requires"
    if catalog is None:
        why = "no gateway config (gateway.config in rollout.yaml): which models it serves is unknown"
        return Gate("catalog", INCONCLUSIVE, "unknown", threshold, source, f"catalog: {why}")
    unreached = [c for c in catalog.catalogs if not c["reachable"]]
    if unreached:
        why = "; ".join(f"{c['url']}: {c['error']}" for c in unreached)
        return Gate("catalog", INCONCLUSIVE, "unknown", threshold, source, f"catalog cannot be read: {why}")
    def offer(m: Any) -> str:
        names = ", ".join(r.id for r in m.replacements) or "none found"
        return f"{m.alias} ({m.model}): {m.reason}; free replacements: {names}"
    total = len(catalog.models)
    retired_fallbacks = [m for m in catalog.failing if m.status == "retired" and m.alias != catalog.primary]
    hard = [m for m in catalog.failing if m not in retired_fallbacks]
    left = total - len(catalog.failing)
    value = f"{left} of {total} fit"
    if hard:
        return Gate("catalog", FAIL, value, threshold, source, "catalog: " + "; ".join(offer(m) for m in hard))
    if retired_fallbacks and left < plan.gates.min_healthy_models:
        return Gate("catalog", FAIL, value, threshold, source,
                    f"catalog: only {left} of {total} models left (< {plan.gates.min_healthy_models}): "
                    + "; ".join(offer(m) for m in retired_fallbacks))
    warnings = [f"retired fallback {offer(m)} (replace: rollout models --replace {m.alias} NEW)"
                for m in retired_fallbacks]
    return Gate("catalog", PASS, value, threshold, source, f"catalog: {value}", warnings)


def quota_gate(quota: dict[str, Any], health: Any) -> Gate:
    """The account's free quota: exhausted is HOLD (it resets at 00:00 UTC), never a model failure."""
    source = "health check + quota ledger"
    account = quota.get("account") or {}
    threshold = "the account has free requests left today"
    exhausted = [m.alias for m in (health.models if health else []) if m.status == QUOTA_EXHAUSTED]
    if exhausted:
        limit = int(account.get("limit") or quota.get("limit") or 0)
        reset = float(account["reset"]) / 1000 if account.get("reset") else float(quota.get("next_reset") or 0)
        value = f"0 of {limit} left"
        return Gate("quota", INCONCLUSIVE, value, threshold, source,
                    f"OpenRouter free quota exhausted: 0 of {limit} left today, resets at {clock_text(reset)}")
    used = quota.get("used")
    mine = f"rollout used {used} today" if used is not None else "ledger unreadable"
    return Gate("quota", PASS, mine, threshold, source, f"quota: not exhausted ({mine})")


def fallback_threshold(plan: StagePlan) -> str:
    return f"<= {plan.gates.max_fallback_rate * 100:g}%"


def fallback_gate(plan: StagePlan, window: dict[str, Any]) -> Gate:
    """Share of app requests a fallback served over the soak window: a dead primary hides behind its fallbacks.

    From litellm_deployment_successful_fallbacks_total + failed_fallbacks_total,
    less the fallbacks of the drills rollout itself forced (their own exception_class,
    metrics.DRILL_CLASS; a snapshot saved before that label was read carries the
    quota ledger's count of drills, `drills`, instead).
    """
    g = plan.gates
    threshold = fallback_threshold(plan)
    source = window["label"].replace("/metrics/", "/metrics/ fallback counters")
    why = _window_empty(window)
    if why:
        value = "unknown" if window.get("problem") else "0 requests"
        return Gate("fallback rate", INCONCLUSIVE, value, threshold, source, f"fallback rate: {why}")
    fell = max(window["fallbacks"] - window.get("drill_fallbacks", window.get("drills", 0)), 0.0)
    requests = window["requests"]
    rate = fell / requests
    value = f"{rate * 100:.2f}% ({fell:.0f} of {requests:.0f})"
    if fell / max(requests, g.min_requests) > g.max_fallback_rate:
        return Gate("fallback rate", FAIL, value, threshold, source,
                    f"fallback rate {value} > {g.max_fallback_rate * 100:g}%: a model behind the fallbacks is failing")
    if requests < g.min_requests:
        return Gate("fallback rate", INCONCLUSIVE, value, threshold, source,
                    f"only {requests:.0f} requests in the window (< {g.min_requests}): too few to judge the fallback rate")
    return Gate("fallback rate", PASS, value, threshold, source,
                f"fallback rate {value} <= {g.max_fallback_rate * 100:g}%")


def verdict_matrix(health: HealthReport | None, smoke: Any) -> list[ModelRow]:
    if health is None:
        return []
    rows = []
    chain = [m.alias for m in health.models]
    for _i, m in enumerate(health.models):
        checks = [c for c in (smoke.checks if smoke else []) if c.model == m.alias and c.check != "cost"]
        failed = [c for c in checks if c.status == "fail"]
        unsure = [c for c in checks if c.status == "inconclusive"]
        passed = [c for c in checks if c.status == "pass"]
        # "pass" only when a check passed: checks that were all skipped (not sent) or not verifiable say so
        smoke_status = (None if not checks else "fail" if failed else "inconclusive" if unsure else "pass" if passed
                        else "not-verifiable" if any(c.status == "not-verifiable" for c in checks) else "skipped")
        smoke_detail = "; ".join(f"{c.check}: {c.detail}" for c in failed + unsure) or None
        is_primary = m.alias == health.primary
        if m.failing or smoke_status == "fail":
            verdict = "fail" if is_primary else "warn"
        elif m.inconclusive or smoke_status == "inconclusive":
            verdict = "inconclusive"
        elif not m.ok and smoke_status != "pass":  # the gateway did not answer: nothing about this model is known
            verdict = "not-checked"
        else:
            verdict = "pass"
        rows.append(ModelRow(
            m.alias, "primary" if is_primary else f"fallback {chain.index(m.alias)}",
            m.status, model_text(m), m.latency_ms, smoke_status, smoke_detail, verdict,
        ))
    return rows


# --- the app's own paths: the gateway path against the direct one -------------------


def error_rate_vs_direct_gate(plan: StagePlan, app: dict[str, Any] | None, source: str) -> Gate:
    """The gateway path's error rate against the direct path's, from the app's metrics, over the same window.

    GO when the upper bound of Newcombe's 95 % interval for the difference
    (gateway - direct) is <= margin; NO-GO when its lower bound is > margin;
    inconclusive in between (too few requests to tell).
    """
    margin = plan.gates.error_rate_vs_direct_margin or 0.0
    name, threshold = "error rate vs direct", f"gateway - direct <= {margin * 100:g} points (95% CI)"
    if not app or app.get("problem"):
        return Gate(name, INCONCLUSIVE, "unknown", threshold, source, f"{name}: {(app or {}).get('problem')}")
    gw, direct = app["gateway"], app["direct"]
    n1, x1, n2, x2 = round(gw["requests"]), round(gw["failed"]), round(direct["requests"]), round(direct["failed"])
    x1, x2 = min(x1, n1), min(x2, n2)
    if n1 <= 0 or n2 <= 0:
        empty = "gateway" if n1 <= 0 else "direct"
        return Gate(name, INCONCLUSIVE, "unknown", threshold, source,
                    f"{name}: no app requests on the {empty} path in the window")
    low, high = newcombe_difference(x1, n1, x2, n2)
    p1, p2 = x1 / n1, x2 / n2
    value = f"gateway {p1 * 100:.2f}% ({x1} of {n1}), direct {p2 * 100:.2f}% ({x2} of {n2})"
    interval = f"difference {(p1 - p2) * 100:+.2f} points, 95% CI [{low * 100:+.2f}, {high * 100:+.2f}]"
    detail = {"gateway": {"requests": n1, "failed": x1, "rate": p1}, "direct": {"requests": n2, "failed": x2, "rate": p2},
              "difference": p1 - p2, "ci95": [low, high], "margin": margin, "method": "Newcombe hybrid score (method 10)"}
    if high <= margin:
        return Gate(name, PASS, value, threshold, source,
                    f"{name}: {value}; {interval}: upper bound <= {margin * 100:g}", detail=detail)
    if low > margin:
        return Gate(name, FAIL, value, threshold, source,
                    f"{name}: {value}; {interval}: the gateway path fails more (lower bound > {margin * 100:g})",
                    detail=detail)
    return Gate(name, INCONCLUSIVE, value, threshold, source,
                f"{name}: {value}; {interval}: too few requests to tell (the interval spans {margin * 100:g})",
                detail=detail)


def app_latency(app: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the app feels: the gateway path's p50/p95 minus the direct path's, from its duration histograms.

    Reported, not gated: the two quantiles come from separate histograms whose
    buckets are wide next to milliseconds, so no honest interval for the
    difference follows from them (LiteLLM's per-request overhead is the gate).
    """
    if not app or app.get("problem"):
        return None
    out: dict[str, Any] = {}
    for q, key in ((0.5, "p50"), (0.95, "p95")):
        gw = metrics.quantile(app["gateway"]["duration_buckets"], q)
        direct = metrics.quantile(app["direct"]["duration_buckets"], q)
        out[f"gateway_{key}_ms"] = None if gw is None else gw * 1000
        out[f"direct_{key}_ms"] = None if direct is None else direct * 1000
        out[f"added_{key}_ms"] = None if gw is None or direct is None else (gw - direct) * 1000
    return out


def custom_gate(gate: CustomGate, found: dict[str, Any] | None, source: str) -> Gate:
    """A team's own PromQL gate: its scalar against pass/fail; no result, or several series, is inconclusive."""
    conditions = [f"pass {gate.pass_if}" if gate.pass_if else "", f"fail {gate.fail_if}" if gate.fail_if else ""]
    threshold = ", ".join(c for c in conditions if c)
    value = None if found is None else found.get("value")
    if found is None or value is None or math.isnan(value):
        why = ("the snapshot holds no result for it (a gate added after the evidence was gathered)" if found is None
               else found.get("error") or "the query returned NaN")
        return Gate(gate.name, INCONCLUSIVE, "unknown", threshold, source, f"{gate.name}: {why}")
    shown = f"{value:g}"
    if gate.fail_if is not None and gate.fail_if.holds(value):
        return Gate(gate.name, FAIL, shown, threshold, source, f"{gate.name}: {shown} {gate.fail_if}")
    if gate.pass_if is not None and gate.pass_if.holds(value):
        return Gate(gate.name, PASS, shown, threshold, source, f"{gate.name}: {shown} {gate.pass_if}")
    if gate.pass_if is None:
        return Gate(gate.name, PASS, shown, threshold, source, f"{gate.name}: {shown}, not {gate.fail_if}")
    if gate.fail_if is None:
        return Gate(gate.name, FAIL, shown, threshold, source, f"{gate.name}: {shown}, not {gate.pass_if}")
    return Gate(gate.name, INCONCLUSIVE, shown, threshold, source,
                f"{gate.name}: {shown} is neither {gate.pass_if} (pass) nor {gate.fail_if} (fail)")
