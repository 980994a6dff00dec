"""The autopilot's own state file, `.rollout/autopilot.json`: the breach streak, the last tick, what it is doing.

Written atomically (io/atomic.py) by the lease holder only, so the lease
serializes its writers; the workspace lock stays free for the rollback that may
have to run at once. An action is written here ("pending") before it starts and
cleared after it ends: a restart finds what a killed run was doing. Whether the
stage moved, and when, is the audit trail's to say (written ahead as well).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rollout_cli.errors import StateFileError
from rollout_cli.io.atomic import atomic_write_text

STATE_NAME = "autopilot.json"


@dataclass
class PilotState:
    consecutive_failures: int = 0
    breach: list[str] = field(default_factory=list)  # the reasons of the current streak
    last_tick: dict[str, Any] | None = None  # time, ts, stage, action, reasons
    pending: dict[str, Any] | None = None  # action (advance | rollback), from, to, reason, time: written ahead
    last_hold: str | None = None  # the hold last notified: sent again only when it changes
    approval_asked: str | None = None  # the approval (to, and the stage entry it follows) approval_needed was sent for
    catalog_warned: str | None = None  # the catalog warnings last notified: sent again only when they change

    @classmethod
    def load(cls, state_dir: Path) -> PilotState:
        path = state_dir / STATE_NAME
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return cls()
        except (OSError, ValueError) as exc:
            raise StateFileError(f"{path}: not readable JSON ({exc}); delete it to start the autopilot afresh "
                                 "(the audit trail keeps the stages, soaks and pauses)") from None
        if not isinstance(raw, dict):
            raise StateFileError(f"{path}: not a JSON object; delete it to start the autopilot afresh")
        known = {k: raw[k] for k in cls.__dataclass_fields__ if k in raw}
        try:
            state = cls(**known)
            state.consecutive_failures = int(state.consecutive_failures)
        except (TypeError, ValueError):
            raise StateFileError(f"{path}: a value has the wrong type; delete it to start the autopilot afresh") from None
        return state

    def save(self, state_dir: Path) -> None:
        atomic_write_text(state_dir / STATE_NAME, json.dumps(asdict(self), indent=1) + "\n")
