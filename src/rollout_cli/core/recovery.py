"""`rollout recover`: finish the in-place rewrites of the app's files a killed rollout left, under the lock.

Read-only commands never recover (they say a file needs it and name this
command); writing commands recover on their own, under their lock, and say so.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollout_cli.core.audit import AuditLog
from rollout_cli.core.result import Result
from rollout_cli.core.workspace import Workspace
from rollout_cli.io.atomic import recover_interrupted
from rollout_cli.io.inplace import take_recovery_notes
from rollout_cli.io.lock import WorkspaceLock


@dataclass(frozen=True)
class RecoverPayload:
    files: list[str]  # the app's files checked
    recovered: list[str] = field(default_factory=list)  # one line per file recovered (or left alone)

    def to_json(self) -> dict[str, Any]:
        return {"files": self.files, "recovered": self.recovered}


def recover_app_files(ws: Workspace, command: str) -> None:
    """Take the workspace lock and finish_interrupted_writes()."""
    with WorkspaceLock(ws.state_dir, command=command):
        finish_interrupted_writes(ws)


def finish_interrupted_writes(ws: Workspace) -> None:
    """With the workspace lock held: finish any interrupted in-place rewrite of the env and flags files.

    What was done goes into the audit trail (it may move the stage) and is
    queued (io/inplace.py) for the command's output.
    """
    notes = [note for note in map(recover_interrupted, _app_files(ws)) if note]
    if notes:
        AuditLog(ws.state_dir).append("recover", result="ok", recovered=notes, changes=[])


def recover(ws: Workspace) -> Result[RecoverPayload]:
    recover_app_files(ws, "rollout recover")
    notes = take_recovery_notes()
    files = [str(path) for path in _app_files(ws)]
    messages = notes or [f"nothing to recover: no interrupted in-place write of {', '.join(files)}"]
    return Result("recover", RecoverPayload(files, notes), messages)


def _app_files(ws: Workspace) -> list[Path]:
    return [path for path in (ws.app.env_file, ws.app.flags_file) if path is not None]
