"""Every request a check sends goes through a RequestBudget: counted, capped, retried on Retry-After.

Free models are rate-limited, and a check must not cause the failures it
looks for. So each completion is sent with the gateway's own retries off
(`num_retries: 0`: otherwise LiteLLM silently sends up to three upstream
requests per call, and a 429 sleeps inside the gateway), and the only retry is
ours: one, after the Retry-After the answer asked for, when that wait is
short and the cap leaves room for it.

Checks of one decision (health and smoke in `advance`) share their answers
through `SharedAnswers`: the same question to the same model is sent once, and
the second check reads the first one's answer (counted as shared, not sent).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from rollout_cli.gateway.api import Completion, GatewayClient

RETRY_WAIT_MAX_S = 10.0  # a longer Retry-After is reported as rate-limited, not waited for
TIMEOUT_GRACE_S = 2.0  # the gateway gets the per-model timeout; we wait a little longer for its 408


class SharedAnswers:
    """Answers of one decision's checks, by question: the first asker sends, later askers wait and read.

    A question is the model, the prompt, max_tokens, fallbacks on or off and
    any extra body keys; not the timeout: the first asker's timeout (and retry
    policy) decides the shared answer.
    """

    def __init__(self) -> None:
        self._answers: dict[str, Future[Completion]] = {}
        self._lock = threading.Lock()

    def claim(self, key: str) -> tuple[Future[Completion], bool]:
        """The future for `key`, and whether the caller must send the request and fill it in."""
        with self._lock:
            found = self._answers.get(key)
            if found is not None:
                return found, False
            self._answers[key] = Future()
            return self._answers[key], True


def question_key(alias: str, prompt: str, max_tokens: int, disable_fallbacks: bool, extra: dict[str, Any] | None) -> str:
    return json.dumps([alias, prompt, max_tokens, disable_fallbacks, extra or {}], sort_keys=True, default=str)


@dataclass
class RequestBudget:
    """Counts (and caps) the completions one check run sends through the gateway."""

    client: GatewayClient
    cap: int | None = None
    planned: int = 0
    retries: int = 1
    retry_wait_max_s: float = RETRY_WAIT_MAX_S
    sleep: Callable[[float], None] = time.sleep
    shared: SharedAnswers | None = None  # answers shared with the other checks of one decision
    sent: int = 0
    retried: int = 0
    reused: int = 0
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
        and the number of requests it took: 0 when another check of the decision already asked."""
        if self.shared is None:
            return self._send(alias, prompt, max_tokens, timeout, disable_fallbacks, extra, retry)
        answer, mine = self.shared.claim(question_key(alias, prompt, max_tokens, disable_fallbacks, extra))
        if not mine:
            with self._lock:
                self.reused += 1
                self._first_sends += 1  # planned, and answered: no longer owed
            return answer.result(), 0
        try:
            seen, sent = self._send(alias, prompt, max_tokens, timeout, disable_fallbacks, extra, retry)
        except BaseException as exc:
            answer.set_exception(exc)
            raise
        answer.set_result(seen)
        return seen, sent

    def _send(
        self, alias: str, prompt: str, max_tokens: int, timeout: float, disable_fallbacks: bool,
        extra: dict[str, Any] | None, retry: bool,
    ) -> tuple[Completion, int]:
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
            "shared": self.reused,
            "cap": self.cap,
            "by_model": dict(self.by_model),
        }
