"""Gates and verdicts: may the rollout leave its current stage?

GO when every gate passes; HOLD when none fails but one is inconclusive (soak
not elapsed, a rate-limited model the decision depends on, no metrics in the
window); NO-GO when any gate fails. Every gate states its value, its threshold,
its source, and a reason that reads as value versus condition.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from rollout_cli.checks.catalog import CatalogReport, check_catalog
from rollout_cli.checks.classify import QUOTA_EXHAUSTED
from rollout_cli.checks.evidence import Evidence
from rollout_cli.checks.health import HealthReport, check_health
from rollout_cli.checks.smoke import DRILL, SmokeReport, plan_smoke, run_smoke
from rollout_cli.checks.suite import Case, load_suite, suite_path
from rollout_cli.core.audit import AuditLog, StageChange, stage_changes
from rollout_cli.core.playbooks import format_duration
from rollout_cli.core.quota import QuotaLedger, clock_text, next_reset, require_room
from rollout_cli.core.stage import Stage, read_stage
from rollout_cli.core.workspace import Workspace
from rollout_cli.errors import ExitCode, RolloutError
from rollout_cli.gateway.api import GatewayClient
from rollout_cli.gateway.topology import Topology
from rollout_cli.rollout import metrics
from rollout_cli.rollout.plan import StagePlan
from rollout_cli.rollout.samples import SampleStore

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


@dataclass
class Decision:
    verdict: Verdict
    current: int
    next: int | None
    gates: list[Gate]
    matrix: list[ModelRow]
    warnings: list[str]
    requests_sent: int
    metrics_summary: dict[str, Any] | None = None
    topology: Topology | None = None  # the gateway config the checks read, for the post-check after a write
    requests_shared: int = 0  # answers one check read from another's request instead of sending its own

    @property
    def reasons(self) -> list[str]:
        wanted = {Verdict.NO_GO: FAIL, Verdict.HOLD: INCONCLUSIVE}.get(self.verdict)
        return [g.reason for g in self.gates if g.status == wanted]

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict.value,
            "current": self.current,
            "next": self.next,
            "reasons": self.reasons,
            "warnings": self.warnings,
            "gates": [g.to_json() for g in self.gates],
            "matrix": [r.to_json() for r in self.matrix],
            "requests_sent": self.requests_sent,
            "requests_shared": self.requests_shared,
        }


def combine(gates: list[Gate]) -> Verdict:
    statuses = {g.status for g in gates}
    if FAIL in statuses:
        return Verdict.NO_GO
    if INCONCLUSIVE in statuses:
        return Verdict.HOLD
    return Verdict.GO


# --- evidence -----------------------------------------------------------------


def stage_started(ws: Workspace, percentage: int) -> StageChange | None:
    """The audit record that moved the rollout to `percentage`: the latest stage change, if it went there."""
    changes = stage_changes(AuditLog(ws.state_dir))
    last = changes[-1] if changes else None
    return last if last is not None and str(last.after) == str(percentage) else None


def window_start(plan: StagePlan, percentage: int, entered: StageChange | None) -> float:
    """The soak window: since the stage began, at most the plan's soak time back."""
    return max(entered.timestamp if entered else 0.0, time.time() - plan.soak_for(percentage))


def soak_gate(plan: StagePlan, stage: Stage, entered: StageChange | None, skip_reason: str | None) -> Gate:
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
    elapsed = time.time() - entered.timestamp
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


def window_gates(
    ws: Workspace, plan: StagePlan, stage: Stage, entered: StageChange | None,
    scrape: dict[str, Any] | None, scrape_error: str | None,
) -> list[Gate]:
    """Error rate and added latency over the soak window, from Prometheus counters."""
    g = plan.gates
    rate_t = f"<= {g.max_error_rate * 100:g}%"
    lat_t = f"p95 <= {g.max_added_latency_p95_ms:g} ms"
    source = "/metrics/ + watch samples"
    start = window_start(plan, stage.percentage, entered)
    samples = [s for s in SampleStore(ws.state_dir).records(since_ts=start) if s.get("metrics")]
    if scrape is None and len(samples) >= 2:
        scrape, source = samples[-1]["metrics"], source + " (latest sample: live scrape failed)"
    if scrape is None:
        why = f"metrics cannot be read: {scrape_error}"
        return [Gate("error rate", INCONCLUSIVE, "unknown", rate_t, source, why),
                Gate("added latency", INCONCLUSIVE, "unknown", lat_t, source, why)]
    untrusted = metrics.invalid_reason(scrape)
    if untrusted or not scrape.get("has_litellm_metrics"):
        why = untrusted or "the gateway exposes no litellm_* metrics (enable the prometheus callback)"
        return [Gate("error rate", INCONCLUSIVE, "unknown", rate_t, source, why),
                Gate("added latency", INCONCLUSIVE, "unknown", lat_t, source, why)]
    if not samples:
        why = (f"no metrics sample recorded since {stage.percentage}% began; "
               "run `rollout watch` during the soak so the window can be judged")
        return [Gate("error rate", INCONCLUSIVE, "unknown", rate_t, source, why),
                Gate("added latency", INCONCLUSIVE, "unknown", lat_t, source, why)]
    window = metrics.delta(scrape, samples[0]["metrics"])
    untrusted = metrics.invalid_reason(window)
    if untrusted:
        return [Gate("error rate", INCONCLUSIVE, "unknown", rate_t, source, untrusted),
                Gate("added latency", INCONCLUSIVE, "unknown", lat_t, source, untrusted)]
    requests, failed = window["requests"], window["failed"]
    if requests <= 0:
        why = f"no requests through the gateway in the window (since {samples[0]['time']})"
        return [Gate("error rate", INCONCLUSIVE, "0 requests", rate_t, source, why),
                Gate("added latency", INCONCLUSIVE, "0 requests", lat_t, source, why)]
    few = requests < g.min_requests
    rate = failed / requests
    value = f"{rate * 100:.2f}% ({failed:g} of {requests:g})"
    # With few requests only a clear breach is conclusive: the failures alone exceed
    # the limit even if the missing requests had all succeeded.
    if failed / max(requests, g.min_requests) > g.max_error_rate:
        error_gate = Gate("error rate", FAIL, value, rate_t, source,
                          f"error rate {value} > {g.max_error_rate * 100:g}%")
    elif few:
        error_gate = Gate("error rate", INCONCLUSIVE, value, rate_t, source,
                          f"only {requests:g} requests in the window (< {g.min_requests}): too few to judge the error rate")
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


def scrape_metrics(ws: Workspace, client: GatewayClient | None = None) -> tuple[dict[str, Any] | None, str | None]:
    """One /metrics/ scrape summarized, or why it failed; through `client` when the caller has one."""
    try:
        if client is not None:
            ws.gateway.key.require()
            return metrics.summarize(client.metrics()), None
        with GatewayClient.from_config(ws.gateway, timeout=5.0) as own:
            return metrics.summarize(own.metrics()), None
    except RolloutError as exc:
        return None, str(exc)


# --- health, smoke and cost -------------------------------------------------------


def _health(ws: Workspace, evidence: Evidence, probe: Case | None = None) -> tuple[HealthReport | None, str | None]:
    try:
        if probe is None:
            return check_health(ws, evidence=evidence), None
        return check_health(ws, evidence=evidence, prompt=probe.prompt, max_tokens=probe.max_tokens), None
    except RolloutError as exc:
        return None, str(exc)


def _shared_probe(ws: Workspace) -> Case | None:
    """The smoke suite's first case: health asks it, so smoke reads that answer instead of sending it again."""
    try:
        cases = load_suite(suite_path(None, ws.playbooks)).cases
    except RolloutError:
        return None  # smoke reports the bad suite; health asks its own ping
    return cases[0] if cases else None


def _smoke(ws: Workspace, evidence: Evidence) -> tuple[SmokeReport | None, str | None]:
    try:
        return run_smoke(ws, evidence=evidence), None
    except RolloutError as exc:
        return None, str(exc)


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
                              f"gateway {gw.url}: {gw.problem}" + (f" ({gw.message})" if gw.message else "")))
        else:
            gates.append(Gate("gateway", PASS, "alive, ready", "alive, ready, key accepted",
                              "/health/liveliness, /readiness", f"gateway {gw.url}: alive and ready"))
    primary = health.primary
    pm = health.model(primary) if primary else None
    if g.primary_healthy:
        if pm is None:
            gates.append(Gate("primary model", FAIL, "unknown", "healthy", source, "no primary model found in the gateway config"))
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
    if healthy >= g.min_healthy_models:
        warnings = [f"{line} (a fallback model; the gate allows it)" for line in bad if not line.startswith(f"{primary}:")]
        gates.append(Gate("healthy models", PASS, value, threshold, source, f"{value} >= {g.min_healthy_models}", warnings))
    elif healthy + unsure >= g.min_healthy_models:
        gates.append(Gate("healthy models", INCONCLUSIVE, value, threshold, source,
                          f"{value} < {g.min_healthy_models}, with {unsure} inconclusive: " + "; ".join(bad)))
    else:
        gates.append(Gate("healthy models", FAIL, value, threshold, source,
                          f"{value} < {g.min_healthy_models}: " + "; ".join(bad)))
    return gates


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


def catalog_gate(catalog: CatalogReport | None, plan: StagePlan, health: Any, topology: Topology | None) -> Gate:
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


def quota_gate(ws: Workspace, health: Any) -> Gate:
    """The account's free quota: exhausted is HOLD (it resets at 00:00 UTC), never a model failure."""
    source = "health check + quota ledger"
    limit = ws.openrouter.daily_limit
    ledger = QuotaLedger(ws.state_dir)
    try:
        usage = ledger.usage()
    except OSError:
        usage = None
    account = (usage.account if usage else None) or {}
    threshold = "the account has free requests left today"
    exhausted = [m.alias for m in (health.models if health else []) if m.status == QUOTA_EXHAUSTED]
    if exhausted:
        limit = int(account.get("limit") or limit)
        reset = float(account["reset"]) / 1000 if account.get("reset") else next_reset(ledger.clock())
        value = f"0 of {limit} left"
        return Gate("quota", INCONCLUSIVE, value, threshold, source,
                    f"OpenRouter free quota exhausted: 0 of {limit} left today, resets at {clock_text(reset)}")
    mine = f"rollout used {usage.used} today" if usage else "ledger unreadable"
    return Gate("quota", PASS, mine, threshold, source, f"quota: not exhausted ({mine})")


def _fallback_threshold(plan: StagePlan) -> str:
    return f"<= {plan.gates.max_fallback_rate * 100:g}%"


def fallback_gate(
    ws: Workspace, plan: StagePlan, stage: Stage, entered: StageChange | None,
    scrape: dict[str, Any] | None, scrape_error: str | None, scraped_at: float | None = None,
) -> Gate:
    """Share of app requests a fallback served over the soak window: a dead primary hides behind its fallbacks.

    From litellm_deployment_successful_fallbacks_total + failed_fallbacks_total,
    less the smoke drills rollout itself forced (the quota ledger counts them).
    """
    g = plan.gates
    threshold = _fallback_threshold(plan)
    source = "/metrics/ fallback counters + watch samples"
    start = window_start(plan, stage.percentage, entered)
    samples = [s for s in SampleStore(ws.state_dir).records(since_ts=start) if s.get("metrics")]
    if scrape is None and len(samples) >= 2:
        scrape, scraped_at = samples[-1]["metrics"], samples[-1].get("ts")
    if scrape is not None and metrics.invalid_reason(scrape):
        return Gate("fallback rate", INCONCLUSIVE, "unknown", threshold, source,
                    f"fallback rate: {metrics.invalid_reason(scrape)}")
    if scrape is None or not scrape.get("has_litellm_metrics") or not samples:
        why = (f"metrics cannot be read: {scrape_error}" if scrape is None
               else "no metrics sample in the window (run `rollout watch` during the soak)")
        return Gate("fallback rate", INCONCLUSIVE, "unknown", threshold, source, f"fallback rate: {why}")
    window = metrics.delta(scrape, samples[0]["metrics"])
    untrusted = metrics.invalid_reason(window)  # a counter that went down without a restart
    if untrusted:
        return Gate("fallback rate", INCONCLUSIVE, "unknown", threshold, source, f"fallback rate: {untrusted}")
    drills = QuotaLedger(ws.state_dir).drills_since(samples[0].get("ts", start), scraped_at)
    fell = max(window.get("fallbacks", 0.0) + window.get("failed_fallbacks", 0.0) - drills, 0.0)
    requests = window["requests"]
    if requests <= 0:
        return Gate("fallback rate", INCONCLUSIVE, "0 requests", threshold, source,
                    f"fallback rate: no app requests in the window (since {samples[0]['time']})")
    rate = fell / requests
    value = f"{rate * 100:.2f}% ({fell:g} of {requests:g})"
    if fell / max(requests, g.min_requests) > g.max_fallback_rate:
        return Gate("fallback rate", FAIL, value, threshold, source,
                    f"fallback rate {value} > {g.max_fallback_rate * 100:g}%: a model behind the fallbacks is failing")
    if requests < g.min_requests:
        return Gate("fallback rate", INCONCLUSIVE, value, threshold, source,
                    f"only {requests:g} requests in the window (< {g.min_requests}): too few to judge the fallback rate")
    return Gate("fallback rate", PASS, value, threshold, source,
                f"fallback rate {value} <= {g.max_fallback_rate * 100:g}%")


def verdict_matrix(health: HealthReport | None, smoke: SmokeReport | None) -> list[ModelRow]:
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


# --- the whole evaluation ------------------------------------------------------


@dataclass
class Findings:
    """What the checks of one evaluation found, or why each could not run."""

    health: HealthReport | None = None
    health_error: str | None = None
    smoke: SmokeReport | None = None
    smoke_error: str | None = None
    scrape: dict[str, Any] | None = None
    scrape_error: str | None = None
    topology: Topology | None = None  # the gateway config they read
    catalog: CatalogReport | None = None  # OpenRouter's /models against the config and app.requires
    scraped_at: float | None = None  # when `scrape` was read: the checks' own drills after it are not in it


def planned_requests(ws: Workspace, plan: StagePlan, topology: Topology | None, *, post_check: bool) -> dict[str, int]:
    """The completions one evaluation sends upstream (and the post-check after a GO), before any is sent."""
    g = plan.gates
    out = {"health": len(topology.aliases) if topology else 0, "smoke": 0, "post_check": 1 if post_check else 0}
    if g.smoke or g.cost_free_only:
        try:
            out["smoke"] = plan_smoke(ws).completions
        except RolloutError:
            pass  # an invalid suite sends nothing; the smoke gate reports it
    return out


def gather(ws: Workspace, plan: StagePlan, stage: Stage, command: str = "report") -> Findings:
    """Run the checks of one evaluation, concurrently, on evidence gathered once.

    Refuses (QuotaRefused, exit 3) before sending anything when the evaluation
    would push rollout's own use past its share of the free quota.
    """
    g = plan.gates
    runs_smoke = g.smoke or g.cost_free_only
    found = Findings()
    try:
        evidence = Evidence(ws, share_answers=True)
    except RolloutError as exc:  # an unreadable gateway config: the checks that read it cannot run
        found.health_error = str(exc)
        found.smoke_error = str(exc) if runs_smoke else None
        if stage.percentage != 0:
            found.scrape, found.scrape_error = scrape_metrics(ws)
        return found
    with evidence:
        found.topology = evidence.topology
        if evidence.gateway().usable:  # a gateway that does not answer gets no request: its verdict, not the quota's
            planned = planned_requests(ws, plan, evidence.topology, post_check=command == "advance")
            require_room(evidence.ledger, ws.openrouter, command, sum(planned.values()))
        if stage.percentage != 0:
            # Scrape first: the window must not count this evaluation's own check requests.
            found.scrape, found.scrape_error = scrape_metrics(ws, evidence.client)
            found.scraped_at = time.time()
        with ThreadPoolExecutor(max_workers=3) as pool:
            health_f = pool.submit(_health, ws, evidence, _shared_probe(ws) if runs_smoke else None)
            smoke_f = pool.submit(_smoke, ws, evidence) if runs_smoke else None
            topology = evidence.topology
            catalog_f = pool.submit(check_catalog, topology, ws.app.requires) if topology and g.catalog else None
            found.health, found.health_error = health_f.result()
            if smoke_f is not None:
                found.smoke, found.smoke_error = smoke_f.result()
            if catalog_f is not None:
                found.catalog = catalog_f.result()
    return found


def evaluate(
    ws: Workspace, plan: StagePlan, stage: Stage | None = None, *, skip_soak_reason: str | None = None,
    command: str = "report",
) -> Decision:
    """Every gate for leaving the current stage. Checks run concurrently; nothing is written.

    The evidence (gateway config, key, client, preflight, the audit record of
    entering this stage) is gathered once and shared by every gate.
    """
    stage = stage or read_stage(ws)
    current = stage.percentage
    first_step = current == 0
    g = plan.gates
    found = gather(ws, plan, stage, command)
    health, smoke = found.health, found.smoke

    gates: list[Gate] = []
    if g.env_flags_agree:
        gates.append(agreement_gate(stage))
    gates += health_gates(plan, health, found.health_error)
    if g.smoke:
        gates.append(smoke_gate(smoke, found.smoke_error, health, plan))
    if g.cost_free_only:
        gates.append(cost_gate(smoke, found.smoke_error))
    if g.catalog:
        gates.append(catalog_gate(found.catalog, plan, health, found.topology))
    gates.append(quota_gate(ws, health))
    if first_step:
        note = "first step (0% -> first stage): no traffic through the gateway yet"
        gates.append(Gate("soak", SKIPPED, "n/a", "n/a", "stage plan", f"soak: {note}"))
        gates.append(Gate("error rate", SKIPPED, "n/a", f"<= {g.max_error_rate * 100:g}%", "stage plan", f"error rate: {note}"))
        gates.append(Gate("added latency", SKIPPED, "n/a", f"p95 <= {g.max_added_latency_p95_ms:g} ms", "stage plan", f"added latency: {note}"))
        gates.append(Gate("fallback rate", SKIPPED, "n/a", _fallback_threshold(plan), "stage plan", f"fallback rate: {note}"))
    else:
        entered = stage_started(ws, stage.percentage)
        gates.append(soak_gate(plan, stage, entered, skip_soak_reason))
        gates += window_gates(ws, plan, stage, entered, found.scrape, found.scrape_error)
        gates.append(fallback_gate(ws, plan, stage, entered, found.scrape, found.scrape_error, found.scraped_at))
    matrix = verdict_matrix(health, smoke)
    warnings = [w for gate in gates for w in gate.warnings]
    sent = sum((getattr(r, "requests", None) or {}).get("sent", 0) for r in (health, smoke) if r is not None)
    shared = sum((getattr(r, "requests", None) or {}).get("shared", 0) for r in (health, smoke) if r is not None)
    return Decision(combine(gates), current, plan.next_stage(current), gates, matrix, warnings, sent,
                    found.scrape, found.topology, requests_shared=shared)
