"""`rollout sandbox traffic`: app-like traffic, split the way the sample app splits it.

Each simulated user is bucketed as the app's router does (a stable hash mod
100); users below the rollout percentage go through the gateway, the others
straight to the (simulated) OpenRouter. So the gateway gets real metrics to
judge, and both paths' latency can be compared.
"""

from __future__ import annotations

import hashlib
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
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
from rollout_cli.sandbox.state import load_state
from rollout_cli.simulator import GATEWAY_ALIASES

APP_USER_AGENT = "sample-app/1.0 (rollout sandbox traffic)"  # app traffic, not a check: it counts
MAX_RPS = 50.0
MAX_DURATION_S = 3600.0
ADDED_LATENCY_PAIRS = 20  # after the traffic: the simulator has no quota, and 20 pairs give a stable p50
ADDED_LATENCY_WARMUP = 3
PROMPTS = ("ping", "Summarize our refund policy in one sentence.", "Reply with json: an object {\"ok\": true}")


def bucket(user: str) -> int:
    """The sample app's bucketing (server/model-router.ts): 31-hash of the user id, mod 100."""
    h = 0
    for c in user:
        h = (h * 31 + ord(c)) & 0xFFFFFFFF
    return h % 100


def _p(values: list[float], q: float) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return round(values[0], 1)
    return round(statistics.quantiles(values, n=100, method="inclusive")[int(q * 100) - 1], 1)


@dataclass(frozen=True)
class TrafficPayload:
    """`rollout sandbox traffic`: what was sent down each path, and how it went."""

    dir: str
    percentage: int
    model: str
    rps: float
    duration_s: float
    requests: int
    paths: dict[str, Any]  # gateway | direct -> requests, ok, failed, statuses, latency_p50_ms, latency_p95_ms

    def to_json(self) -> dict[str, Any]:
        return {"dir": self.dir, "percentage": self.percentage, "model": self.model, "rps": self.rps,
                "duration_s": self.duration_s, "requests": self.requests, "paths": self.paths}


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
    ws = load_workspace(root)
    topology = load_topology(ws.gateway.config)
    alias = model or (topology.primary if topology else "glm-4.5-air")
    if alias not in GATEWAY_ALIASES:
        raise InputError(f"unknown model {alias!r}; use one of {', '.join(GATEWAY_ALIASES)}")
    percentage = read_stage(ws).env_effective
    total = max(1, round(rps * duration))
    results: list[dict[str, Any]] = []
    lock = threading.Lock()

    gateway = GatewayClient(ws.gateway.url, ws.gateway.key.require(), timeout=30.0, user_agent=APP_USER_AGENT)
    direct = GatewayClient(state.simulator_api_base.removesuffix("/v1"), state.simulator_key, timeout=30.0)

    def one(i: int) -> None:
        user = "u-" + hashlib.sha1(str(i).encode()).hexdigest()[:10]  # ids as varied as real ones
        prompt = PROMPTS[i % len(PROMPTS)]
        if bucket(user) < percentage:
            seen = gateway.complete(alias, prompt, max_tokens=32)
            path = "gateway"
        else:
            seen = direct.complete(GATEWAY_ALIASES[alias], prompt, max_tokens=32)
            path = "direct"
        with lock:
            results.append({"path": path, "status": seen.status, "latency_ms": seen.latency_ms,
                            "error": seen.error, "served_by": seen.served_by})

    started = time.monotonic()
    try:
        with ThreadPoolExecutor(max_workers=min(32, max(2, int(rps * 2)))) as pool:
            for i in range(total):
                delay = started + i / rps - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                pool.submit(one, i)
    except KeyboardInterrupt:
        pass
    finally:
        gateway.close()
        direct.close()
    took = time.monotonic() - started
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
    payload = TrafficPayload(str(root), percentage, alias, rps, round(took, 2), len(results), paths)
    g, d = paths["gateway"], paths["direct"]
    messages = [f"sent {len(results)} requests in {took:.1f} s at {percentage}% through the gateway: "
                f"{g['requests']} via the gateway ({g['failed']} failed), {d['requests']} direct ({d['failed']} failed)"]
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
        seen = measure_gateway(gateway, direct, alias, GATEWAY_ALIASES[alias], pairs=pairs, warmup=ADDED_LATENCY_WARMUP)
    p50, p95 = seen.added(50), seen.added(95)
    if p50 is None or p95 is None:
        return f"the gateway's added latency was not measured: {seen.failed} of {pairs} paired requests failed"
    return (f"the gateway adds about {p50:.1f} ms (p50; p95 {p95:.1f} ms) over {seen.pairs} paired requests, "
            "gateway vs direct, same prompt")
