"""A Prometheus server's instant-query API, bounded: the window gates' evidence when `metrics.source` is prometheus.

Every query has a total deadline (connect, wait and read together) and a byte
cap on the answer, so a slow or huge answer costs a bounded time and memory and
makes the gates inconclusive instead of hanging a decision. Standard library
on purpose: `advance --dry-run` pays no httpx import for a few GETs.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from typing import Any

from rollout_cli.errors import UnavailableError

QUERY_DEADLINE_S = 3.0
MAX_ANSWER_BYTES = 1 << 20  # a window's sums are a few series; a megabyte is a query gone wrong


class PrometheusUnavailable(UnavailableError):
    """Prometheus did not answer a query, answered an error, or answered more than the cap."""


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    value: float


@dataclass
class Prometheus:
    url: str
    token: str | None = None
    deadline_s: float = QUERY_DEADLINE_S
    max_bytes: int = MAX_ANSWER_BYTES
    queries: int = field(default=0)  # sent so far: the benchmark reports it

    def query(self, expr: str, at: float) -> list[Series]:
        """The instant vector `expr` evaluated at `at` (epoch seconds); a scalar answer is one series."""
        self.queries += 1
        params = urllib.parse.urlencode({"query": expr, "time": f"{at:.3f}", "timeout": f"{self.deadline_s:g}s"})
        request = urllib.request.Request(f"{self.url}/api/v1/query?{params}", headers=self._headers())
        body = self._read(request)
        try:
            answer = json.loads(body)
        except ValueError:
            raise PrometheusUnavailable(f"Prometheus {self.url} answered something that is not JSON") from None
        if answer.get("status") != "success":
            raise PrometheusUnavailable(
                f"Prometheus {self.url} refused the query: {answer.get('error', 'no reason given')}"[:300])
        data = answer.get("data") or {}
        if data.get("resultType") == "scalar":
            return [Series({}, _number(data["result"][1]))]
        if data.get("resultType") != "vector":
            raise PrometheusUnavailable(f"Prometheus {self.url} answered a {data.get('resultType')}, not a vector")
        return [Series(dict(r.get("metric") or {}), _number(r["value"][1])) for r in data.get("result") or []]

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _read(self, request: urllib.request.Request) -> bytes:
        # no proxy: loopback traffic must never be routed elsewhere
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        end = time.monotonic() + self.deadline_s
        try:
            with opener.open(request, timeout=self.deadline_s) as answer:
                chunks, size = [], 0
                while chunk := answer.read(65536):
                    size += len(chunk)
                    if size > self.max_bytes:
                        raise PrometheusUnavailable(
                            f"Prometheus {self.url} answered more than {self.max_bytes} bytes; narrow the query")
                    if time.monotonic() > end:
                        raise PrometheusUnavailable(f"Prometheus {self.url} took over {self.deadline_s:g} s to answer")
                    chunks.append(chunk)
                return b"".join(chunks)
        except urllib.error.HTTPError as exc:
            detail = _error_text(exc)
            raise PrometheusUnavailable(f"Prometheus {self.url} answered HTTP {exc.code}{detail}") from None
        except urllib.error.URLError as exc:
            raise PrometheusUnavailable(f"Prometheus {self.url} does not answer: {exc.reason}") from None
        except (TimeoutError, OSError) as exc:
            raise PrometheusUnavailable(f"Prometheus {self.url} does not answer: {exc}") from None


def _error_text(exc: urllib.error.HTTPError) -> str:
    """Prometheus explains a bad query (HTTP 400/422) in its JSON body: worth one line."""
    try:
        reason = json.loads(exc.read(4096)).get("error")
    except (ValueError, OSError, AttributeError):
        return ""
    return f": {str(reason)[:200]}" if reason else ""


def _number(text: Any) -> float:
    """A sample's value; NaN stays NaN (the gates call it inconclusive), anything unreadable is Prometheus's fault."""
    try:
        return float(text)
    except (TypeError, ValueError):
        raise PrometheusUnavailable(f"Prometheus answered a value that is not a number: {str(text)[:40]!r}") from None
