"""What the audit trail says about the autopilot: paused or not, approvals given.

Derived on every tick from `.rollout/history.jsonl`, never cached, so a restart
(kill -9 included) decides as the run before it would have.
"""

from __future__ import annotations

import re
from typing import Any

from rollout_cli.core.audit import StageChange, finite_number

PAUSE, RESUME, APPROVE = "autopilot pause", "autopilot resume", "approve"
_ROLLBACK = re.compile(r"^rollback --level \d$")


def paused_by(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The record that paused the autopilot, or None when it may act.

    A pause, or any rollback that ran (a person's, the autopilot's own, an advance's
    post-check), pauses it until a later `rollout autopilot resume`: after a rollback,
    promoting again needs a person's word.
    """
    found: dict[str, Any] | None = None
    for record in records:
        command = str(record.get("command", ""))
        if command == PAUSE or (_ROLLBACK.match(command) and record.get("phase") == "started"):
            found = record
        elif command == RESUME:
            found = None
    return found


def pause_text(record: dict[str, Any]) -> str:
    command = str(record.get("command"))
    what = "paused" if command == PAUSE else f"`rollout {command}` ran"
    reason = f": {record['reason']}" if record.get("reason") else ""
    return (f"{what} by {record.get('actor')} at {record.get('time')}{reason}; "
            "`rollout autopilot resume --reason TEXT` to go on")


def approval(records: list[dict[str, Any]], target: int, since: float) -> dict[str, Any] | None:
    """The `rollout approve` record for advancing to `target`, given at or after `since` (epoch seconds)."""
    for record in reversed(records):
        if record.get("command") == APPROVE and record.get("to") == target:
            when = StageChange(  # the one parser of record times
                str(record["time"]), None, None, None, None, None,
                ts=record["ts"] if finite_number(record.get("ts")) else None).timestamp
            if when >= since:
                return record
            return None
    return None
