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
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

from rollout_cli.errors import UnavailableError
from rollout_cli.io.net import HttpFailure, bounded_get

QUERY_DEADLINE_S = 3.0
LOOKBACK = "5m"  # Prometheus's default lookback: how far back a series' last sample still counts as alive
FRESH_WAIT_S = 5.0  # the longest a decision waits for Prometheus to scrape the targets after it began
FRESH_POLL_S = 0.2
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


def window_count(selector: str, window_s: float, by: str = "") -> str:
    """The PromQL for how much the counters `selector` grew over the last `window_s` seconds, summed `by` labels.

    Per series, the first of three that applies (they never overlap, so nothing is counted twice):
    - never reset in the window and alive before it (a sample in the lookback before its start): its
      last value minus its value before the window; exact, no extrapolation.
    - never reset in the window and born in it (or restarted just before its first sample in it: its
      first sample in it below the one before), on a target Prometheus was scraping before the window: its last
      value, counted from zero. LiteLLM creates a series at its first request (a model's failure
      series at its first failure); `increase()` alone misses every request counted before Prometheus first
      scraped it. (A target Prometheus began scraping in the window may have counted for days before: the
      third rule, from its first scrape.)
    - reset in the window (a restart): `increase()`, which counts across the reset, extrapolated to the
      window's edges by a fraction of a scrape interval. A series born in the window and then reset
      loses what it counted before its first scrape (at most one scrape interval of it).
    A series no longer exported (a restarted process that has not seen that label set again) keeps its
    count up to its last sample: range selectors ignore the staleness marker.
    """
    w = f"{max(1, round(window_s * 1000))}ms"  # exact: whole seconds would open the window up to 1 s late
    # Its value at the window's start, as the scrape then saw it: a series that scrape no longer carried (its
    # process restarted and has not seen that label set again) has none, however recent its old value: counted
    # from zero when it comes back. Only when that scrape failed (`up` 0) does its last value before stand in.
    before = (f"({selector} offset {w} or (last_over_time({selector}[{LOOKBACK}] offset {w})"
              f" and on (job, instance) (up offset {w} == 0)))")
    last = f"last_over_time({selector}[{w}])"
    reset = f"resets({selector}[{w}]) > 0"
    # with no reset in the window its first sample is its least: below the one before, it restarted in between
    restarted = f"min_over_time({selector}[{w}]) < {before}"
    kept = f"{last} - {before} unless {reset} unless {restarted}"
    scraped_before = f"last_over_time(up[{LOOKBACK}] offset {w})"
    # what `kept` leaves without a reset in the window: born in it, or restarted between the sample before it
    # and its first sample in it: either way counted from zero
    born = f"{last} unless {reset} and on (job, instance) {scraped_before}"
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} ({kept} or {born} or increase({selector}[{w}]))"


@dataclass(frozen=True)
class Freshness:
    """How current Prometheus's data was for a decision taken at `at`: the last scrape of each target that
    exports the window's counters, and the targets whose last scrape failed."""

    at: float
    end: float  # the window's end: `at`, or the newest scrape when a failed target had to be waited for
    targets: dict[str, float]  # "job instance" -> its last scrape's time (0: it failed)
    waited_s: float
    behind: list[str]  # targets whose last scrape failed, "job instance (its last scrape failed)"

    def to_json(self) -> dict[str, Any]:
        scraped = [ts for ts in self.targets.values() if ts]
        return {"waited_s": round(self.waited_s, 2), "targets": len(self.targets),
                "lag_s": round(max(0.0, self.end - min(scraped)), 2) if scraped else None,
                "behind": self.behind}

    @property
    def note(self) -> str | None:
        """A line for the report when the window's counts may be incomplete."""
        if self.behind:
            return (f"Prometheus's last scrape of {', '.join(self.behind)} failed (waited {self.waited_s:.1f} s "
                    "for a good one): that target's counters may be missing from the window")
        if not self.targets:
            return "Prometheus shows no scrape target exporting the counters (`up`): the window's end is unchecked"
        return None


def scraped_by(prom: Prometheus, at: float, metrics: tuple[str, ...], wait_s: float = FRESH_WAIT_S) -> Freshness:
    """The targets exporting one of `metrics` as Prometheus last scraped them by `at`; waits only for a failed one.

    The window ends at `at` and its counts run from scrape to scrape: what a
    target answered after its last scrape before `at` is in the next window,
    never lost, because every window's start is read the same way (the last
    scrape before it). So a healthy decision never waits for a scrape, as
    Argo Rollouts and Flagger do not: the report gives the lag (`lag_s`). A
    target whose last scrape failed has no current series (Prometheus marks
    them stale): gathering waits for its next good scrape (bounded by
    `wait_s`, and only when one is due within it) and the window then ends
    at the newest scrape; still failed, the snapshot names it.
    """
    started = time.monotonic()
    last = last_scrapes(prom, at, metrics)
    due: float | None = None  # when the failed targets are next scraped, from their last two scrapes
    while any(not ts for ts in last.values()):
        now = time.time()
        waited = time.monotonic() - started
        if waited >= wait_s:
            break
        if due is None:
            due = max((_next_scrape(prom, t, now) for t, ts in last.items() if not ts), default=now)
            if due > at + wait_s:
                break  # a long scrape interval: waiting would not help within the bound
        time.sleep(FRESH_POLL_S)
        last = last_scrapes(prom, time.time(), metrics)
    failed = sorted(t for t, ts in last.items() if not ts)
    waited = time.monotonic() - started
    newest = max(last.values(), default=0.0)
    end = newest if waited > 0 and not failed and newest > at else at
    return Freshness(at, end, last, waited if waited >= FRESH_POLL_S else 0.0,
                     [f"{t} (its last scrape failed)" for t in failed])


def _next_scrape(prom: Prometheus, target: str, now: float) -> float:
    """When `target` is next scraped: its last scrape attempt plus the gap between its last two (0: unknown)."""
    job, _, instance = target.partition(" ")
    expr = f'timestamp(up{{job="{job}",instance="{instance}"}})'
    latest = next(iter(prom.query(expr, now)), None)
    if latest is None:
        return 0.0
    before = next(iter(prom.query(expr, latest.value - 0.001)), latest)
    return 2 * latest.value - before.value


def last_scrapes(prom: Prometheus, at: float, metrics: tuple[str, ...]) -> dict[str, float]:
    """Each target exporting one of `metrics`: the time of its last scrape at or before `at` (0: it failed)."""
    names = "|".join(metrics)
    # A failed scrape's `up` sample is 0: its time becomes 0, a target behind until a scrape succeeds. A failed
    # scrape also marks the target's series stale, so which targets export the counters is read over the
    # lookback (a range selector skips the staleness markers).
    exporting = f'group by (job, instance) (last_over_time({{__name__=~"{names}"}}[{LOOKBACK}]))'
    expr = f"timestamp(up) * up and on (job, instance) {exporting}"
    return {_target(s): s.value for s in prom.query(expr, at)}


def _target(series: Series) -> str:
    return f"{series.labels.get('job', '?')} {series.labels.get('instance', '?')}"


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
