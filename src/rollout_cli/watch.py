"""`rollout watch`: sample the gateway during a soak and record the samples.

A sample costs no model request by default: one /metrics/ scrape (error rate,
latency, fallbacks, per-model state) and the liveliness probe. Free models are
rate-limited, so real completions per model (`probe=True`) are opt-in.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from . import metrics
from .gates import scrape_metrics, stage_started
from .plan import load_plan
from .playbook.model import format_duration
from .result import Result
from .samples import SampleStore
from .stage import read_stage
from .workspace import Workspace

STATE_NAMES = {0: "ok", 1: "partial outage", 2: "cooldown"}


def take_sample(ws: Workspace, previous: dict[str, Any] | None, probe: bool = False) -> dict[str, Any]:
    """One sample, recorded in .rollout/samples.jsonl, plus the view computed from it."""
    from .gateway_api import GatewayClient
    from .gates import record_ts

    stage = read_stage(ws)
    plan = load_plan(ws.playbooks)
    scrape, error = scrape_metrics(ws)
    with GatewayClient(ws.gateway.url, None, timeout=3.0) as client:
        live = client.liveliness()
    health = None
    if probe:
        from .checks.health import check_health

        report = check_health(ws, container=False)
        health = {m.alias: m.status for m in report.models}
    record = SampleStore(ws.state_dir).append({
        "stage": stage.percentage, "source": "watch", "metrics": scrape, "metrics_error": error,
        "alive": live.ok, "health": health,
    })
    started = stage_started(ws, stage.percentage)
    need = plan.soak_for(stage.percentage)
    elapsed = time.time() - record_ts(started) if started else None
    view: dict[str, Any] = {
        "time": record["time"],
        "stage": stage.percentage,
        "drift": stage.drift,
        "soak": {"elapsed_s": elapsed, "need_s": need,
                 "text": f"{format_duration(elapsed)} of {format_duration(need)}" if elapsed is not None
                 else "unknown (no audit record of entering this stage)"},
        "alive": live.ok,
        "metrics_error": error,
        "health": health,
    }
    if scrape is not None:
        window_base = _first_in_window(ws, plan, stage.percentage, started)
        window = metrics.delta(scrape, window_base)
        step = metrics.delta(scrape, previous) if previous else None
        view["window"] = _figures(window)
        view["since_last"] = _figures(step) if step else None
        view["models"] = _models(ws, scrape, step)
    return {"record": record, "scrape": scrape, "view": view}


def _first_in_window(ws: Workspace, plan: Any, stage: int, started: dict[str, Any] | None) -> dict[str, Any] | None:
    from .gates import record_ts

    start = max(record_ts(started) if started else 0.0, time.time() - plan.soak_for(stage))
    for s in SampleStore(ws.state_dir).records(since_ts=start):
        if s.get("metrics"):
            return s["metrics"]
    return None


def _figures(window: dict[str, Any]) -> dict[str, Any]:
    requests, failed = window["requests"], window["failed"]

    def ms(buckets: dict[str, float], q: float) -> float | None:
        value = metrics.quantile(buckets, q)
        return round(value * 1000, 1) if value is not None else None

    return {
        "requests": requests,
        "failed": failed,
        "error_rate": (failed / requests) if requests else None,
        "fallbacks": window["fallbacks"],
        "latency_p50_ms": ms(window["latency_buckets"], 0.5),
        "latency_p95_ms": ms(window["latency_buckets"], 0.95),
        "overhead_p95_ms": ms(window["overhead_buckets"], 0.95),
    }


def _models(ws: Workspace, scrape: dict[str, Any], step: dict[str, Any] | None) -> list[dict[str, Any]]:
    """A row per model of the gateway config (else per model seen in the metrics)."""
    from .checks.topology import load_topology

    topology = load_topology(ws.gateway.config)
    upstream = {m.alias: m.model.removeprefix("openrouter/") for m in topology.models} if topology else {}
    seen = scrape.get("models", {})
    aliases = list(upstream) or sorted(seen)
    states = scrape.get("deployment_state", {})
    rows = []
    for alias in aliases:
        row = seen.get(alias, {"requests": 0.0, "failed": 0.0})
        key = upstream.get(alias, alias)
        state = next((v for k, v in states.items() if k.endswith(key)), None)
        recent = (step or {}).get("models", {}).get(alias, {})
        rows.append({
            "model": alias,
            "state": STATE_NAMES.get(int(state), str(state)) if state is not None else "unknown",
            "requests": row["requests"], "failed": row["failed"],
            "recent_requests": recent.get("requests"), "recent_failed": recent.get("failed"),
        })
    return rows


def watch(
    ws: Workspace,
    *,
    interval: float = 30.0,
    count: int | None = None,
    probe: bool = False,
    on_sample: Callable[[dict[str, Any]], None] | None = None,
) -> Result:
    """Sample until `count` samples (or Ctrl-C); the last view is the result."""
    previous = None
    taken = 0
    last: dict[str, Any] = {}
    try:
        while True:
            sample = take_sample(ws, previous, probe)
            previous = sample["scrape"] or previous
            last = sample["view"]
            taken += 1
            if on_sample:
                on_sample(last)
            if count is not None and taken >= count:
                break
            time.sleep(interval)
    except KeyboardInterrupt:
        pass
    return Result("watch", {"samples_taken": taken, "path": str(SampleStore(ws.state_dir).path), "last": last},
                  [f"{taken} sample(s) recorded in {SampleStore(ws.state_dir).path}"])
