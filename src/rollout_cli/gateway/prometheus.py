"""The Prometheus text format the gateway's `/metrics/` speaks: parsed into samples.

Below the checks (which read a cooldown's cause from it) and the rollout
gates (which judge a window from it), so both parse it the same way.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

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
