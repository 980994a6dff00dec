"""Notifications (h20-notify builds the sinks; this is the agreed interface, /work/wt/NOTIFY-INTERFACE.md).

Until the sinks land, `notify` delivers to none: it returns [] as it does with no `notify:` configured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rollout_cli.core.workspace import Workspace

EVENT_KINDS = ("autopilot.started", "autopilot.stopped", "advanced", "breach", "rolled_back",
               "hold", "approval_needed", "approved", "paused", "resumed", "catalog_warning")


@dataclass(frozen=True)
class Event:
    kind: str
    severity: str  # info | warning | critical
    summary: str
    actor: str
    verdict: str | None = None
    stage_from: int | None = None
    stage_to: int | None = None
    reasons: tuple[str, ...] = ()
    at: float | None = None


@dataclass(frozen=True)
class Delivery:
    sink: str
    ok: bool
    attempts: int
    error: str | None


def notify(workspace: Workspace, event: Event) -> list[Delivery]:
    return []


def failed_deliveries(workspace: Workspace, limit: int = 20) -> list[dict[str, Any]]:
    return []


__all__ = ["EVENT_KINDS", "Delivery", "Event", "failed_deliveries", "notify"]
