"""Delivery: each sink in its own thread, a few attempts within DELIVERY_BUDGET_S, never an exception.

Why bounded and parallel: the autopilot notifies between ticks and a person's
`rollback` notifies before it returns; a Slack outage must cost them seconds,
not minutes. Why no redirect: a 3xx would send a signed body somewhere the
operator never configured. Every error is a line written here, in words that
never quote the URL (Slack's carries its token); `plain()` then blanks any
secret value that still slipped in (a command sink's last output line).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rollout_cli import __version__
from rollout_cli.core.workspace import NotifySink, Workspace, secret_values, without_secrets
from rollout_cli.errors import InputError
from rollout_cli.io.net import HttpFailure, bounded_request
from rollout_cli.io.process import run_in_session
from rollout_cli.notify.event import Event, plain, slack_payload, webhook_body
from rollout_cli.notify.failures import FAILURES_NAME, record_failure

DELIVERY_BUDGET_S = 5.0  # one sink's whole delivery: every attempt and every pause between them
ATTEMPT_TIMEOUT_S = 2.0  # one HTTP attempt: connect, send, the whole answer (a command may use the whole budget)
ATTEMPTS = 3
BACKOFF_S = (0.25, 0.75)  # pauses before the second and third attempt
ANSWER_BYTES = 64 * 1024  # of a receiver's answer read: its status matters, not its body
RETRIED_STATUSES = {408, 425, 429}  # and every 5xx: the receiver may answer a moment later
SIGNATURE_HEADER = "X-Rollout-Signature"


@dataclass(frozen=True)
class Delivery:
    """How one event reached (or did not reach) one sink."""

    sink: str  # the sink's name as configured (else its type), never its URL
    ok: bool
    attempts: int
    error: str | None  # one line, secrets removed

    def to_json(self) -> dict[str, Any]:
        return {"sink": self.sink, "ok": self.ok, "attempts": self.attempts, "error": self.error}


def notify(workspace: Workspace, event: Event) -> list[Delivery]:
    """Deliver to every sink in rollout.yaml `notify:` whose min_severity the event meets.

    Never raises for a delivery failure; failed deliveries are recorded in
    .rollout/notify-failures.jsonl (locked append) and returned. With no sink
    configured (or none taking this severity) it returns [] at once.
    """
    sinks = [sink for sink in workspace.notify if sink.takes(event.severity)]
    if not sinks:
        return []
    secrets = secret_values(workspace)
    body = webhook_body(event, workspace, secrets)
    results: dict[str, Delivery] = {}

    def deliver(sink: NotifySink) -> None:
        try:
            results[sink.name] = _deliver(workspace, sink, body, secrets)
        except Exception as exc:  # a bug here must not fail the rollback that notified
            results[sink.name] = Delivery(sink.name, False, 0, plain(f"internal error: {type(exc).__name__}", secrets))

    threads = [threading.Thread(target=deliver, args=(sink,), name=f"notify-{sink.name}", daemon=True)
               for sink in sinks]
    for thread in threads:
        thread.start()
    give_up = time.monotonic() + DELIVERY_BUDGET_S + 3.0  # + a killed command's grace and the last answer
    for thread in threads:
        thread.join(max(0.0, give_up - time.monotonic()))
    deliveries = [results.get(sink.name) or Delivery(sink.name, False, 0, "still sending at the deadline")
                  for sink in sinks]
    for sink, delivery in zip(sinks, deliveries, strict=True):
        if not delivery.ok:
            _record(workspace, sink, event, delivery)
    return deliveries


def delivery_messages(deliveries: list[Delivery]) -> list[str]:
    """A command's message lines about its notifications: the sinks reached, then one line per failure
    (sinks by name, never by URL)."""
    reached = [d.sink for d in deliveries if d.ok]
    return ([f"notified {', '.join(reached)}"] if reached else []) + [
        f"notification to {d.sink!r} not delivered after {d.attempts} attempt(s): {d.error} "
        f"(recorded in .rollout/{FAILURES_NAME}; the command's result is unchanged)"
        for d in deliveries if not d.ok]


def require_sinks(workspace: Workspace) -> None:
    """InputError naming the first sink whose URL or signing secret is not set (for a service's start:
    the autopilot refuses to run with a sink that could never deliver). Manual commands do not call it:
    an operator's shell without the Slack URL must still roll back."""
    for sink in workspace.notify:
        if sink.type != "command" and sink.url() is None:
            raise InputError(f"notify sink {sink.name!r}: {sink.where()} is not set; set it to the sink's URL "
                             "(docs/SETUP.md, Notifications) or remove the sink from rollout.yaml")
        if sink.signed and sink.secret() is None:
            raise InputError(f"notify sink {sink.name!r}: {sink.secret_where()} (its signing secret) is not set; "
                             "set it or remove it from the sink")


def _deliver(workspace: Workspace, sink: NotifySink, body: dict[str, Any], secrets: list[str]) -> Delivery:
    data = json.dumps(body).encode()
    if sink.type == "command":
        # A program of the operator's may start slowly (a Python script on a busy host): it gets what is left.
        return _attempts(sink, secrets, lambda left: _run_command(workspace, sink, data, left),
                         per_attempt=DELIVERY_BUDGET_S)
    url = sink.url()
    if url is None:
        return Delivery(sink.name, False, 0, f"{sink.where()} is not set: nothing sent")
    headers = {"Content-Type": "application/json", "User-Agent": f"rollout/{__version__}"}
    if sink.type == "slack":
        data = json.dumps(slack_payload(body)).encode()
    else:
        headers |= {"X-Rollout-Event": body["event"], "X-Rollout-Delivery": body["id"]}
        if sink.signed:
            secret = sink.secret()
            if secret is None:
                return Delivery(sink.name, False, 0, f"{sink.secret_where()} (the signing secret) is not set: "
                                                     "nothing sent unsigned")
            headers[SIGNATURE_HEADER] = "sha256=" + hmac.new(secret.encode(), data, hashlib.sha256).hexdigest()
    return _attempts(sink, [*secrets, url], lambda left: _post(url, headers, data, left))


def _attempts(sink: NotifySink, secrets: list[str], attempt: Callable[[float], tuple[bool, str | None, bool]],
              per_attempt: float = ATTEMPT_TIMEOUT_S) -> Delivery:
    """Up to ATTEMPTS tries of `attempt(seconds it may take)` -> (ok, error, worth retrying), within the budget."""
    deadline = time.monotonic() + DELIVERY_BUDGET_S
    error: str | None = None
    tried = 0
    for pause in (0.0, *BACKOFF_S):
        left = deadline - time.monotonic() - pause
        if tried and left < 0.1:
            break
        time.sleep(pause)
        tried += 1
        ok, error, again = attempt(min(per_attempt, max(left, 0.1)))
        if ok:
            return Delivery(sink.name, True, tried, None)
        if not again:
            break
    return Delivery(sink.name, False, tried, plain(error or "not delivered", secrets))


def _post(url: str, headers: dict[str, str], data: bytes, timeout: float) -> tuple[bool, str | None, bool]:
    try:
        answer = bounded_request("POST", url, headers, data, deadline_s=timeout, max_bytes=ANSWER_BYTES)
    except HttpFailure as exc:  # its reason never quotes the URL; its str() does
        return False, exc.reason, exc.kind in ("refused", "timeout", "broken")
    if 200 <= answer.status < 300:
        return True, None, False
    said = " ".join(answer.text().split())[:80]
    if 300 <= answer.status < 400:
        return False, f"HTTP {answer.status}, a redirect: rollout follows none; configure the final URL", False
    return False, f"HTTP {answer.status}" + (f": {said}" if said else ""), (
        answer.status >= 500 or answer.status in RETRIED_STATUSES)


def _run_command(workspace: Workspace, sink: NotifySink, data: bytes, timeout: float
                 ) -> tuple[bool, str | None, bool]:
    try:
        finished = run_in_session(sink.command, cwd=workspace.root, timeout=timeout, grace_s=1.0, stdin=data,
                                  env=without_secrets(workspace))
    except OSError as exc:
        return False, f"cannot start {sink.command[0]}: {exc.strerror or type(exc).__name__}", False
    if finished.timed_out:
        return False, f"{sink.command[0]} did not finish within {timeout:.3g} s (stopped)", False
    if finished.returncode == 0:
        return True, None, False
    tail = f": {finished.last_line}" if finished.last_line else ""
    return False, f"{sink.command[0]} exited {finished.returncode}{tail}", True


def _record(workspace: Workspace, sink: NotifySink, event: Event, delivery: Delivery) -> None:
    try:
        record_failure(workspace, {"sink": sink.name, "type": sink.type, "event": event.kind,
                                   "severity": event.severity, "attempts": delivery.attempts,
                                   "error": delivery.error})
    except (InputError, OSError):
        pass  # a full disk must not turn a done rollback into a failure; the Delivery says it all the same
