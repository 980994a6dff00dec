"""`.rollout/notify-failures.jsonl`: the deliveries that did not arrive, for `autopilot status` and people.

Each failure is one JSON line appended in one write(2) (whole beside other
writers), under `notify.lock`, a lock of its own: a caller may hold the
workspace lock while it notifies, and the workspace lock is not re-entrant.
The file keeps the last KEPT records; it is trimmed by an atomic rewrite
under the same lock. Nothing in it quotes a URL or a secret: the sink's name,
the event and a one-line error from `send.py`, which never names the URL.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rollout_cli.core.audit import append_line, json_lines, utc_now
from rollout_cli.core.workspace import Workspace
from rollout_cli.io.atomic import atomic_write_text

FAILURES_NAME = "notify-failures.jsonl"
LOCK_NAME = "notify.lock"
KEPT = 200  # records kept; a receiver down for days fills nothing
TRIM_AT = 256 * 1024  # bytes: past this the file is cut back to its last KEPT records
MAX_LINE = 16 * 1024
LOCK_WAIT_S = 2.0


def failures_path(workspace: Workspace) -> Path:
    return workspace.state_dir / FAILURES_NAME


def record_failure(workspace: Workspace, record: dict[str, Any]) -> None:
    """Append one failed delivery (a `time` is added); trims the file when it has grown past TRIM_AT."""
    path = failures_path(workspace)
    with _locked(workspace.state_dir) as locked:
        append_line(path, {"time": utc_now(), **record})
        try:
            grown = path.stat().st_size > TRIM_AT
        except OSError:
            grown = False
        if grown and locked:
            kept = [line for line in json_lines(path, MAX_LINE) if isinstance(line, dict)][-KEPT:]
            atomic_write_text(path, "".join(json.dumps(line, default=str) + "\n" for line in kept))


def failed_deliveries(workspace: Workspace, limit: int = 20) -> list[dict[str, Any]]:
    """The last `limit` failed deliveries, oldest first: `time`, `sink`, `type`, `event`, `severity`,
    `attempts`, `error`. A torn or foreign line is skipped."""
    records = [line for line in json_lines(failures_path(workspace), MAX_LINE) if isinstance(line, dict)]
    return records[-limit:] if limit > 0 else []


@contextmanager
def _locked(state_dir: Path) -> Iterator[bool]:
    """flock on `notify.lock`, waited for LOCK_WAIT_S at most; yields whether it was taken. Untaken, the
    append still goes ahead (one write(2) is whole anyway) and the trim is left to a later call."""
    state_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(state_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + LOCK_WAIT_S
        locked = False
        while not locked:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                locked = True
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    break
                time.sleep(0.02)
        yield locked
    finally:
        os.close(fd)  # drops the flock


