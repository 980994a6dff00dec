"""The sandbox's notification receiver: started by `up`, stopped by `down`, read by `sandbox notifications`.

The sandbox's rollout.yaml names one webhook sink, `sandbox`, whose URL and
signing secret are files in DIR/.rollout (`url_file`, `secret_file`, mode
0600): an operator's shell needs no variable for the sandbox to notify, and
the production pattern (the URL and the secret kept out of rollout.yaml) is
the one the sandbox shows. The receiver itself is `receiver.py`.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollout_cli.core.audit import json_lines
from rollout_cli.core.result import Result
from rollout_cli.errors import InputError, UnavailableError
from rollout_cli.io.atomic import atomic_write_text
from rollout_cli.io.net import HttpFailure, bounded_get, free_port, loopback_environment
from rollout_cli.io.process import spawn_detached, tail_file
from rollout_cli.sandbox.receiver import MODE_NAME, RECEIVED_NAME, SECRET_NAME, URL_NAME, answer_mode
from rollout_cli.sandbox.state import SandboxState, load_state

START_TIMEOUT_S = 10.0
SINK_NAME = "sandbox"
# What `sandbox up` appends to the sandbox's rollout.yaml.
NOTIFY_YAML = f"""\
# The sandbox's notification receiver (`rollout sandbox notifications` lists what it got). Its URL and
# signing secret sit in 0600 files, never in this file: in production a Slack URL carries its token.
notify:
  - {{type: webhook, name: {SINK_NAME}, url_file: .rollout/{URL_NAME}, secret_file: .rollout/{SECRET_NAME}}}
"""
MAX_LINE = 1024 * 1024


def start_receiver(state: SandboxState, taken: set[int]) -> None:
    """Start the receiver on a free loopback port (not in `taken`), wait until it answers, write its URL file."""
    state_dir = state.root / ".rollout"
    secret_file = state_dir / SECRET_NAME
    if not secret_file.is_file():  # kept across restarts: a receiver and rollout always agree on it
        atomic_write_text(secret_file, secrets.token_hex(32) + "\n", mode=0o600)
    while (port := free_port()) in taken:
        pass
    argv = [sys.executable, "-m", "rollout_cli.sandbox.receiver", "--dir", str(state.root), "--port", str(port)]
    state.receiver_port = port
    state.receiver = spawn_detached(argv, log=state.receiver_log, env={**loopback_environment(), "PYTHONUNBUFFERED": "1"},
                                    cwd=state.root)
    state.save()
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            if bounded_get(f"http://127.0.0.1:{port}/health", deadline_s=1.0, max_bytes=1024).status == 200:
                break
        except HttpFailure:
            pass
        if not state.receiver.alive() or time.monotonic() > deadline:
            lines = tail_file(state.receiver_log, 3)
            raise UnavailableError(f"the notification receiver did not start on port {port}: "
                                   + (lines[-1] if lines else "no output") + f" (log {state.receiver_log})")
        time.sleep(0.05)
    assert state.receiver_url is not None
    atomic_write_text(state_dir / URL_NAME, state.receiver_url + "\n", mode=0o600)


def receiver_running(state: SandboxState) -> bool:
    return state.receiver is not None and state.receiver.alive()


def stop_receiver(state: SandboxState) -> list[str]:
    if state.receiver is not None and state.receiver.stop(grace_s=2.0):
        return [f"notification receiver process {state.receiver.pid}"]
    return []


def receiver_status(state: SandboxState) -> dict[str, Any] | None:
    """For `sandbox status`: where it listens, whether it runs, how it answers, how much it got."""
    if not state.receiver_port:
        return None
    state_dir = state.root / ".rollout"
    return {"url": state.receiver_url, "port": state.receiver_port,
            "pid": state.receiver.pid if state.receiver else None, "running": receiver_running(state),
            "answer": answer_mode(state_dir), "received": sum(1 for _ in json_lines(state_dir / RECEIVED_NAME, MAX_LINE))}


@dataclass(frozen=True)
class SandboxNotificationsPayload:
    """`rollout sandbox notifications`: the receiver and every notification it recorded, oldest first."""

    dir: str
    receiver: dict[str, Any]
    received: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"dir": self.dir, "receiver": self.receiver, "received": self.received}


def parse_answer(answer: str) -> str:
    """ok | hang | an HTTP status 200..599, as `--answer` takes it."""
    if answer in ("ok", "hang") or (answer.isdigit() and 200 <= int(answer) <= 599):
        return answer
    raise InputError(f"--answer is {answer!r}; use ok, hang, or an HTTP status 200..599 such as 500")


def notifications(root: Path, *, answer: str | None = None) -> Result[SandboxNotificationsPayload]:
    """What the sandbox's receiver got; `answer` first changes how it answers from now on."""
    chosen = parse_answer(answer) if answer is not None else None
    state = load_state(root)
    if state is None or not state.receiver_port:
        raise UnavailableError(f"no sandbox with a notification receiver is up in {root}; "
                               f"run `rollout sandbox up {root}` first")
    state_dir = state.root / ".rollout"
    messages = []
    if chosen is not None:
        atomic_write_text(state_dir / MODE_NAME, json.dumps({"answer": chosen}) + "\n")
        messages.append(f"the receiver now answers {chosen}" + (" (no answer at all)" if chosen == "hang" else ""))
    status = receiver_status(state)
    assert status is not None
    if not status["running"]:
        messages.append(f"the receiver is not running: `rollout sandbox up {root}` starts it again")
    received = [line for line in json_lines(state_dir / RECEIVED_NAME, MAX_LINE) if isinstance(line, dict)]
    return Result("sandbox notifications", SandboxNotificationsPayload(str(root), status, received), messages)
