"""The Prometheus text format the gateway's `/metrics/` speaks: parsed into samples.

Below the checks (which read a cooldown's cause from it) and the rollout
gates (which judge a window from it), so both parse it the same way.

It also names the one counter that tells app traffic: LiteLLM labels its
request counter with the caller's user agent, and rollout's own check
requests (`rollout-check/...`) are left out of app traffic everywhere.

Values are judged before any figure is taken from them (`problems`): a
counter that is NaN, infinite or negative, a series given twice, or an
answer that is not Prometheus text at all (an HTML page) makes the figure
unknown, never a number (docs/PLAYBOOKS.md, "Metrics a gate trusts").
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from dataclasses import dataclass

from rollout_cli.errors import ExitCode, GatewayUnavailable, RolloutError
from rollout_cli.gateway.api import CHECK_USER_AGENT_PREFIX, MAX_METRICS_BYTES, check_user_agent
from rollout_cli.io.net import HttpFailure, bounded_get

TOTAL = "litellm_proxy_total_requests_metric_total"
SHOWN_PROBLEMS = 3

_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+\d+)?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Sample:
    name: str
    labels: dict[str, str]
    value: float


def parse(text: str) -> list[Sample]:
    """Samples of the Prometheus text exposition format (comments skipped)."""
    out = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if not match:
            continue
        labels = dict(_LABEL.findall(match.group(3) or ""))
        try:
            value = float(match.group(4))
        except ValueError:
            continue
        out.append(Sample(match.group(1), labels, value))
    return out


class MetricsInvalid(RolloutError):
    """The metrics answered, but with values no figure may be taken from: the figure is unknown (HOLD)."""

    exit_code = ExitCode.HOLD


_NAMING_LABELS = ("requested_model", "model", "le", "litellm_model_name", "path", "user_agent")


def _series(sample: Sample) -> str:
    """The sample's name and the labels that tell a reader which series it is (not all of LiteLLM's twenty)."""
    labels = ",".join(f'{k}="{v}"' for k, v in sorted(sample.labels.items()) if k in _NAMING_LABELS)
    return f"{sample.name}{{{labels}}}" if labels else sample.name


def problems(text: str, samples: list[Sample], names: Collection[str]) -> list[str]:
    """Why the values of the metrics `names` (and their _bucket, _count... series) cannot be trusted; [] when they can.

    Counters and histogram buckets only ever count up from 0 and each series
    appears once; anything else means the answer is not what it claims to be.
    """
    first = text.lstrip()[:1]
    if first == "<" or (not samples and any(ln.strip() and not ln.lstrip().startswith("#") for ln in text.splitlines())):
        return ["the answer is not Prometheus text (an HTML page? check the URL)"]
    found: list[str] = []
    seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
    for s in samples:
        if not any(s.name == n or s.name.startswith(n + "_") for n in names):
            continue
        key = (s.name, tuple(sorted(s.labels.items())))
        if key in seen:
            found.append(f"{_series(s)} appears twice (a duplicate series)")
        seen.add(key)
        if not math.isfinite(s.value):
            shown = "NaN" if math.isnan(s.value) else "+Inf" if s.value > 0 else "-Inf"  # as Prometheus writes them
            found.append(f"{_series(s)} is {shown}")
        elif s.value < 0 and not s.name.endswith("_created"):
            found.append(f"{_series(s)} is negative ({s.value:g})")
    if len(found) > SHOWN_PROBLEMS:
        found = [*found[:SHOWN_PROBLEMS], f"and {len(found) - SHOWN_PROBLEMS} more"]
    return found


def invalid_message(where: str, found: list[str]) -> str:
    return f"{where} cannot be trusted: " + "; ".join(found)


def is_check(sample: Sample) -> bool:
    return sample.labels.get("user_agent", "").startswith(CHECK_USER_AGENT_PREFIX)


def counter_total(text: str, name: str, where: str, *, leave_out_checks: bool = False) -> float:
    """The sum of counter `name` over its series; MetricsInvalid naming what is wrong with it."""
    samples = parse(text)
    found = problems(text, samples, [name])
    if found:
        raise MetricsInvalid(invalid_message(where, found))
    return sum(s.value for s in samples if s.name == name and not (leave_out_checks and is_check(s)))


def app_requests(text: str, where: str = "the gateway's /metrics/") -> float:
    """Requests the gateway has served since it started, rollout's own checks left out."""
    return counter_total(text, TOTAL, where, leave_out_checks=True)


class MetricsRefused(GatewayUnavailable):
    """The endpoint answered, with an HTTP error: asking again will not help."""


def scrape(url: str, key: str | None = None, timeout: float = 3.0) -> str | None:
    """The Prometheus text at `url`, read whole within `timeout` s in all and at most MAX_METRICS_BYTES;
    None when nothing listens there (connection refused).

    Standard library on purpose: rollback level 1 watches the gateway's counter
    with it, and must not pay for importing httpx before its file edits land.
    An HTTP error or an answer over the cap raises MetricsRefused (asking again
    will not help); a timeout or a broken connection, GatewayUnavailable.
    """
    headers = {"User-Agent": check_user_agent()}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    try:
        answer = bounded_get(url, headers, deadline_s=timeout, max_bytes=MAX_METRICS_BYTES)
    except HttpFailure as exc:
        if exc.kind == "refused":
            return None
        if exc.kind == "too-large":
            raise MetricsRefused(str(exc)) from None
        raise GatewayUnavailable(f"{url} does not answer: {exc.reason}") from None
    if answer.status != 200:
        raise MetricsRefused(f"{url} answered HTTP {answer.status}")
    return answer.text()
