"""Notifications: events of the rollout sent to the sinks of `rollout.yaml`'s `notify:`.

A flat API (re-exported here, as docs/API.md lists it): build an `Event`, call
`notify(workspace, event)`. Delivery never raises and never takes more than a
few seconds (DELIVERY_BUDGET_S per sink, sinks in parallel); failures are
recorded in `.rollout/notify-failures.jsonl` and returned. Callers that change
the rollout (advance, rollback, the autopilot) notify after the change is done:
a delivery must never delay a rollback.
"""

from __future__ import annotations

from rollout_cli.notify.event import EVENT_KINDS, SEVERITIES, Event, webhook_body
from rollout_cli.notify.failures import FAILURES_NAME, failed_deliveries
from rollout_cli.notify.send import DELIVERY_BUDGET_S, Delivery, delivery_messages, notify, require_sinks

__all__ = [
    "DELIVERY_BUDGET_S",
    "EVENT_KINDS",
    "FAILURES_NAME",
    "SEVERITIES",
    "Delivery",
    "Event",
    "delivery_messages",
    "failed_deliveries",
    "notify",
    "require_sinks",
    "webhook_body",
]
