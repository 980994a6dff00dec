"""Gathering: one evidence snapshot per decision, everything the gates judge, with its times.

After Kayenta's judge: gathering (the gateway's /metrics/ or Prometheus, the
app's per-path metrics, health, smoke, the catalog, the quota ledger, the
audit record of entering the stage, `rollout watch`'s samples) is slow, remote
and flaky; judging (rollout/judge.py) is a pure function of the snapshot and
the stage plan. A snapshot is plain JSON-ready data (`to_json`/`from_json`),
so `rollout report --json` carries it and `rollout report --replay FILE`
judges a recorded one again.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from rollout_cli.checks.catalog import CatalogReport, ModelEntry, Replacement, check_catalog
from rollout_cli.checks.cost import CostReport, ModelCost
from rollout_cli.checks.evidence import Evidence
from rollout_cli.checks.health import HealthReport, ModelHealth, check_health
from rollout_cli.checks.preflight import GatewayState
from rollout_cli.checks.smoke import CheckResult, plan_smoke, run_smoke
from rollout_cli.checks.suite import Case, load_suite, suite_path
from rollout_cli.core.audit import AuditLog, StageChange, finite_number, stage_changes
from rollout_cli.core.quota import QuotaLedger, next_reset, require_room
from rollout_cli.core.stage import Stage
from rollout_cli.core.workspace import Workspace
from rollout_cli.errors import InputError, RolloutError
from rollout_cli.gateway.api import CHECK_USER_AGENT_PREFIX, GatewayClient
from rollout_cli.gateway.runtime import REPLICA_PORT_LABEL, Replica, runtime_for
from rollout_cli.gateway.topology import Topology
from rollout_cli.rollout import metrics
from rollout_cli.rollout.plan import StagePlan
from rollout_cli.rollout.promql import Prometheus, PrometheusUnavailable, scraped_by, window_count
from rollout_cli.rollout.samples import SampleStore

SNAPSHOT_VERSION = 1
RECENT_S = 300  # "the same failure now": the direct path over the last five minutes of the window
APP_PATHS = ("gateway", "direct")
TOTAL_REQUESTS = "litellm_proxy_total_requests_metric_total"
APP_REQUESTS = "llm_requests_total"
APP_FAILURES = "llm_request_failures_total"
APP_DURATION = "gen_ai_client_operation_duration_seconds"
# The app's traffic through the gateway: rollout's own check requests carry a user agent of their own.
APP_TRAFFIC = f'{{user_agent!~"{CHECK_USER_AGENT_PREFIX}.*"}}'


@dataclass
class SmokeFindings:
    """What the smoke run found that the gates judge: its checks, the cost guard, its requests."""

    checks: list[CheckResult]
    cost: CostReport | None = None
    requests: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"checks": [c.to_json() for c in self.checks], "cost": self.cost.to_json() if self.cost else None,
                "requests": self.requests}


@dataclass
class Snapshot:
    """Everything one decision judges. `window`, `app` and `custom` are plain dicts (see docs/API.md)."""

    now: float  # when the evidence was gathered: the judge's clock
    command: str
    stage: Stage
    entered: StageChange | None = None  # the audit record of entering this stage
    skip_soak_reason: str | None = None
    health: HealthReport | None = None
    health_error: str | None = None
    smoke: SmokeFindings | None = None
    smoke_error: str | None = None
    catalog: CatalogReport | None = None
    quota: dict[str, Any] = field(default_factory=dict)  # used, account, next_reset, limit
    metrics_source: dict[str, Any] = field(default_factory=lambda: {"source": "gateway"})  # source, url, queries
    window: dict[str, Any] | None = None  # the gateway's counters over the soak window (None at 0%)
    app: dict[str, Any] | None = None  # the app's per-path counters over the same window, and the recent part
    custom: list[dict[str, Any]] = field(default_factory=list)  # name, expression, value, error
    requests: dict[str, int] = field(default_factory=lambda: {"sent": 0, "shared": 0})

    def to_json(self) -> dict[str, Any]:
        entered = self.entered
        return {
            "version": SNAPSHOT_VERSION,
            "time": _utc(self.now),
            "now": self.now,
            "command": self.command,
            "stage": self.stage.to_json(),
            "entered": {"time": entered.time, "actor": entered.actor, "command": entered.command,
                        "reason": entered.reason, "from": entered.before, "to": entered.after,
                        "ts": entered.ts} if entered else None,
            "skip_soak_reason": self.skip_soak_reason,
            "health": _health_json(self.health) if self.health else None,
            "health_error": self.health_error,
            "smoke": self.smoke.to_json() if self.smoke else None,
            "smoke_error": self.smoke_error,
            "catalog": self.catalog.to_json() if self.catalog else None,
            "quota": self.quota,
            "metrics": self.metrics_source,
            "window": self.window,
            "app": self.app,
            "custom": self.custom,
            "requests": self.requests,
        }

    @classmethod
    def from_json(cls, raw: Any) -> Snapshot:
        """A recorded snapshot (`report --json`'s `snapshot`, or the whole report) back as evidence to judge."""
        if isinstance(raw, dict) and isinstance(raw.get("snapshot"), dict):
            raw = raw["snapshot"]
        if not isinstance(raw, dict) or raw.get("version") != SNAPSHOT_VERSION or "stage" not in raw:
            raise InputError(f"not an evidence snapshot of version {SNAPSHOT_VERSION} "
                             "(want the `snapshot` of `rollout report --json`)")
        try:
            st = raw["stage"]
            stage = Stage(st["env_percentage"], st["env_enabled"], st["flags_percentage"], st["flags_enabled"],
                          st["has_flags_file"])
            e = raw.get("entered")
            entered = StageChange(e["time"], e.get("actor"), e.get("command"), e.get("reason"),
                                  e.get("from"), e.get("to"),
                                  ts=float(e["ts"]) if finite_number(e.get("ts")) else None) if e else None
            return cls(
                now=float(raw["now"]), command=str(raw.get("command", "report")), stage=stage, entered=entered,
                skip_soak_reason=raw.get("skip_soak_reason"),
                health=_health_from(raw["health"]) if raw.get("health") else None,
                health_error=raw.get("health_error"),
                smoke=_smoke_from(raw["smoke"]) if raw.get("smoke") else None,
                smoke_error=raw.get("smoke_error"),
                catalog=_catalog_from(raw["catalog"]) if raw.get("catalog") else None,
                quota=dict(raw.get("quota") or {}),
                metrics_source=dict(raw.get("metrics") or {"source": "gateway"}),
                window=raw.get("window"), app=raw.get("app"), custom=list(raw.get("custom") or []),
                requests=dict(raw.get("requests") or {"sent": 0, "shared": 0}),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InputError(f"the evidence snapshot is incomplete or malformed ({exc!r}); "
                             "record it again with `rollout report --json`") from None


def _utc(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _health_json(h: HealthReport) -> dict[str, Any]:
    """The health report's judged part: the gateway's state and every model (probes' details left out)."""
    return {"gateway": {"url": h.gateway.url, "problem": h.gateway.problem, "message": h.gateway.message,
                        "warnings": h.gateway.warnings},
            "primary": h.primary, "models": [m.to_json() for m in h.models], "requests": h.requests,
            "replicas": h.replicas}


def _health_from(raw: dict[str, Any]) -> HealthReport:
    gw = raw["gateway"]
    return HealthReport(GatewayState(gw["url"], problem=gw.get("problem"), message=gw.get("message"),
                                     warnings=list(gw.get("warnings") or [])),
                        [ModelHealth(**m) for m in raw["models"]], primary=raw.get("primary"),
                        requests=raw.get("requests") or {}, replicas=raw.get("replicas"))


def _smoke_from(raw: dict[str, Any]) -> SmokeFindings:
    cost = raw.get("cost")
    return SmokeFindings([CheckResult(**c) for c in raw["checks"]],
                         CostReport([ModelCost(**m) for m in cost["models"]], cost.get("catalogs") or []) if cost else None,
                         raw.get("requests") or {})


def _catalog_from(raw: dict[str, Any]) -> CatalogReport:
    models = [ModelEntry(**{**m, "replacements": [Replacement(**r) for r in m.get("replacements") or []]})
              for m in raw["models"]]
    return CatalogReport(raw.get("requires") or [], models, raw.get("catalogs") or [], raw.get("primary"))


# --- the soak window -------------------------------------------------------------


def stage_started(ws: Workspace, percentage: int) -> StageChange | None:
    """The audit record that moved the rollout to `percentage`: the latest stage change, if it went there."""
    changes = stage_changes(AuditLog(ws.state_dir))
    last = changes[-1] if changes else None
    return last if last is not None and str(last.after) == str(percentage) else None


def window_start(plan: StagePlan, percentage: int, entered: StageChange | None, now: float | None = None) -> float:
    """The soak window: since the stage began, at most the plan's soak time back."""
    return max(entered.timestamp if entered else 0.0, (time.time() if now is None else now) - plan.soak_for(percentage))


def scrape_metrics(ws: Workspace, client: GatewayClient | None = None) -> tuple[dict[str, Any] | None, str | None]:
    """One /metrics/ scrape summarized, or why it failed; through `client` when the caller has one.

    A swarm service is scraped replica by replica, each at its own port, and added up (scrape_replicas).
    """
    try:
        if ws.gateway.runtime == "swarm":
            return scrape_replicas(ws), None
        if client is not None:
            ws.gateway.key.require()
            return metrics.summarize(client.metrics()), None
        with GatewayClient.from_config(ws.gateway, timeout=5.0) as own:
            return metrics.summarize(own.metrics()), None
    except RolloutError as exc:
        return None, str(exc)


def scrape_replicas(ws: Workspace) -> dict[str, Any]:
    """Every replica's /metrics/ (concurrently, each at its own port), summarized and added up (metrics.add_up).

    A replica that does not answer, or has no port, makes the sum incomplete
    (named in `invalid`): a window without its requests is never judged.
    """
    runtime = runtime_for(ws)
    listed = runtime.replicas() or []
    desired = runtime.desired() or 0
    key = ws.gateway.key.require()

    def scrape(replica: Replica) -> dict[str, Any] | str:
        if replica.url is None:
            return f"no port (service label {REPLICA_PORT_LABEL})"
        try:
            with GatewayClient(replica.url, key, timeout=5.0) as client:
                return metrics.summarize(client.metrics())
        except RolloutError as exc:
            return str(exc)

    with ThreadPoolExecutor(max_workers=max(1, min(8, len(listed)))) as pool:
        answers = list(pool.map(scrape, listed))
    parts: dict[str, dict[str, Any]] = {}
    summed: list[dict[str, Any]] = []
    missing: list[str] = []
    for replica, answer in zip(listed, answers, strict=True):
        task = replica.task
        if isinstance(answer, str):
            missing.append(f"replica {task.slot} (task {task.task_id}, {replica.url or 'no port'}, task {task.state}) "
                           f"did not answer: {answer}; the sum over the replicas would be incomplete")
            continue
        parts[str(task.slot)] = answer
        summed.append({"slot": task.slot, "task": task.task_id, "url": replica.url})
    if len(listed) < desired:
        missing.append(f"{desired - len(listed)} of the {desired} replicas the service desires have no task")
    return metrics.add_up(parts, summed, missing)


def gateway_window(
    ws: Workspace, percentage: int, start: float, now: float,
    scrape: dict[str, Any] | None, scrape_error: str | None,
) -> dict[str, Any]:
    """The window from the gateway's counters: the live scrape minus the first sample `watch` recorded in it.

    It cannot see what happened before a gateway restart in the window (the
    counters start again at zero), and needs a sample taken at the window's start
    (`rollout watch`, or the baseline `advance` writes). A swarm service's replicas
    are added up (scrape_replicas), the window taken replica by replica.
    """
    out: dict[str, Any] = {"source": "gateway", "label": "/metrics/ + watch samples", "start": start, "end": now,
                           "problem": None}
    samples = [s for s in SampleStore(ws.state_dir).records(since_ts=start) if s.get("metrics")]
    if scrape is None and len(samples) >= 2:
        scrape, out["end"] = samples[-1]["metrics"], samples[-1].get("ts", now)
        out["label"] += " (latest sample: live scrape failed)"
    if scrape is None:
        out["problem"] = f"metrics cannot be read: {scrape_error}"
    elif metrics.invalid_reason(scrape):  # NaN, Inf or negative counters: untrusted, never judged
        out["problem"] = metrics.invalid_reason(scrape)
    elif not scrape.get("has_litellm_metrics"):
        out["problem"] = "the gateway exposes no litellm_* metrics (enable the prometheus callback)"
    elif not samples:
        out["problem"] = (f"no metrics sample recorded since {percentage}% began; "
                          "run `rollout watch` during the soak so the window can be judged")
    if out["problem"]:
        return out
    assert scrape is not None
    window = metrics.delta(scrape, samples[0]["metrics"])
    out["problem"] = metrics.invalid_reason(window)  # a counter that went down without a restart
    if out["problem"]:
        return out
    if scrape.get("summed"):
        out["summed"] = scrape["summed"]
        out["label"] += f" (summed over replicas {', '.join(str(r['slot']) for r in scrape['summed'])})"
    out.update(
        since=samples[0]["time"], requests=window["requests"], failed=window["failed"],
        fallbacks=window.get("fallbacks", 0.0) + window.get("failed_fallbacks", 0.0),
        drill_fallbacks=window.get("drill_fallbacks", 0.0),
        overhead_buckets=window["overhead_buckets"],
    )
    return out


def prometheus_window(
    prom: Prometheus, start: float, now: float, plan: StagePlan,
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """The window, the app's paths and the custom gates, each counted over exactly [start, end].

    `end` is the decision (`now`): the counts run from each target's last scrape
    before `start` to its last one before `end` (promql.scraped_by; it waits only
    for a target whose last scrape failed), so this decision's own check
    requests, sent after `now`, are never in them. Counts are restart-safe, count a
    series born in the window from zero (promql.window_count), and `sum` adds
    up every worker and replica Prometheus scrapes. Queries run concurrently;
    each has the client's deadline and byte cap.
    """
    window: dict[str, Any] = {"source": "prometheus", "label": f"Prometheus {prom.url}", "start": start, "end": now,
                              "problem": None, "window_s": int(now - start)}
    app: dict[str, Any] = {"problem": None, "window_s": int(now - start)}
    custom = [{"name": c.name, "expression": c.expression(max(int(now - start), 1)), "value": None, "error": None}
              for c in plan.custom_gates]

    def unjudged(why: str, *, customs_too: bool = False) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
        window["problem"] = app["problem"] = why
        for c in custom if customs_too else ():
            c["error"] = why
        return window, app, custom

    if now - start < 1:
        return unjudged("the window is empty (the stage began less than a second ago)", customs_too=True)
    try:
        fresh = scraped_by(prom, now, (TOTAL_REQUESTS, APP_REQUESTS))
    except PrometheusUnavailable as exc:
        return unjudged(f"Prometheus cannot be queried: {exc}", customs_too=True)
    end = fresh.end
    exact = end - start  # the queries' range: from the stage's entry, not up to a second after it
    span = int(exact)
    window.update(end=end, window_s=span, freshness=fresh.to_json(), freshness_note=fresh.note)
    app["window_s"] = span
    for c, gate in zip(custom, plan.custom_gates, strict=True):
        c["expression"] = gate.expression(span)
    recent = min(span, RECENT_S)
    queries = {
        "requests": window_count(f"{TOTAL_REQUESTS}{APP_TRAFFIC}", exact),
        "failed": window_count(f"litellm_proxy_failed_requests_metric_total{APP_TRAFFIC}", exact),
        # by exception_class: rollout's own drills are told apart by it (metrics.DRILL_CLASS)
        "fallbacks": window_count(metrics.FALLBACKS, exact, by="exception_class"),
        "failed_fallbacks": window_count(metrics.FAILED_FALLBACKS, exact, by="exception_class"),
        "overhead": window_count(f"{metrics.OVERHEAD}_bucket", exact, by="le"),
        "app_requests": window_count(APP_REQUESTS, exact, by="path"),
        "app_failures": window_count(APP_FAILURES, exact, by="path, error_type"),
        "app_duration": window_count(f"{APP_DURATION}_bucket", exact, by="path, le"),
        "recent_requests": window_count(APP_REQUESTS, recent, by="path"),
        "recent_failures": window_count(APP_FAILURES, recent, by="path"),
    }
    jobs = {**queries, **{f"custom:{i}": str(c["expression"]) for i, c in enumerate(custom)}}
    answers: dict[str, Any] = {}
    with ThreadPoolExecutor(max_workers=min(8, len(jobs))) as pool:
        futures = {key: pool.submit(prom.query, expr, end) for key, expr in jobs.items()}
        for key, future in futures.items():
            try:
                answers[key] = future.result()
            except PrometheusUnavailable as exc:
                answers[key] = exc
    window["queries"] = queries
    for i, c in enumerate(custom):
        got = answers[f"custom:{i}"]
        if isinstance(got, Exception):
            c["error"] = str(got)
        elif not got:
            c["error"] = "the query returned no series in the window"
        elif len(got) > 1:
            c["error"] = f"the query returned {len(got)} series; wrap it in sum(...) or another aggregation"
        elif not math.isfinite(got[0].value):
            c["error"] = f"the query returned {got[0].value}"
        else:
            c["value"] = got[0].value
    failed = next((a for k, a in answers.items() if isinstance(a, Exception) and not k.startswith("custom:")), None)
    if failed is not None:
        return unjudged(f"Prometheus cannot be queried: {failed}")

    def total(key: str) -> float:
        return sum(s.value for s in answers[key])

    odd = sorted(key for key in queries if any(not math.isfinite(s.value) or s.value < 0 for s in answers[key]))
    if odd:  # a counter's increase is never negative, NaN or infinite: the series are not what they claim
        return unjudged(f"Prometheus {prom.url} answered a negative, NaN or infinite "
                        f"increase for {', '.join(odd)}; check its scrape of the counters")

    if not answers["requests"]:
        window["problem"] = (f"Prometheus {prom.url} has no series of {TOTAL_REQUESTS} "
                             "in the window (is it scraping the gateway's /metrics/?)")
    else:
        window.update(
            requests=total("requests"), failed=total("failed"),
            fallbacks=total("fallbacks") + total("failed_fallbacks"),
            drill_fallbacks=sum(s.value for key in ("fallbacks", "failed_fallbacks") for s in answers[key]
                                if metrics.is_drill(s.labels)),
            overhead_buckets={s.labels.get("le", "?"): s.value for s in answers["overhead"]},
        )
    if not answers["app_requests"]:
        app["problem"] = (f"Prometheus {prom.url} has no series of the app's {APP_REQUESTS} in the window "
                          "(is it scraping the app's /metrics?)")
        return window, app, custom
    for path in APP_PATHS:
        errors: dict[str, float] = {}
        for s in answers["app_failures"]:
            if s.labels.get("path") == path:
                kind = s.labels.get("error_type") or "unknown"
                errors[kind] = errors.get(kind, 0.0) + s.value
        app[path] = {
            "requests": sum(s.value for s in answers["app_requests"] if s.labels.get("path") == path),
            "failed": sum(errors.values()),
            "errors": errors,
            "duration_buckets": {s.labels.get("le", "?"): s.value for s in answers["app_duration"]
                                 if s.labels.get("path") == path},
            "recent_requests": sum(s.value for s in answers["recent_requests"] if s.labels.get("path") == path),
            "recent_failed": sum(s.value for s in answers["recent_failures"] if s.labels.get("path") == path),
        }
    app["recent_s"] = recent
    return window, app, custom


# --- health, smoke and the rest ---------------------------------------------------


def _health(ws: Workspace, evidence: Evidence, probe: Case | None = None,
            models: list[str] | None = None, replicas: int | None = None) -> tuple[HealthReport | None, str | None]:
    try:
        if probe is None:
            return check_health(ws, models, evidence=evidence, replicas_required=replicas), None
        return check_health(ws, models, evidence=evidence, prompt=probe.prompt, max_tokens=probe.max_tokens,
                            replicas_required=replicas), None
    except RolloutError as exc:
        return None, str(exc)


def _shared_probe(ws: Workspace) -> Case | None:
    """The smoke suite's first case: health asks it, so smoke reads that answer instead of sending it again."""
    try:
        cases = load_suite(suite_path(None, ws.playbooks)).cases
    except RolloutError:
        return None  # smoke reports the bad suite; health asks its own ping
    return cases[0] if cases else None


def _smoke(ws: Workspace, evidence: Evidence) -> tuple[SmokeFindings | None, str | None]:
    try:
        report = run_smoke(ws, evidence=evidence)
    except RolloutError as exc:
        return None, str(exc)
    return SmokeFindings(report.checks, report.cost, report.requests), None


def _quota(ws: Workspace) -> dict[str, Any]:
    ledger = QuotaLedger(ws.state_dir)
    try:
        usage = ledger.usage()
    except OSError:
        usage = None
    return {"used": usage.used if usage else None, "account": (usage.account if usage else None) or {},
            "limit": ws.openrouter.daily_limit, "next_reset": next_reset(ledger.clock())}


def planned_requests(ws: Workspace, plan: StagePlan, topology: Topology | None, *, post_check: bool,
                     primary_only: bool = False) -> dict[str, int]:
    """The completions one evaluation sends upstream (and the post-check after a GO), before any is sent."""
    g = plan.gates
    probed = (1 if primary_only else len(topology.aliases)) if topology else 0
    out = {"health": probed, "smoke": 0, "post_check": 1 if post_check else 0}
    if g.smoke or g.cost_free_only:
        try:
            out["smoke"] = plan_smoke(ws).completions
        except RolloutError:
            pass  # an invalid suite sends nothing; the smoke gate reports it
    return out


def metrics_evidence(ws: Workspace, plan: StagePlan, snap: Snapshot, client: GatewayClient | None) -> None:
    """The window, the app's paths and the custom gates into `snap`, from the workspace's metrics source."""
    start = window_start(plan, snap.stage.percentage, snap.entered, snap.now)
    settings = ws.metrics
    if settings.source == "prometheus" and settings.url:
        prom = Prometheus(settings.url, settings.token())
        snap.window, snap.app, snap.custom = prometheus_window(prom, start, snap.now, plan)
        waited = ((snap.window or {}).get("freshness") or {}).get("waited_s")
        snap.metrics_source = {"source": "prometheus", "url": settings.url, "queries": prom.queries, "waited_s": waited}
        return
    # Scrape before the checks run: the window must not count this evaluation's own check requests.
    scrape, error = scrape_metrics(ws, client)
    snap.window = gateway_window(ws, snap.stage.percentage, start, time.time(), scrape, error)
    why = "metrics.source: prometheus in rollout.yaml (the gateway's /metrics/ holds no app-side counters)"
    snap.app = {"problem": f"the app's per-path metrics need {why}"}
    snap.custom = [{"name": c.name, "expression": c.query, "value": None, "error": f"a custom gate needs {why}"}
                   for c in plan.custom_gates]
    snap.metrics_source = {"source": "gateway", "url": None, "queries": 0}


def recent_app_paths(ws: Workspace, plan: StagePlan) -> dict[str, Any] | None:
    """The app's paths over the last few minutes (Prometheus only): does the direct path fail right now too?"""
    if ws.metrics.source != "prometheus" or not ws.metrics.url:
        return None
    now = time.time()
    prom = Prometheus(ws.metrics.url, ws.metrics.token())
    _, app, _ = prometheus_window(prom, now - RECENT_S, now, replace(plan, custom_gates=()))
    return app


def gather(
    ws: Workspace, plan: StagePlan, stage: Stage, command: str = "report", *, skip_soak_reason: str | None = None,
    primary_only: bool = False,
) -> tuple[Snapshot, Topology | None]:
    """Run the checks of one evaluation, concurrently, on evidence gathered once; the snapshot and the config read.

    Refuses (QuotaRefused, exit 3) before sending anything when the evaluation
    would push rollout's own use past its share of the free quota. `primary_only`
    probes the primary alone (the autopilot's breach checks, every tick: one request, not five).
    """
    g = plan.gates
    runs_smoke = g.smoke or g.cost_free_only
    snap = Snapshot(time.time(), command, stage, skip_soak_reason=skip_soak_reason)
    if stage.percentage != 0:
        snap.entered = stage_started(ws, stage.percentage)
    try:
        evidence = Evidence(ws, share_answers=True)
    except RolloutError as exc:  # an unreadable gateway config: the checks that read it cannot run
        snap.health_error = str(exc)
        snap.smoke_error = str(exc) if runs_smoke else None
        if stage.percentage != 0:
            metrics_evidence(ws, plan, snap, None)
        snap.quota = _quota(ws)
        return snap, None
    with evidence:
        if evidence.gateway().usable:  # a gateway that does not answer gets no request: its verdict, not the quota's
            planned = planned_requests(ws, plan, evidence.topology, post_check=command == "advance",
                                       primary_only=primary_only)
            require_room(evidence.ledger, ws.openrouter, command, sum(planned.values()))
        with ThreadPoolExecutor(max_workers=4) as pool:
            metrics_f = pool.submit(metrics_evidence, ws, plan, snap, evidence.client) if stage.percentage else None
            if metrics_f is not None and ws.metrics.source != "prometheus":
                metrics_f.result()  # the scrape first: the checks' own requests must not land in the window
            primary = evidence.topology.primary if primary_only and evidence.topology else None
            health_f = pool.submit(_health, ws, evidence, _shared_probe(ws) if runs_smoke else None,
                                   [primary] if primary else None, g.min_ready_replicas)
            smoke_f = pool.submit(_smoke, ws, evidence) if runs_smoke else None
            topology = evidence.topology
            catalog_f = pool.submit(check_catalog, topology, ws.app.requires) if topology and g.catalog else None
            snap.health, snap.health_error = health_f.result()
            if smoke_f is not None:
                snap.smoke, snap.smoke_error = smoke_f.result()
            if catalog_f is not None:
                snap.catalog = catalog_f.result()
            if metrics_f is not None:
                metrics_f.result()
    snap.quota = _quota(ws)
    reports = [r for r in (snap.health, snap.smoke) if r is not None]
    snap.requests = {"sent": sum((r.requests or {}).get("sent", 0) for r in reports),
                     "shared": sum((r.requests or {}).get("shared", 0) for r in reports)}
    return snap, evidence.topology


__all__ = ["Snapshot", "gather", "planned_requests", "scrape_metrics", "stage_started", "window_start"]
