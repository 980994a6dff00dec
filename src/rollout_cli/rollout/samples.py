"""Samples `rollout watch` records in `.rollout/samples.jsonl`, so `advance` can judge a window.

The file is bounded: past MAX_BYTES the oldest half is dropped (atomic rewrite
under the workspace lock), so a watch left running for weeks cannot fill a disk.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from rollout_cli.core.audit import append_line, read_lines, utc_now
from rollout_cli.io.atomic import atomic_write_text
from rollout_cli.io.lock import WorkspaceLock

SAMPLES_NAME = "samples.jsonl"
MAX_BYTES = 4 * 1024 * 1024


class SampleStore:
    def __init__(self, state_dir: Path, max_bytes: int = MAX_BYTES) -> None:
        self.state_dir = state_dir
        self.path = state_dir / SAMPLES_NAME
        self.max_bytes = max_bytes

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
        return [r for r in read_lines(self.path) if since_ts is None or r.get("ts", 0) >= since_ts]
