"""The Prometheus text format the gateway's `/metrics/` speaks: parsed into samples.

Below the checks (which read a cooldown's cause from it) and the rollout
gates (which judge a window from it), so both parse it the same way.

It also names the one counter that tells app traffic: LiteLLM labels its
request counter with the caller's user agent, and rollout's own check
requests (`rollout-check/...`) are left out of app traffic everywhere.
"""

from __future__ import annotations

import re
import urllib.error
import urllib.request
from dataclasses import dataclass

from rollout_cli.errors import GatewayUnavailable
from rollout_cli.gateway.api import CHECK_USER_AGENT_PREFIX, check_user_agent

TOTAL = "litellm_proxy_total_requests_metric_total"

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


def is_check(sample: Sample) -> bool:
    return sample.labels.get("user_agent", "").startswith(CHECK_USER_AGENT_PREFIX)


def app_requests(text: str) -> float:
    """Requests the gateway has served since it started, rollout's own checks left out."""
    return sum(s.value for s in parse(text) if s.name == TOTAL and not is_check(s))


class MetricsRefused(GatewayUnavailable):
    """The endpoint answered, with an HTTP error: asking again will not help."""


def scrape(url: str, key: str | None = None, timeout: float = 3.0) -> str | None:
    """The Prometheus text at `url`; None when nothing listens there (connection refused).

    Standard library on purpose: rollback level 1 watches the gateway's counter
    with it, and must not pay for importing httpx before its file edits land.
    Other HTTP errors raise GatewayUnavailable.
    """
    headers = {"User-Agent": check_user_agent()}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    # no proxy: loopback traffic must never be routed elsewhere
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(url, headers=headers), timeout=timeout) as answer:
            return str(answer.read().decode("utf-8", errors="replace"))
    except urllib.error.HTTPError as exc:
        raise MetricsRefused(f"{url} answered HTTP {exc.code}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, ConnectionRefusedError):
            return None
        raise GatewayUnavailable(f"{url} does not answer: {exc.reason}") from None
    except (TimeoutError, OSError) as exc:
        raise GatewayUnavailable(f"{url} does not answer: {exc}") from None
