"""The latency a gateway adds, measured as the app feels it: interleaved pairs, gateway vs direct.

Each pair sends the same request twice, back to back: once straight to the
upstream (OpenRouter, or the simulator) and once through the gateway, each over
its own keep-alive connection, alternating which path goes first. Load on the
machine drifts over seconds; both halves of a pair feel the same drift, so it
cancels in the per-pair difference. Warm-up pairs (connection set-up, the
proxy's first-call paths) are sent and not counted. With concurrency c, c
workers send pairs at the same time, as c app users would.

The figures are percentiles of the per-pair difference (gateway minus direct):
what one request of the app pays for going through the gateway. Latency the
gateway's own metrics cannot see (the HTTP server before LiteLLM's handler
runs, response serialization after it) is in them.

`benchmarks/gateway.py` and `rollout sandbox traffic` use it; it sends real
requests, so it is for the sandbox or a quota that can afford 2 x pairs.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from rollout_cli.gateway.api import GatewayClient

Send = Callable[[], float | None]  # one request; its wall time in ms, or None when it failed

PROBE_PROMPT = "ping: reply with the single word pong"


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank q-th percentile (0 < q <= 100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


@dataclass
class PairedLatency:
    """What `measure_pairs` saw: the counted pairs only (warm-up and failed pairs left out)."""

    concurrency: int
    direct_ms: list[float] = field(default_factory=list)
    gateway_ms: list[float] = field(default_factory=list)
    warmup: int = 0
    failed: int = 0
    gave_up: bool = False  # stopped after `give_up_after` failed pairs in a row

    @property
    def pairs(self) -> int:
        return len(self.direct_ms)

    @property
    def added_ms(self) -> list[float]:
        return [g - d for d, g in zip(self.direct_ms, self.gateway_ms, strict=True)]

    def added(self, q: float) -> float | None:
        return percentile(self.added_ms, q)

    def summary(self) -> dict[str, Any]:
        def row(values: list[float]) -> dict[str, float | None]:
            return {f"p{q}": _round(percentile(values, q)) for q in (50, 95, 99)}

        return {
            "concurrency": self.concurrency,
            "pairs": self.pairs,
            "warmup": self.warmup,
            "failed": self.failed,
            "added_ms": row(self.added_ms),
            "direct_ms": row(self.direct_ms),
            "gateway_ms": row(self.gateway_ms),
        }


def measure_pairs(direct: Send, gateway: Send, *, pairs: int, concurrency: int = 1, warmup: int = 5,
                  give_up_after: int | None = None) -> PairedLatency:
    """Send `warmup` + `pairs` interleaved pairs with `concurrency` workers; count the last `pairs`.

    A pair where either request failed is counted in `failed` and left out of
    the figures (a failure's time says nothing about the path's latency).
    `give_up_after` failed pairs in a row (warm-up included) stop the run: a
    path that keeps failing (a fault, retries with back-off) would otherwise
    hold the caller for every remaining pair.
    """
    if pairs < 1 or concurrency < 1 or warmup < 0:
        raise ValueError(f"pairs {pairs}, concurrency {concurrency}, warmup {warmup}: need pairs, concurrency >= 1")
    result = PairedLatency(concurrency, warmup=warmup)
    lock = threading.Lock()
    issued = 0
    failing = 0  # failed pairs in a row

    def next_index() -> int | None:
        nonlocal issued
        with lock:
            if issued >= warmup + pairs or result.gave_up:
                return None
            issued += 1
            return issued - 1

    def worker() -> None:
        while (index := next_index()) is not None:
            # Alternate which path goes first, so neither always gets the warmer socket or CPU.
            if index % 2 == 0:
                d, g = direct(), gateway()
            else:
                g, d = gateway(), direct()
            nonlocal failing
            with lock:
                failing = failing + 1 if d is None or g is None else 0
                if give_up_after is not None and failing >= give_up_after:
                    result.gave_up = True
            if index < warmup:
                continue
            with lock:
                if d is None or g is None:
                    result.failed += 1
                else:
                    result.direct_ms.append(d)
                    result.gateway_ms.append(g)

    if concurrency == 1:
        worker()
    else:
        with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="pairs") as pool:
            for future in [pool.submit(worker) for _ in range(concurrency)]:
                future.result()
    return result


def completion_sender(client: GatewayClient, model: str, prompt: str = PROBE_PROMPT, max_tokens: int = 16) -> Send:
    """One chat completion of `model` through `client`, as a `Send`: its time when it answered 200 with content."""

    def send() -> float | None:
        seen = client.complete(model, prompt, max_tokens=max_tokens)
        return seen.latency_ms if seen.status == 200 and not seen.error else None

    return send


def measure_gateway(
    gateway: GatewayClient, direct: GatewayClient, alias: str, upstream_id: str,
    *, pairs: int, concurrency: int = 1, warmup: int = 5, prompt: str = PROBE_PROMPT,
    give_up_after: int | None = None,
) -> PairedLatency:
    """Paired completions: `alias` through the gateway against `upstream_id` straight to the upstream.

    `direct` is a client whose base URL is the upstream's API root (its
    `/v1/chat/completions` is the upstream's), so both paths get the same body
    apart from the model name.
    """
    return measure_pairs(
        completion_sender(direct, upstream_id, prompt),
        completion_sender(gateway, alias, prompt),
        pairs=pairs, concurrency=concurrency, warmup=warmup, give_up_after=give_up_after,
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)
