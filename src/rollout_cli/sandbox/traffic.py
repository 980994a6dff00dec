"""`rollout sandbox traffic`: load on the running sample app, and the split it observed.

The app (sandbox/app_main.py) decides each request's path itself, through the
real OpenFeature flagd provider watching its flags file; this command only sets
its load (requests per second, for how long), waits, and reads back what it
sent down each path. So a rollback during the run shows in the split.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollout_cli.checks.latency import measure_gateway
from rollout_cli.core.result import Result
from rollout_cli.core.stage import read_stage
from rollout_cli.core.workspace import load_workspace
from rollout_cli.errors import InputError, UnavailableError
from rollout_cli.gateway.api import GatewayClient
from rollout_cli.gateway.topology import load_topology
from rollout_cli.sandbox.app import AppControl, load_app
from rollout_cli.sandbox.state import load_state
from rollout_cli.simulator import GATEWAY_ALIASES

MAX_RPS = 50.0
MAX_DURATION_S = 3600.0
ADDED_LATENCY_PAIRS = 20  # after the traffic: the simulator has no quota, and 20 pairs give a stable p50
ADDED_LATENCY_WARMUP = 3
# With a fault on the model each failing request costs the gateway's retries and back-off (seconds):
# after this many failed pairs in a row, the rest would fail too.
ADDED_LATENCY_GIVE_UP = 3
DRAIN_S = 30.0  # requests in flight when the load ends get this long to finish


def _p(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 1)
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1], 1)


@dataclass(frozen=True)
class TrafficPayload:
    """`rollout sandbox traffic`: what the app sent down each path, and how it went."""

    dir: str
    percentage: int
    model: str
    rps: float
    duration_s: float
    requests: int
    paths: dict[str, Any]  # gateway | direct -> requests, ok, failed, statuses, latency_p50_ms, latency_p95_ms
    observed_share: float | None = None  # % of the app's requests that went through the gateway
    app_runtime: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"dir": self.dir, "percentage": self.percentage, "model": self.model, "rps": self.rps,
                "duration_s": self.duration_s, "requests": self.requests, "paths": self.paths,
                "observed_share": self.observed_share, "app_runtime": self.app_runtime}


def traffic(
    root: Path, *, rps: float = 5.0, duration: float = 10.0, model: str | None = None
) -> Result[TrafficPayload]:
    if not 0 < rps <= MAX_RPS:
        raise InputError(f"--rps {rps:g} is outside (0, {MAX_RPS:g}]; choose a rate the free tier could carry")
    if not 0 < duration <= MAX_DURATION_S:
        raise InputError(f"--duration {duration:g} is outside (0, {MAX_DURATION_S:g}] seconds")

    state = load_state(root)
    if state is None:
        raise UnavailableError(f"no sandbox is up in {root}; start one with `rollout sandbox up {root}`")
    record = load_app(root)
    if record is None:
        raise UnavailableError(f"the sample app is not running in {root}; start it with `rollout sandbox app start`")
    ws = load_workspace(root)
    topology = load_topology(ws.gateway.config)
    alias = model or (topology.primary if topology else "glm-4.5-air")
    if alias not in GATEWAY_ALIASES:
        raise InputError(f"unknown model {alias!r}; use one of {', '.join(GATEWAY_ALIASES)}")
    percentage = read_stage(ws).env_effective
    control = AppControl(record.url)
    since = float(control.status()["now"])
    control.load(rps, duration, alias, GATEWAY_ALIASES[alias])
    started = time.monotonic()
    try:
        time.sleep(duration)
    except KeyboardInterrupt:
        control.load(0, 0, alias, GATEWAY_ALIASES[alias])
    took = time.monotonic() - started
    results = _drained(control, since)
    paths: dict[str, Any] = {}
    for name in ("gateway", "direct"):
        rows = [r for r in results if r["path"] == name]
        ok = [r["latency_ms"] for r in rows if r["status"] == 200 and not r["error"]]
        statuses: dict[str, int] = {}
        for r in rows:
            key = str(r["status"] or r["error"])
            statuses[key] = statuses.get(key, 0) + 1
        paths[name] = {"requests": len(rows), "ok": len(ok), "failed": len(rows) - len(ok), "statuses": statuses,
                       "latency_p50_ms": _p(ok, 0.5), "latency_p95_ms": _p(ok, 0.95)}
    g, d = paths["gateway"], paths["direct"]
    share = round(100 * g["requests"] / len(results), 1) if results else None
    payload = TrafficPayload(str(root), percentage, alias, rps, round(took, 2), len(results), paths, share,
                             record.runtime)
    messages = [f"the sample app ({record.runtime}) sent {len(results)} requests in {took:.1f} s: "
                f"{g['requests']} via the gateway ({g['failed']} failed), {d['requests']} direct ({d['failed']} failed)",
                f"observed split: {share if share is not None else '-'}% through the gateway "
                f"(configured {percentage}%)"]
    if g["latency_p50_ms"] is not None and d["latency_p50_ms"] is not None:
        messages.append(f"p50 latency: gateway {g['latency_p50_ms']} ms, direct {d['latency_p50_ms']} ms")
    messages.append(added_latency_line(ws.gateway.url, ws.gateway.key.require(), state, alias))
    if percentage == 0:
        messages.append("the rollout is at 0%: every request went direct; `rollout advance` moves users to the gateway")
    return Result("sandbox traffic", payload, messages)


def added_latency_line(gateway_url: str, key: str, state: Any, alias: str, pairs: int = ADDED_LATENCY_PAIRS) -> str:
    """What the gateway adds, measured the way benchmarks/gateway.py does (rollout_cli.checks.latency):
    the traffic above compares two different sets of users, so its p50s differ by more than the gateway."""
    with GatewayClient(gateway_url, key, timeout=30.0) as gateway, \
            GatewayClient(state.simulator_api_base.removesuffix("/v1"), state.simulator_key, timeout=30.0) as direct:
        seen = measure_gateway(gateway, direct, alias, GATEWAY_ALIASES[alias], pairs=pairs, warmup=ADDED_LATENCY_WARMUP,
                               give_up_after=ADDED_LATENCY_GIVE_UP)
    p50, p95 = seen.added(50), seen.added(95)
    if seen.gave_up:
        return (f"the gateway's added latency was not measured: {ADDED_LATENCY_GIVE_UP} paired requests in a row "
                f"failed (a fault on {alias}?), so the other pairs were not sent")
    if p50 is None or p95 is None:
        return f"the gateway's added latency was not measured: {seen.failed} of {pairs} paired requests failed"
    return (f"the gateway adds about {p50:.1f} ms (p50; p95 {p95:.1f} ms) over {seen.pairs} paired requests, "
            "gateway vs direct, same prompt")


def _drained(control: AppControl, since: float) -> list[dict[str, Any]]:
    """The app's requests since `since`, once the ones still in flight have finished (or DRAIN_S passed)."""
    deadline = time.monotonic() + DRAIN_S
    while control.status()["in_flight"] > 0 and time.monotonic() < deadline:
        time.sleep(0.1)
    return control.requests(since)
