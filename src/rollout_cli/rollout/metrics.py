"""The gateway's Prometheus metrics: parse the text format, and judge a window.

Counters and histograms are cumulative since the proxy started, so a window's
figures are the difference between two scrapes: one taken now and one taken
at (or just after) the window's start, recorded by `rollout watch`.

A summary or a window whose values cannot be trusted (NaN, infinite,
negative, duplicate series, not Prometheus text; a counter that went down
while the gateway did not restart) carries `invalid`, a list of what is
wrong, and no figures: a gate judges it inconclusive and names it, and the
sample store never keeps it.
"""

from __future__ import annotations

import math
from typing import Any

from rollout_cli.gateway.prometheus import TOTAL, Sample, invalid_message, parse, problems
from rollout_cli.gateway.prometheus import is_check as _is_check

FAILED = "litellm_proxy_failed_requests_metric_total"
OVERHEAD = "litellm_overhead_latency_metric"
LATENCY = "litellm_request_total_latency_metric"
FALLBACKS = "litellm_deployment_successful_fallbacks_total"
FAILED_FALLBACKS = "litellm_deployment_failed_fallbacks_total"  # fallbacks tried that failed too
# The exception_class of the fallbacks rollout's own drill forces: LiteLLM's mock_testing_fallbacks raises a bare
# InternalServerError (no provider, so no "Openrouter." prefix as every upstream failure has). Told apart by this
# label, a drill's fallbacks never count as the app's, whenever they happen and however many hops they take.
DRILL_CLASS = "InternalServerError"
DEPLOYMENT_STATE = "litellm_deployment_state"
STARTED = "process_start_time_seconds"  # prometheus_client's: changes when the gateway restarts
JUDGED = (TOTAL, FAILED, OVERHEAD, LATENCY, FALLBACKS, FAILED_FALLBACKS, DEPLOYMENT_STATE, STARTED)
COUNTERS = ("requests", "failed", "check_requests", "fallbacks", "failed_fallbacks", "drill_fallbacks")

__all__ = ["Sample", "add_up", "delta", "invalid_reason", "parse", "quantile", "summarize"]


def is_drill(labels: dict[str, str]) -> bool:
    """Whether a fallback counter's series counts the fallbacks of rollout's own drills (DRILL_CLASS)."""
    return labels.get("exception_class") == DRILL_CLASS


def invalid_reason(summary: dict[str, Any]) -> str | None:
    """Why a summary or window cannot be judged, in one line; None when it can."""
    found = summary.get("invalid")
    return invalid_message("the gateway's /metrics/", found) if found else None


def summarize(text: str) -> dict[str, Any]:
    """The figures a gate needs from one scrape, as plain JSON-ready data.

    Request and failure counts leave out rollout's own check requests (sent with
    fallbacks off, they fail where app traffic would fall back); the latency
    histograms carry no user agent, so they include them.
    """
    samples = parse(text)
    found = problems(text, samples, JUDGED)
    if found:
        return {"invalid": found, "has_litellm_metrics": any(s.name.startswith("litellm_") for s in samples)}

    def total(name: str) -> float:
        return sum(s.value for s in samples if s.name == name and not _is_check(s))

    def checks(name: str) -> float:
        return sum(s.value for s in samples if s.name == name and _is_check(s))

    def buckets(name: str) -> dict[str, float]:
        out: dict[str, float] = {}
        for s in samples:
            if s.name == f"{name}_bucket" and "le" in s.labels:
                out[s.labels["le"]] = out.get(s.labels["le"], 0.0) + s.value
        return out

    models: dict[str, dict[str, float]] = {}
    for s in samples:
        if s.name in (TOTAL, FAILED) and not _is_check(s):
            alias = s.labels.get("requested_model") or s.labels.get("model_group") or s.labels.get("model") or "?"
            row = models.setdefault(alias, {"requests": 0.0, "failed": 0.0})
            row["requests" if s.name == TOTAL else "failed"] += s.value
    states: dict[str, float] = {}
    for s in samples:
        if s.name == DEPLOYMENT_STATE:
            key = s.labels.get("litellm_model_name") or s.labels.get("model") or s.labels.get("api_base", "?")
            states[key] = max(states.get(key, 0.0), s.value)
    return {
        "requests": total(TOTAL),
        "failed": total(FAILED),
        "check_requests": checks(TOTAL),
        "fallbacks": total(FALLBACKS),
        "failed_fallbacks": total(FAILED_FALLBACKS),
        "drill_fallbacks": sum(s.value for s in samples if s.name in (FALLBACKS, FAILED_FALLBACKS) and is_drill(s.labels)),
        "overhead_buckets": buckets(OVERHEAD),
        "latency_buckets": buckets(LATENCY),
        "deployment_state": states,
        "models": models,
        "has_litellm_metrics": any(s.name.startswith("litellm_") for s in samples),
        "started": next((s.value for s in samples if s.name == STARTED), None),
    }


def add_up(parts: dict[str, dict[str, Any]], summed: list[dict[str, Any]], missing: list[str]) -> dict[str, Any]:
    """Several replicas' summaries as one: every counter and bucket added up, series by series.

    `parts` are the replicas' own summaries by slot (kept under `replicas`, so a
    later delta is taken replica by replica: one replica's restart resets only its
    own counters); `summed` says which replicas are in the sum. A replica in
    `missing` (it did not answer) makes the sum incomplete: `invalid` names it, so
    no gate judges a window without it and no sample keeps it.
    """
    invalid = [f"replica {slot}: {why}" for slot, part in parts.items() for why in part.get("invalid") or []]
    invalid += missing
    if invalid:
        return {"invalid": invalid, "has_litellm_metrics": True, "summed": summed}
    out: dict[str, Any] = {key: sum(p.get(key, 0.0) for p in parts.values()) for key in COUNTERS}
    for key in ("overhead_buckets", "latency_buckets"):
        out[key] = {}
        for part in parts.values():
            for le, value in part[key].items():
                out[key][le] = out[key].get(le, 0.0) + value
    models: dict[str, dict[str, float]] = {}
    states: dict[str, float] = {}
    for part in parts.values():
        for alias, row in part.get("models", {}).items():
            into = models.setdefault(alias, {})
            for k, v in row.items():
                into[k] = into.get(k, 0.0) + v
        for key, value in part.get("deployment_state", {}).items():
            states[key] = max(states.get(key, 0.0), value)  # the worst replica's view of a deployment
    out.update(models=models, deployment_state=states, started=None, summed=summed, replicas=parts,
               has_litellm_metrics=any(p.get("has_litellm_metrics") for p in parts.values()))
    return out


def restarted(now: dict[str, Any], then: dict[str, Any]) -> bool:
    """Whether the gateway restarted between two scrapes, so its counters began again at 0.

    Its process start time says so where both scrapes carry it; without it
    (older samples, a gateway that does not export it), the request counter
    going down is taken for a restart, as Prometheus's own rate() does.
    """
    if now.get("started") is not None and then.get("started") is not None:
        return bool(now["started"] != then["started"])
    return bool(now["requests"] < then["requests"])


def delta(now: dict[str, Any], then: dict[str, Any] | None) -> dict[str, Any]:
    """`now` minus `then`; when the proxy restarted in between, `now` alone (counters reset).

    A counter lower than before without a restart is no window at all: `invalid` names it.
    """
    if now.get("invalid") or then is None:
        return now
    if now.get("replicas") is not None and then.get("replicas") is not None:  # replica by replica, then summed
        parts = {slot: delta(part, then["replicas"].get(slot)) for slot, part in now["replicas"].items()}
        return add_up(parts, now.get("summed") or [], [])
    if restarted(now, then):
        return now
    fell = [f"{key} went down from {then.get(key, 0.0):g} to {now.get(key, 0.0):g} without a gateway restart"
            for key in COUNTERS if now.get(key, 0.0) < then.get(key, 0.0)]
    fell += [f"{key} bucket le={le} went down without a gateway restart"
             for key in ("overhead_buckets", "latency_buckets")
             for le, v in now[key].items() if v < then[key].get(le, 0.0)]
    if fell:
        return {"invalid": fell, "has_litellm_metrics": True}
    out = dict(now)
    for key in ("requests", "failed", "fallbacks", "failed_fallbacks", "drill_fallbacks"):
        out[key] = now.get(key, 0.0) - then.get(key, 0.0)  # samples older than a key count it as 0
    for key in ("overhead_buckets", "latency_buckets"):
        out[key] = {le: v - then[key].get(le, 0.0) for le, v in now[key].items()}
    before = then.get("models", {})
    out["models"] = {
        alias: {k: v - before.get(alias, {}).get(k, 0.0) for k, v in row.items()}
        for alias, row in now.get("models", {}).items()
    }
    return out


def quantile(buckets: dict[str, float], q: float) -> float | None:
    """The q-quantile (seconds) of a cumulative histogram, interpolated within a bucket."""
    bounds = sorted(((math.inf if le == "+Inf" else float(le)), count) for le, count in buckets.items())
    if not bounds or bounds[-1][1] <= 0:
        return None
    rank = q * bounds[-1][1]
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in bounds:
        if count >= rank:
            if math.isinf(bound):
                return prev_bound  # beyond the last finite bucket: its bound is all we know
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return None
