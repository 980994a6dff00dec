"""Every request a check sends goes through a RequestBudget: counted, capped, retried on Retry-After.

Free models are rate-limited, and a check must not cause the failures it
looks for. So each completion is sent with the gateway's own retries off
(`num_retries: 0`: otherwise LiteLLM silently sends up to three upstream
requests per call, and a 429 sleeps inside the gateway), and the only retry is
ours: one, after the Retry-After the answer asked for, when that wait is
short and the cap leaves room for it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rollout_cli.gateway.api import Completion, GatewayClient

RETRY_WAIT_MAX_S = 10.0  # a longer Retry-After is reported as rate-limited, not waited for
TIMEOUT_GRACE_S = 2.0  # the gateway gets the per-model timeout; we wait a little longer for its 408


@dataclass
class RequestBudget:
    """Counts (and caps) the completions one check run sends through the gateway."""

    client: GatewayClient
    cap: int | None = None
    planned: int = 0
    retries: int = 1
    retry_wait_max_s: float = RETRY_WAIT_MAX_S
    sleep: Callable[[float], None] = time.sleep
    sent: int = 0
    retried: int = 0
    by_model: dict[str, int] = field(default_factory=dict)
    _first_sends: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def ask_counted(
        self,
        alias: str,
        prompt: str,
        *,
        max_tokens: int,
        timeout: float,
        disable_fallbacks: bool = True,
        extra: dict[str, Any] | None = None,
        retry: bool = True,
    ) -> tuple[Completion, int]:
        """One completion for `alias` (plus at most one retry after a short Retry-After),
        and the number of requests it took."""
        body = {"num_retries": 0, "timeout": timeout, **(extra or {})}
        attempt = 0
        while True:
            with self._lock:
                if attempt == 0:
                    self._first_sends += 1
                self.sent += 1
                self.by_model[alias] = self.by_model.get(alias, 0) + 1
            seen = self.client.complete(
                alias,
                prompt,
                max_tokens=max_tokens,
                timeout=timeout + TIMEOUT_GRACE_S,
                disable_fallbacks=disable_fallbacks,
                extra=body,
            )
            wait = seen.retry_after
            if not (retry and seen.status == 429 and wait is not None and attempt < self.retries):
                return seen, attempt + 1
            if wait > self.retry_wait_max_s or not self._room_for_retry():
                return seen, attempt + 1
            attempt += 1
            with self._lock:
                self.retried += 1
            self.sleep(max(wait, 0.0))

    def _room_for_retry(self) -> bool:
        if self.cap is None:
            return True
        with self._lock:
            still_planned = max(self.planned - self._first_sends, 0)
            return self.sent + still_planned + 1 <= self.cap

    def to_json(self) -> dict[str, Any]:
        return {
            "planned": self.planned,
            "sent": self.sent,
            "retries": self.retried,
            "cap": self.cap,
            "by_model": dict(self.by_model),
        }
