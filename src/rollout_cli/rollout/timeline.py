"""The rollout over time, for the HTML report's charts: plain JSON-ready series, no plotting here.

Two spans: the whole rollout (from the first record of it: a stage change in
the audit trail, a `watch` sample, a traffic reading) and the current soak
window (as the gates judge it). Each chart's series come from Prometheus range
queries when `metrics.source` is prometheus, else from what rollout recorded
itself (`rollout watch`'s samples of the gateway's /metrics/, `rollout
status`'s traffic readings). Gathering never raises: what it cannot read
becomes a chart's `problem`, said in the page.
"""

from __future__ import annotations

import math
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from itertools import pairwise
from typing import Any

from rollout_cli.core.audit import AuditLog, read_lines, stage_changes
from rollout_cli.core.stage import Stage
from rollout_cli.core.workspace import Workspace
from rollout_cli.errors import RolloutError
from rollout_cli.gateway.prometheus import TOTAL
from rollout_cli.playbook.traffic import OBSERVED_NAME
from rollout_cli.rollout import metrics
from rollout_cli.rollout.plan import StagePlan
from rollout_cli.rollout.promql import Prometheus
from rollout_cli.rollout.samples import SampleStore
from rollout_cli.rollout.snapshot import APP_FAILURES, APP_REQUESTS, APP_TRAFFIC, stage_started, window_start

POINTS = 240  # per panel: smooth on a laptop screen, a few kB of SVG path each
NO_RECORD_SPAN_S = 3600.0  # nothing recorded yet: the last hour is the whole rollout
MARGIN_S = 10.0
DEFAULT_SCRAPE_S = 15.0  # Prometheus's default scrape interval, when its targets cannot be read
CHARTS = ("share", "requests", "errors", "latency", "fallbacks")
NO_SAMPLES = ("no samples recorded in this span: run `rollout watch` during the soak, "
              "or set metrics.source: prometheus in rollout.yaml")


def gather_timeline(ws: Workspace, plan: StagePlan, stage: Stage, now: float | None = None) -> dict[str, Any]:
    """Every chart's series over the whole rollout and the current soak window, with where they came from."""
    now = time.time() if now is None else now
    missing: list[str] = []
    events = _events(ws)
    samples = SampleStore(ws.state_dir).records()
    traffic = [r for r in read_lines(ws.state_dir / OBSERVED_NAME) if _readings(r)]
    if not events:
        missing.append("no stage change in the audit trail (.rollout/history.jsonl): the configured stage is "
                       "drawn as the files say it is now, and nothing is marked")
    firsts = [e["ts"] for e in events[:1]] + [s["ts"] for s in samples[:1]] + [r["ts"] for r in traffic[:1]]
    # a little before the first record, so a mark at the very start of the rollout is not on the chart's edge
    start = min(firsts) - max(MARGIN_S, (now - min(firsts)) * 0.03) if firsts else now - NO_RECORD_SPAN_S
    window = None
    if stage.percentage != 0:
        opened = window_start(plan, stage.percentage, stage_started(ws, stage.percentage), now)
        if now - opened >= 1:
            window = {"start": opened, "end": now}
            start = min(start, opened)  # no record of entering the stage: the window reaches back a whole soak
    spans: dict[str, dict[str, float] | None] = {"rollout": {"start": start, "end": now}, "window": window}
    settings = ws.metrics
    if settings.source == "prometheus" and settings.url:
        prom = Prometheus(settings.url, settings.token())
        charts = {name: {span: _panel(step_s=_step(bounds)) if bounds else None
                         for span, bounds in spans.items()} for name in CHARTS}
        _query_all(prom, charts, spans)
        source = {"source": "prometheus", "url": settings.url, "queries": prom.queries,
                  "label": f"Prometheus range queries at {settings.url}"}
    else:
        charts = {name: {span: _samples_panel(name, bounds, samples, traffic) if bounds else None
                         for span, bounds in spans.items()} for name in CHARTS}
        source = {"source": "samples", "url": None, "queries": 0,
                  "label": f"rollout's recorded samples ({len(samples)} from `rollout watch`, "
                           f"{len(traffic)} traffic readings from `rollout status`)"}
        if not samples:
            missing.append(NO_SAMPLES)
    return {
        "now": now,
        "source": source,
        "spans": spans,
        "events": events,
        "configured": _configured(events, stage, start, now),
        "limits": {"latency": plan.gates.max_added_latency_p95_ms, "errors": plan.gates.max_error_rate * 100,
                   "fallbacks": plan.gates.max_fallback_rate * 100},
        "charts": charts,
        "missing": missing,
    }


def _events(ws: Workspace) -> list[dict[str, Any]]:
    """Every advance and rollback of the audit trail, oldest first, with who and why."""
    out = []
    for change in stage_changes(AuditLog(ws.state_dir)):
        before, after = _percent(change.before), _percent(change.after)
        try:
            recorded = change.timestamp
            ts = _timestamp(change.began) if change.began else recorded  # when the files began to change
        except ValueError:
            continue
        out.append({"ts": ts, "time": change.began or change.time, "recorded": change.time, "from": before,
                    "to": after, "actor": change.actor, "command": change.command, "reason": change.reason,
                    "kind": "rollback" if before is not None and after is not None and after < before else "advance"})
    return sorted(out, key=lambda e: e["ts"])


def _timestamp(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _percent(value: Any) -> int | None:
    try:
        return int(str(value))
    except ValueError:
        return None


def _configured(events: list[dict[str, Any]], stage: Stage, start: float, now: float) -> list[list[float]]:
    """The configured stage as a step line: [time, percentage] at the start, at each change, and now."""
    first = next((e["from"] for e in events if e["from"] is not None), stage.percentage)
    points = [[start, float(first)]]
    points += [[e["ts"], float(e["to"])] for e in events if e["to"] is not None]
    points.append([now, float(stage.percentage)])
    return points


# --- Prometheus -------------------------------------------------------------------


def _step(bounds: dict[str, float]) -> float:
    return float(max(1, math.ceil((bounds["end"] - bounds["start"]) / POINTS)))


def _queries(name: str, r: str) -> dict[str, str]:
    """The PromQL of one chart, per line; `r` is the rate's range. Each query's answer is one line's series."""
    app, failures = APP_REQUESTS, APP_FAILURES
    if name == "share":
        return {"observed": f'100 * (sum(rate({app}{{path="gateway"}}[{r}])) or vector(0)) / sum(rate({app}[{r}]))'}
    if name == "requests":
        return {"by path": f"60 * sum by (path) (rate({app}[{r}]))"}
    if name == "errors":
        return {"by path": f"100 * (sum by (path) (rate({failures}[{r}])) or 0 * sum by (path) (rate({app}[{r}])))"
                           f" / sum by (path) (rate({app}[{r}]))",
                "gateway (its /metrics/)": f"100 * sum(rate({metrics.FAILED}{APP_TRAFFIC}[{r}]))"
                                           f" / sum(rate({TOTAL}{APP_TRAFFIC}[{r}]))"}
    if name == "latency":
        return {"added p95": f"1000 * histogram_quantile(0.95, sum by (le) (rate({metrics.OVERHEAD}_bucket[{r}])))"}
    app = f'{{exception_class!="{metrics.DRILL_CLASS}"}}'  # rollout's own drills left out, as the gate does
    return {"fallback rate": f"100 * ((sum(rate({metrics.FALLBACKS}{app}[{r}])) or vector(0))"
                             f" + (sum(rate({metrics.FAILED_FALLBACKS}{app}[{r}])) or vector(0)))"
                             f" / sum(rate({TOTAL}{APP_TRAFFIC}[{r}]))"}


def _query_all(prom: Prometheus, charts: dict[str, dict[str, Any]], spans: dict[str, Any]) -> None:
    """Every panel's queries, concurrently; a failed query becomes its panel's problem."""
    interval = prom.longest_scrape_interval() or DEFAULT_SCRAPE_S
    jobs = []
    for name, panels in charts.items():
        for span, panel in panels.items():
            if panel is None:
                continue
            rate_range = f"{int(max(2 * panel['step_s'], 4 * interval))}s"
            for line, expr in _queries(name, rate_range).items():
                panel["queries"][line] = expr
                jobs.append((name, span, line, expr))
    with ThreadPoolExecutor(max_workers=8) as pool:
        futures = [(job, pool.submit(prom.query_range, job[3], spans[job[1]]["start"], spans[job[1]]["end"],
                                     charts[job[0]][job[1]]["step_s"])) for job in jobs]
        for (name, span, line, _), future in futures:
            panel = charts[name][span]
            try:
                answer = future.result()
            except RolloutError as exc:
                panel["problem"] = f"Prometheus cannot be queried: {exc}"
                continue
            for series in answer:
                label = series.labels.get("path") or line
                if series.points:
                    panel["series"][label] = [[t, round(v, 4)] for t, v in series.points]
    for name, panels in charts.items():
        for panel in panels.values():
            if panel is None:
                continue
            if name == "errors" and {"gateway", "direct"} & panel["series"].keys():
                panel["series"].pop("gateway (its /metrics/)", None)  # the app's own view of both paths decides
            elif name == "errors" and panel["series"]:
                panel["note"] = "the app's metrics are not in Prometheus: the gateway's own error rate only"
            if not panel["series"] and not panel["problem"]:
                panel["problem"] = _empty(name)


def _empty(name: str) -> str:
    if name in ("share", "requests"):
        return f"Prometheus holds no series of the app's {APP_REQUESTS} in this span (is it scraping the app?)"
    if name == "errors":
        return "no request through either path in this span"
    return "Prometheus holds no series of the gateway's litellm_* metrics with traffic in this span"


# --- rollout's own records -----------------------------------------------------------


def _readings(record: dict[str, Any]) -> bool:
    return all(isinstance(record.get(k), (int, float)) and not isinstance(record.get(k), bool)
               and math.isfinite(record[k]) for k in ("ts", "gateway", "app"))


def _thinned(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """At most POINTS + 1 records, evenly picked, the first and last kept: each pair is one point."""
    if len(records) <= POINTS + 1:
        return records
    stride = len(records) / POINTS
    picked = [records[int(i * stride)] for i in range(POINTS)]
    return [*picked, records[-1]]


def _samples_panel(name: str, bounds: dict[str, float], samples: list[dict[str, Any]],
                   traffic: list[dict[str, Any]]) -> dict[str, Any]:
    """One panel from consecutive records: each pair's difference is one point at the later one's time."""
    inside = _thinned([s for s in samples if s.get("metrics") and bounds["start"] <= s["ts"] <= bounds["end"]])
    readings = _thinned([r for r in traffic if bounds["start"] <= r["ts"] <= bounds["end"]])
    series: dict[str, list[list[float]]] = {}

    def add(line: str, t: float, value: float | None) -> None:
        if value is not None and math.isfinite(value):
            series.setdefault(line, []).append([t, round(value, 4)])

    if name in ("share", "requests"):
        for then, now in pairwise(readings):
            sent, through, span = now["app"] - then["app"], now["gateway"] - then["gateway"], now["ts"] - then["ts"]
            if sent < 0 or through < 0 or span <= 0:
                continue  # a restart of the app or the gateway between the two readings
            if name == "share":
                add("observed", now["ts"], 100 * through / sent if sent else None)
            else:
                add("direct", now["ts"], 60 * (sent - through) / span if sent >= through else None)
    for then, now in pairwise(inside):
        window = metrics.delta(now["metrics"], then["metrics"])
        span = now["ts"] - then["ts"]
        if window.get("invalid") or span <= 0:
            continue
        requests = window["requests"]
        if name == "requests":
            add("gateway", now["ts"], 60 * requests / span)
        elif name == "errors":
            add("gateway", now["ts"], 100 * window["failed"] / requests if requests else None)
        elif name == "latency":
            p95 = metrics.quantile(window["overhead_buckets"], 0.95)
            add("added p95", now["ts"], p95 * 1000 if p95 is not None else None)
        elif name == "fallbacks":
            fell_back = (window.get("fallbacks", 0.0) + window.get("failed_fallbacks", 0.0)
                         - window.get("drill_fallbacks", 0.0))
            add("fallback rate", now["ts"], 100 * fell_back / requests if requests else None)
    problem = note = None
    if not series:
        if name == "share":
            problem = ("no two traffic readings in this span: `rollout status` records one each time it runs "
                       "(with app.metrics_url), or set metrics.source: prometheus in rollout.yaml")
        else:
            problem = NO_SAMPLES if len(inside) < 2 else "no request in this span"
    elif name in ("requests", "errors") and "direct" not in series:
        note = ("the app's direct path is not in rollout's samples: "
                   "set metrics.source: prometheus in rollout.yaml to see both paths")
    return _panel(series, problem, note)


def _panel(series: dict[str, list[list[float]]] | None = None, problem: str | None = None, note: str | None = None,
           step_s: float | None = None) -> dict[str, Any]:
    """One chart over one span: its lines, why it has none (`problem`), what it lacks (`note`), its queries."""
    return {"series": series or {}, "problem": problem, "note": note, "step_s": step_s, "queries": {}}


__all__ = ["CHARTS", "gather_timeline"]
