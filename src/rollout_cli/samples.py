"""Samples `rollout watch` records in `.rollout/samples.jsonl`, so `advance` can judge a window.

The file is bounded: past MAX_BYTES the oldest half is dropped (atomic rewrite
under the workspace lock), so a watch left running for weeks cannot fill a disk.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from .atomic import atomic_write_text
from .audit import utc_now
from .lock import WorkspaceLock

SAMPLES_NAME = "samples.jsonl"
MAX_BYTES = 4 * 1024 * 1024


class SampleStore:
    def __init__(self, state_dir: Path, max_bytes: int = MAX_BYTES) -> None:
        self.state_dir = state_dir
        self.path = state_dir / SAMPLES_NAME
        self.max_bytes = max_bytes

    def append(self, sample: dict[str, Any]) -> dict[str, Any]:
        record = {"time": utc_now(), "ts": round(time.time(), 3), **sample}
        line = (json.dumps(record, default=str) + "\n").encode()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
        if self.path.stat().st_size > self.max_bytes:
            self._compact()
        return record

    def _compact(self) -> None:
        with WorkspaceLock(self.state_dir, command="rollout watch (compacting samples)"):
            lines = self.path.read_text(encoding="utf-8").splitlines(keepends=True)
            keep = lines[len(lines) // 2 :]
            atomic_write_text(self.path, "".join(keep))

    def records(self, since_ts: float | None = None) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        out = []
        for raw in self.path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                record = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict) and (since_ts is None or record.get("ts", 0) >= since_ts):
                out.append(record)
        return out
