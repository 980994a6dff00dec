"""What a notification says: the event, the webhook's JSON body (schemas/notification.schema.json), Slack's payload."""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rollout_cli.core.workspace import SEVERITIES, Workspace

BODY_VERSION = 1  # the webhook body's schema_version: bumped when a key changes meaning or disappears

EVENT_KINDS = ("autopilot.started", "autopilot.stopped", "advanced", "breach", "rolled_back",
               "hold", "approval_needed", "approved", "paused", "resumed", "catalog_warning")
VERDICTS = ("GO", "HOLD", "NO-GO")

MAX_TEXT = 500  # characters of a summary or a reason: a chat line, not a report


@dataclass(frozen=True)
class Event:
    """One thing that happened to the rollout, as every sink receives it."""

    kind: str  # one of EVENT_KINDS
    severity: str  # "info" | "warning" | "critical"
    summary: str  # one plain line, no links, no secrets
    actor: str  # "autopilot" or the person (as the audit trail records actors)
    verdict: str | None = None  # "GO" | "HOLD" | "NO-GO" | None
    stage_from: int | None = None
    stage_to: int | None = None
    reasons: tuple[str, ...] = ()
    at: float | None = None  # epoch seconds; None = now

    def __post_init__(self) -> None:
        # A caller's mistake, not an operator's: a wrong kind would reach every receiver's parser.
        if self.kind not in EVENT_KINDS:
            raise ValueError(f"unknown event kind {self.kind!r}; use one of {', '.join(EVENT_KINDS)}")
        if self.severity not in SEVERITIES:
            raise ValueError(f"unknown severity {self.severity!r}; use one of {', '.join(SEVERITIES)}")
        if self.verdict is not None and self.verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {self.verdict!r}; use one of {', '.join(VERDICTS)} or None")
        if not self.summary.strip():
            raise ValueError("an event needs a summary: the one line a person reads")
        for stage in (self.stage_from, self.stage_to):
            if stage is not None and (isinstance(stage, bool) or not isinstance(stage, int) or not 0 <= stage <= 100):
                raise ValueError(f"a stage is a percentage 0..100 or None, got {stage!r}")


def webhook_body(event: Event, workspace: Workspace, secrets: Iterable[str] = ()) -> dict[str, Any]:
    """The JSON every webhook (and command) sink receives; `secrets` are values blanked wherever they appear."""
    hidden = sorted((s for s in secrets if s), key=len, reverse=True)  # a longer secret first: it may hold a shorter
    when = event.at if event.at is not None else time.time()
    return {
        "schema_version": BODY_VERSION,
        "id": os.urandom(16).hex(),  # the same in every retry: a receiver drops a repeat by it
        "event": event.kind,
        "severity": event.severity,
        "summary": plain(event.summary, hidden),
        "actor": plain(event.actor, hidden),
        "verdict": event.verdict,
        "stage": {"from": event.stage_from, "to": event.stage_to},
        "reasons": [plain(reason, hidden) for reason in event.reasons],
        "time": datetime.fromtimestamp(when, UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "workspace": str(workspace.root),
    }


_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://([^/\s?#]*@)?([^/\s?#]+)[^\s]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def plain(text: str, secrets: Iterable[str] = ()) -> str:
    """One line without links or secrets: a URL becomes its host (its path and query may carry a token)."""
    for secret in secrets:
        text = text.replace(secret, "[secret]")
    text = _URL.sub(lambda match: match.group(2), text)
    text = " ".join(_CONTROL.sub(" ", text).split())
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


_SEVERITY_MARK = {"info": "ℹ️", "warning": "⚠️", "critical": "🚨"}


def slack_payload(body: dict[str, Any]) -> dict[str, Any]:
    """Slack's incoming-webhook payload: `text` (the notification's fallback line) and `blocks`."""
    headline = f"{_SEVERITY_MARK[body['severity']]} rollout {body['event']}: {body['summary']}"
    stage = body["stage"]
    facts = [f"*severity* {body['severity']}", f"*actor* {body['actor']}"]
    if stage["from"] is not None or stage["to"] is not None:
        facts.append(f"*stage* {_percent(stage['from'])} → {_percent(stage['to'])}")
    if body["verdict"]:
        facts.append(f"*verdict* {body['verdict']}")
    blocks: list[dict[str, Any]] = [
        {"type": "section", "text": {"type": "mrkdwn", "text": _mrkdwn(headline)}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": _mrkdwn(fact)} for fact in facts]},
    ]
    if body["reasons"]:
        lines = "\n".join(f"• {reason}" for reason in body["reasons"][:10])
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": _mrkdwn(lines)[:2900]}})
    blocks.append({"type": "context", "elements": [
        {"type": "mrkdwn", "text": _mrkdwn(f"{body['time']} · {body['workspace']}")}]})
    return {"text": _mrkdwn(headline), "blocks": blocks}


def _percent(value: int | None) -> str:
    return "?" if value is None else f"{value}%"


def _mrkdwn(text: str) -> str:
    """Slack reads <...> as a link or a mention: the three characters it asks senders to escape."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
