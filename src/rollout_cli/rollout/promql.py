"""A Prometheus server's query API, bounded: the window gates' evidence when `metrics.source` is prometheus
(instant queries), and the HTML report's charts (range queries).

Every query has a total deadline (connect, wait and read together) and a byte
cap on the answer, so a slow or huge answer costs a bounded time and memory and
makes the gates inconclusive instead of hanging a decision. Standard library
on purpose: `advance --dry-run` pays no httpx import for a few GETs.
"""

from __future__ import annotations

import json
import math
import re
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from rollout_cli.errors import UnavailableError
from rollout_cli.io.net import HttpFailure, bounded_get

QUERY_DEADLINE_S = 3.0
MAX_ANSWER_BYTES = 1 << 20  # a window's sums are a few series; a megabyte is a query gone wrong


class PrometheusUnavailable(UnavailableError):
    """Prometheus did not answer a query, answered an error, or answered more than the cap."""


@dataclass(frozen=True)
class Series:
    labels: dict[str, str]
    value: float


@dataclass(frozen=True)
class RangeSeries:
    labels: dict[str, str]
    points: list[tuple[float, float]]  # (epoch seconds, value), NaN and infinite values left out


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
        answer = self._answer(f"{self.url}/api/v1/query?{params}")
        data = answer.get("data") or {}
        if data.get("resultType") == "scalar":
            return [Series({}, _number(data["result"][1]))]
        if data.get("resultType") != "vector":
            raise PrometheusUnavailable(f"Prometheus {self.url} answered a {data.get('resultType')}, not a vector")
        return [Series(dict(r.get("metric") or {}), _number(r["value"][1])) for r in data.get("result") or []]

    def query_range(self, expr: str, start: float, end: float, step: float) -> list[RangeSeries]:
        """The range vector of `expr` from `start` to `end` (epoch seconds) every `step` seconds."""
        self.queries += 1
        params = urllib.parse.urlencode({"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}",
                                         "step": f"{step:g}", "timeout": f"{self.deadline_s:g}s"})
        answer = self._answer(f"{self.url}/api/v1/query_range?{params}")
        data = answer.get("data") or {}
        if data.get("resultType") != "matrix":
            raise PrometheusUnavailable(f"Prometheus {self.url} answered a {data.get('resultType')}, not a matrix")
        out = []
        for r in data.get("result") or []:
            points = [(float(t), v) for t, v in ((t, _number(v)) for t, v in r.get("values") or [])
                      if math.isfinite(v)]
            out.append(RangeSeries(dict(r.get("metric") or {}), points))
        return out

    def longest_scrape_interval(self) -> float | None:
        """Seconds between scrapes of the slowest active target (a rate needs a few in its range); None: unknown."""
        try:
            targets = self._answer(f"{self.url}/api/v1/targets?state=active")["data"]["activeTargets"]
            return max((_seconds(t.get("scrapeInterval")) for t in targets), default=None)
        except (PrometheusUnavailable, KeyError, TypeError, ValueError):
            return None

    def _answer(self, url: str) -> dict[str, Any]:
        """The JSON of a successful answer."""
        body = self._read(url)
        try:
            answer = json.loads(body)
        except ValueError:
            raise PrometheusUnavailable(f"Prometheus {self.url} answered something that is not JSON") from None
        if not isinstance(answer, dict) or answer.get("status") != "success":
            error = answer.get("error", "no reason given") if isinstance(answer, dict) else "no reason given"
            raise PrometheusUnavailable(f"Prometheus {self.url} refused the query: {error}"[:300])
        return answer

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}

    def _read(self, url: str) -> bytes:
        # io.net's reader: a watchdog ends a dripping answer at the deadline, and no proxy is ever used
        try:
            answer = bounded_get(url, self._headers(), deadline_s=self.deadline_s, max_bytes=self.max_bytes)
        except HttpFailure as exc:
            if exc.kind == "too-large":
                raise PrometheusUnavailable(
                    f"Prometheus {self.url} answered more than {self.max_bytes} bytes; narrow the query") from None
            raise PrometheusUnavailable(f"Prometheus {self.url} does not answer: {exc.reason}") from None
        if answer.status >= 400:
            raise PrometheusUnavailable(f"Prometheus {self.url} answered HTTP {answer.status}{_error_text(answer.body)}")
        return answer.body


def _error_text(body: bytes) -> str:
    """Prometheus explains a bad query (HTTP 400/422) in its JSON body: worth one line."""
    try:
        reason = json.loads(body[:4096]).get("error")
    except (ValueError, AttributeError):
        return ""
    return f": {str(reason)[:200]}" if reason else ""


def _number(text: Any) -> float:
    """A sample's value; NaN stays NaN (the gates call it inconclusive), anything unreadable is Prometheus's fault."""
    try:
        return float(text)
    except (TypeError, ValueError):
        raise PrometheusUnavailable(f"Prometheus answered a value that is not a number: {str(text)[:40]!r}") from None


DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}


def _seconds(text: Any) -> float:
    """A Prometheus duration (`15s`, `1m30s`, `500ms`) in seconds; ValueError when it is not one."""
    found = re.fullmatch(r"((\d+)(ms|[smhdwy]))+", str(text))
    if not found:
        raise ValueError(f"not a Prometheus duration: {text!r}")
    return sum(int(n) * DURATION_UNITS[unit] for n, unit in re.findall(r"(\d+)(ms|[smhdwy])", str(text)))
