"""Samples `rollout watch` records in `.rollout/samples.jsonl`, so `advance` can judge a window.

The file is bounded: past MAX_BYTES the oldest half is dropped (atomic rewrite
under the workspace lock), so a watch left running for weeks cannot fill a disk.

Only metrics a gate may judge are kept: a summary marked `invalid` (NaN,
infinite, negative, duplicate, not Prometheus text) is stored as no metrics
with the reason in `metrics_error`, and a line holding a non-finite number
(written by an older rollout) is read as no metrics, so it can never become
a window's base.
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

from rollout_cli.core.audit import append_line, finite_number, json_lines, utc_now
from rollout_cli.io.atomic import atomic_write_text
from rollout_cli.io.lock import WorkspaceLock
from rollout_cli.rollout.metrics import invalid_reason

SAMPLES_NAME = "samples.jsonl"
MAX_BYTES = 4 * 1024 * 1024
MAX_LINE_BYTES = 1024 * 1024  # a sample holds one /metrics/ summary: kilobytes


class SampleStore:
    def __init__(self, state_dir: Path, max_bytes: int = MAX_BYTES) -> None:
        self.state_dir = state_dir
        self.path = state_dir / SAMPLES_NAME
        self.max_bytes = max_bytes
        self.skipped = 0  # lines the last read left out

    def append(self, sample: dict[str, Any]) -> dict[str, Any]:
        metrics = sample.get("metrics")
        if metrics is not None and (invalid_reason(metrics) or not finite(metrics)):
            why = invalid_reason(metrics) or "the gateway's /metrics/ holds a value that is not a finite number"
            sample = {**sample, "metrics": None, "metrics_error": why}
        record = {"time": utc_now(), "ts": round(time.time(), 3), **sample}
        append_line(self.path, record)
        if self.path.stat().st_size > self.max_bytes:
            self._compact()
        return record

    def _compact(self) -> None:
        with WorkspaceLock(self.state_dir, command="rollout watch (compacting samples)"):
            lines = self.path.read_text(encoding="utf-8").splitlines(keepends=True)
            keep = lines[len(lines) // 2 :]
            atomic_write_text(self.path, "".join(keep))

    def records(self, since_ts: float | None = None) -> list[dict[str, Any]]:
        """The samples from `since_ts`, oldest first; `skipped` counts the lines that are not samples.

        A sample whose metrics hold a non-finite number (an older rollout stored NaN) is kept as a sample
        without metrics: never a window's base.
        """
        out = []
        self.skipped = 0
        for record in json_lines(self.path, MAX_LINE_BYTES):
            if not _well_formed(record):
                self.skipped += 1  # a torn write or a hand edit: never a crash of `report` or `advance`
            elif since_ts is None or record["ts"] >= since_ts:
                if record.get("metrics") is not None and not finite(record["metrics"]):
                    record = {**record, "metrics": None, "metrics_error": "a stored value is not a finite number"}
                out.append(record)
        return out


def _well_formed(record: Any) -> bool:
    """The keys the gates read have the types `watch` writes."""
    return (isinstance(record, dict) and finite_number(record.get("ts")) and isinstance(record.get("time"), str)
            and isinstance(record.get("metrics") or {}, dict))


def finite(value: Any) -> bool:
    """Every number in `value` (nested dicts and lists) is finite."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(finite(v) for v in value.values())
    if isinstance(value, list):
        return all(finite(v) for v in value)
    return True
