"""The audit trail: `.rollout/history.jsonl`, one JSON line per action.

Each record is written with a single `write(2)` on an `O_APPEND` descriptor, so
concurrent appends never interleave inside a line.

A command that changes files writes ahead: a "started" record under the
workspace lock before its first change, and the "finished" record (what
changed) before it lets the lock go. A started record without its finished one
is an operation killed or crashed part-way; `rollout status` shows it.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rollout_cli.core.text import blank_secrets
from rollout_cli.core.workspace import PERCENTAGE_KEY
from rollout_cli.errors import InputError
from rollout_cli.io.atomic import _write_error
from rollout_cli.io.lock import actor

HISTORY_NAME = "history.jsonl"


@dataclass(frozen=True)
class StageChange:
    """One recorded move of the rollout percentage."""

    time: str
    actor: str | None
    command: str | None
    reason: str | None
    before: Any
    after: Any
    began: str | None = None  # its operation's "started" record: when the files began to change (a rollback
    #                           records its end only after verifying the app's traffic, seconds later)
    ts: float | None = None  # the record's `ts`, to the millisecond (`time` has whole seconds; older records: none)

    @property
    def timestamp(self) -> float:
        """When the record was written: its `ts`, else its `time` (a stage's window opens here, so not a second early)."""
        if self.ts is not None:
            return self.ts
        return datetime.fromisoformat(self.time.replace("Z", "+00:00")).timestamp()

    def to_json(self) -> dict[str, Any]:
        return {"time": self.time, "actor": self.actor, "command": self.command,
                "from": self.before, "to": self.after, "reason": self.reason}


def utc_now() -> str:
    return utc_text(time.time())


def utc_text(ts: float) -> str:
    """`ts` (epoch seconds) as UTC ISO 8601 to the second: `2025-01-31T09:12:03Z`."""
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def append_line(path: Path, record: dict[str, Any], *, fsync: bool = False) -> None:
    """One JSON line, in one write(2) on an O_APPEND descriptor: whole even beside other writers.

    A path that cannot take it (a folder in its place, no permission, a full
    disk) is an InputError naming the file, as for every file rollout writes.
    """
    line = (json.dumps(record, default=str) + "\n").encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if os.write(fd, line) != len(line):  # pragma: no cover - disk full mid-write
                raise OSError(f"short write to {path}")
            if fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
    except IsADirectoryError:
        raise InputError(f"{path} is a folder, not a file: move it out of the way, then run again") from None
    except OSError as exc:
        raise _write_error(path, exc) from None


def read_lines(path: Path) -> list[dict[str, Any]]:
    """Every record of a JSON-lines file, oldest first; a torn line (a crashed writer) is skipped."""
    return [record for _, record in _numbered_lines(path) if isinstance(record, dict)]


def json_lines(path: Path, max_line_bytes: int) -> Iterator[Any]:
    """Each non-empty line of a JSON-lines file parsed (None when it is not JSON), one at a time.

    Constant memory whatever the file's size: a line longer than `max_line_bytes`
    is skipped to its end unread (and yields None). A FIFO or a device is never
    opened: it could block or never end.
    """
    if not path.is_file():
        return
    with open(path, "rb") as handle:
        while raw := handle.readline(max_line_bytes + 1):
            if len(raw) > max_line_bytes:
                while raw and not raw.endswith(b"\n"):
                    raw = handle.readline(64 * 1024)
                yield None
                continue
            if not raw.strip():
                continue
            try:
                yield json.loads(raw)
            except (ValueError, RecursionError):  # not JSON, not UTF-8
                yield None


def finite_number(value: Any) -> bool:
    """A JSON number a reader can compute with: not a boolean, NaN, infinite, or an integer too big for a float."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _numbered_lines(path: Path) -> list[tuple[int, Any]]:
    """(line number, parsed JSON) for each non-empty line; None for a line that is not JSON."""
    if not path.is_file():
        return []
    out: list[tuple[int, Any]] = []
    for lineno, raw in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not raw.strip():
            continue
        try:
            out.append((lineno, json.loads(raw)))
        except (json.JSONDecodeError, RecursionError):
            out.append((lineno, None))
    return out


# The types of a record's keys (docs/API.md, schemas/history.schema.json); other keys are not checked.
_RECORD_TYPES: dict[str, tuple[type, ...]] = {
    "time": (str,), "actor": (str,), "command": (str,), "reason": (str, type(None)), "result": (str,),
    "exit_code": (int,), "duration_s": (int, float), "changes": (list,), "steps": (list,),
    "decision": (dict,), "skip_soak": (bool,), "ts": (int, float),
}


def _well_formed(record: Any) -> bool:
    """Whether `record` is an audit record every reader can use: a hand-edited line may be anything."""
    if not isinstance(record, dict) or not all(key in record for key in ("time", "actor", "command")):
        return False
    for key, types in _RECORD_TYPES.items():
        value = record.get(key)
        if key in record and (not isinstance(value, types) or (isinstance(value, bool) and bool not in types)):
            return False
    if not all(isinstance(item, dict) for key in ("changes", "steps") for item in record.get(key, [])):
        return False
    try:
        datetime.fromisoformat(record["time"].replace("Z", "+00:00"))
    except ValueError:
        return False
    return True


class AuditLog:
    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / HISTORY_NAME
        self.skipped: list[int] = []  # line numbers of the records the last read left out

    def append(self, command: str, **fields: Any) -> dict[str, Any]:
        """Append one record stamped with UTC time (`time`, `ts`) and actor; returns it.

        A caller that gives `time` itself (a test dating a record back) gets no `ts`: the two never disagree.
        """
        # a reason (or a step's error) quoting a secret keeps its words, never the secret
        now = time.time()
        stamp: dict[str, Any] = {"time": utc_text(now), "ts": round(now, 3)} if "time" not in fields else {}
        record = {**stamp, "actor": actor(), "command": command, **blank_secrets(fields)}
        append_line(self.path, record, fsync=True)
        return record

    def begin(self, command: str, *, reason: str | None = None) -> Operation:
        """Write the "started" record of a change about to be made; call under the workspace lock."""
        op = Operation(self, command, reason)
        self.append(command, phase="started", op=op.id, pid=os.getpid(), reason=reason, result="started",
                    changes=[])
        return op

    def records(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Well-formed records oldest first (the last `limit` of them); `skipped` names the others' lines."""
        out: list[dict[str, Any]] = []
        self.skipped = []
        for lineno, record in _numbered_lines(self.path):
            if _well_formed(record):
                out.append(record)
            else:
                self.skipped.append(lineno)
        return out[-limit:] if limit else out

    def skipped_note(self) -> list[str]:
        """A message for the records the last read left out, if any."""
        if not self.skipped:
            return []
        lines = ", ".join(str(n) for n in self.skipped[:10]) + (", ..." if len(self.skipped) > 10 else "")
        return [f"{self.path}: skipped {len(self.skipped)} line(s) that are not audit records (line {lines});"
                " a crashed write or a hand edit: check the file"]

    def last_change(self, *keys: str) -> dict[str, Any] | None:
        """The newest record that changed any of `keys` in any file."""
        for record in reversed(self.records()):
            if any(change.get("key") in keys for change in record.get("changes", [])):
                return record
        return None


class Operation:
    """A change in progress: `AuditLog.begin` wrote its "started" record, `finish` writes the end."""

    def __init__(self, log: AuditLog, command: str, reason: str | None) -> None:
        self.log = log
        self.command = command
        self.reason = reason
        self.id = os.urandom(6).hex()

    def finish(self, **fields: Any) -> dict[str, Any]:
        """The "finished" record: what changed and how it ended; write it before letting the lock go."""
        return self.log.append(self.command, phase="finished", op=self.id, reason=self.reason, **fields)


def unfinished_operation(log: AuditLog) -> dict[str, Any] | None:
    """The newest "started" record with no "finished" one, unless an operation finished after it.

    An operation that finished later superseded it: its record describes the
    files as they are now.
    """
    open_ops: dict[str, dict[str, Any]] = {}
    for record in log.records():
        phase, op = record.get("phase"), record.get("op")
        if phase == "started" and isinstance(op, str):
            open_ops[op] = record
        elif phase == "finished":
            open_ops.clear()  # what had started before it is superseded, finished or not
    return list(open_ops.values())[-1] if open_ops else None


def stage_changes(log: AuditLog) -> list[StageChange]:
    """Every recorded move of the rollout percentage, oldest first: the one query of the trail for stages."""
    out = []
    started: dict[Any, str] = {}
    for record in log.records():
        if record.get("phase") == "started":
            started[record.get("op")] = str(record.get("time"))
        for change in record.get("changes", []):
            if change.get("key") == PERCENTAGE_KEY:
                began = started.get(record.get("op")) if record.get("phase") == "finished" else None
                out.append(StageChange(str(record.get("time")), record.get("actor"), record.get("command"),
                                       record.get("reason"), change.get("before"), change.get("after"), began,
                                       record["ts"] if finite_number(record.get("ts")) else None))
    return out
