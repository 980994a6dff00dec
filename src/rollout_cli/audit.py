"""The audit trail: `.rollout/history.jsonl`, one JSON line per action.

Each record is written with a single `write(2)` on an `O_APPEND` descriptor, so
concurrent appends never interleave inside a line.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .lock import actor

HISTORY_NAME = "history.jsonl"


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def append_line(path: Path, record: dict[str, Any], *, fsync: bool = False) -> None:
    """One JSON line, in one write(2) on an O_APPEND descriptor: whole even beside other writers."""
    line = (json.dumps(record, default=str) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        if os.write(fd, line) != len(line):  # pragma: no cover - disk full mid-write
            raise OSError(f"short write to {path}")
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def read_lines(path: Path) -> list[dict[str, Any]]:
    """Every record of a JSON-lines file, oldest first; a torn line (a crashed writer) is skipped."""
    if not path.is_file():
        return []
    out: list[dict[str, Any]] = []
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict):
            out.append(record)
    return out


class AuditLog:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / HISTORY_NAME

    def append(self, command: str, **fields: Any) -> dict[str, Any]:
        """Append one record stamped with UTC time and actor; returns it."""
        record = {"time": utc_now(), "actor": actor(), "command": command, **fields}
        append_line(self.path, record, fsync=True)
        return record

    def records(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Records oldest first (the last `limit` of them)."""
        out = read_lines(self.path)
        return out[-limit:] if limit else out

    def last_change(self, key: str) -> dict[str, Any] | None:
        """The newest record that changed `key` in any file."""
        for record in reversed(self.records()):
            for change in record.get("changes", []):
                if change.get("key") == key:
                    return record
        return None
