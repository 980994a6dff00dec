"""Samples `rollout watch` records in `.rollout/samples.jsonl`, so `advance` can judge a window.

The file is bounded: past MAX_BYTES the oldest half is dropped (atomic rewrite
under the workspace lock), so a watch left running for weeks cannot fill a disk.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rollout_cli.core.audit import append_line, finite_number, json_lines, utc_now
from rollout_cli.io.atomic import atomic_write_text
from rollout_cli.io.lock import WorkspaceLock

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
        """The samples from `since_ts`, oldest first; `skipped` counts the lines that are not samples."""
        out = []
        self.skipped = 0
        for record in json_lines(self.path, MAX_LINE_BYTES):
            if not _well_formed(record):
                self.skipped += 1  # a torn write or a hand edit: never a crash of `report` or `advance`
            elif since_ts is None or record["ts"] >= since_ts:
                out.append(record)
        return out


def _well_formed(record: Any) -> bool:
    """The keys the gates read have the types `watch` writes."""
    return (isinstance(record, dict) and finite_number(record.get("ts")) and isinstance(record.get("time"), str)
            and isinstance(record.get("metrics") or {}, dict))
