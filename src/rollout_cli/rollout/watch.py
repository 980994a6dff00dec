"""`rollout watch`: sample the gateway during a soak and record the samples.

A sample costs no model request by default: one /metrics/ scrape (error rate,
latency, fallbacks, per-model state) and the liveliness probe. Free models are
rate-limited, so real completions per model (`probe=True`) are opt-in.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rollout_cli.checks.evidence import Evidence
from rollout_cli.checks.health import check_health
from rollout_cli.core.audit import StageChange
from rollout_cli.core.playbooks import format_duration
from rollout_cli.core.quota import DAY_S, QuotaRefused
from rollout_cli.core.result import Result
from rollout_cli.core.stage import read_stage
from rollout_cli.core.stagemetrics import refresh_stage_metrics
from rollout_cli.core.workspace import Workspace
from rollout_cli.gateway.topology import Topology
from rollout_cli.rollout import metrics
from rollout_cli.rollout.plan import StagePlan, load_plan
from rollout_cli.rollout.samples import SampleStore
from rollout_cli.rollout.snapshot import scrape_metrics, stage_started, window_start

STATE_NAMES = {0: "ok", 1: "partial outage", 2: "cooldown"}


def take_sample(
    ws: Workspace, plan: StagePlan, evidence: Evidence, previous: dict[str, Any] | None, probe: bool = False
) -> dict[str, Any]:
    """One sample, recorded in .rollout/samples.jsonl, plus the view computed from it.

    The stage is read anew each time (it may move during a soak); the plan, the
    gateway config and the client are the watch's own, gathered once.
    """
    stage = read_stage(ws)
    started = stage_started(ws, stage.percentage)
    window_base = _first_in_window(ws, plan, stage.percentage, started)
    scrape, error = scrape_metrics(ws, evidence.client)
    if scrape is not None:
        # Values no gate may judge (NaN, negative, a counter that went down without a restart) are named, not kept.
        error = (metrics.invalid_reason(scrape) or metrics.invalid_reason(metrics.delta(scrape, previous))
                 or metrics.invalid_reason(metrics.delta(scrape, window_base)))
        scrape = None if error else scrape
    live = evidence.client.liveliness()
    health = None
    skipped = None
    if probe:
        # A fresh Evidence per probe: each round's preflight must observe the gateway now.
        try:
            with Evidence(ws, topology=evidence.topology) as now:
                report = check_health(ws, container=False, evidence=now)
            health = {m.alias: m.status for m in report.models}
        except QuotaRefused as exc:
            skipped = str(exc)
    record = SampleStore(ws.state_dir).append({
        "stage": stage.percentage, "source": "watch", "metrics": scrape, "metrics_error": error,
        "alive": live.ok, "health": health,
    })
    refresh_stage_metrics(ws)
    need = plan.soak_for(stage.percentage)
    elapsed = time.time() - started.timestamp if started else None
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
    if skipped:
        view["probe_skipped"] = skipped
    if scrape is not None:
        window = metrics.delta(scrape, window_base)
        step = metrics.delta(scrape, previous) if previous else None
        view["window"] = _figures(window)
        view["since_last"] = _figures(step) if step else None
        view["models"] = _models(evidence.topology, scrape, step)
    return {"record": record, "scrape": scrape, "view": view}


def _first_in_window(ws: Workspace, plan: StagePlan, stage: int, started: StageChange | None) -> dict[str, Any] | None:
    for s in SampleStore(ws.state_dir).records(since_ts=window_start(plan, stage, started)):
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


def _models(topology: Topology | None, scrape: dict[str, Any], step: dict[str, Any] | None) -> list[dict[str, Any]]:
    """A row per model of the gateway config (else per model seen in the metrics)."""
    upstream = {m.alias: m.upstream_id for m in topology.models} if topology else {}
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


@dataclass(frozen=True)
class WatchPayload:
    """`rollout watch` when it ends: how many samples, where, and the last sample's view.

    With `--json` each sample's view is printed as it comes instead (schemas/watch.schema.json).
    """

    samples_taken: int
    path: str
    last: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {"samples_taken": self.samples_taken, "path": self.path, "last": self.last}


def watch(
    ws: Workspace,
    *,
    interval: float = 30.0,
    count: int | None = None,
    probe: bool = False,
    on_sample: Callable[[dict[str, Any]], None] | None = None,
) -> Result[WatchPayload]:
    """Sample until `count` samples (or Ctrl-C); the last view is the result.

    With `probe`, the completions go out only every `probe_every`-th sample, a
    cadence derived from the quota (`probe_cadence`), so a 48 h soak never spends it all.
    """
    previous = None
    taken = 0
    last: dict[str, Any] = {}
    plan = load_plan(ws.playbooks)
    evidence = Evidence(ws, timeout=3.0)
    cadence = probe_cadence(ws, evidence.topology, interval) if probe else None
    try:
        while True:
            due = cadence is not None and cadence["probe_every"] is not None and taken % cadence["probe_every"] == 0
            sample = take_sample(ws, plan, evidence, previous, due)
            if cadence is not None:
                sample["view"]["probe"] = {**cadence, "this_sample": due}
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
    finally:
        evidence.close()
    path = SampleStore(ws.state_dir).path
    messages = [f"{taken} sample(s) recorded in {path}"]
    if cadence is not None:
        messages.append(cadence["text"])
    return Result("watch", WatchPayload(taken, str(path), last), messages)


def probe_cadence(ws: Workspace, topology: Topology | None, interval: float) -> dict[str, Any]:
    """How often `watch --probe` may send a round (one completion per model) on the free quota.

    Probes get at most half of rollout's daily share, so the health, smoke and
    advance runs of the same day still fit; a round is every `probe_every`-th sample.
    """
    per_round = len(topology.aliases) if topology else 5
    allowance = ws.openrouter.allowance
    rounds = (allowance // 2) // per_round if per_round else 0
    if rounds <= 0:
        return {"per_round": per_round, "rounds_per_day": 0, "probe_every": None, "probe_interval_s": None,
                "text": f"--probe: no round fits half of rollout's {allowance} requests a day "
                        f"({per_round} per round); samples carry metrics only"}
    probe_interval = max(interval, DAY_S / rounds)
    every = max(1, math.ceil(probe_interval / interval))
    return {"per_round": per_round, "rounds_per_day": rounds, "probe_every": every,
            "probe_interval_s": every * interval,
            "text": f"--probe: one round ({per_round} requests) every {format_duration(every * interval)} "
                    f"(every {every} sample(s)): at most {rounds * per_round} of rollout's {allowance} a day"}
