"""The sandbox's notification receiver: a webhook endpoint on loopback that records what rollout sends.

Run by `rollout sandbox up` as `python -m rollout_cli.sandbox.receiver --dir DIR --port N` (stdlib
only, like the sample app: a stand-in for the operator's Slack or incident tool). Every POST is
recorded, whole, as one line of DIR/.rollout/notifications.jsonl before it is answered: its path, the
event header, whether the X-Rollout-Signature verifies against the sandbox's signing secret file, the
parsed body and how it was answered.

How it answers is read at each request from DIR/.rollout/notify-receiver.json, `{"answer": "ok"}`
(200), `"hang"` (no answer for HANG_S seconds) or an HTTP status such as `"500"`, which
`rollout sandbox notifications --answer` writes: a test or the tour turns the receiver into a failing
one without restarting it. GET /health answers 200 whatever the mode.
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

RECEIVED_NAME = "notifications.jsonl"
MODE_NAME = "notify-receiver.json"
SECRET_NAME = "notify-secret"
URL_NAME = "notify-url"
HANG_S = 120.0  # longer than any delivery's budget; `sandbox down` ends it sooner
MAX_BODY = 1024 * 1024


def answer_mode(state_dir: Path) -> str:
    """ok | hang | an HTTP status ("500"); ok when nothing (or nothing readable) was set."""
    try:
        answer = str(json.loads((state_dir / MODE_NAME).read_text(encoding="utf-8"))["answer"])
    except (OSError, ValueError, KeyError, TypeError):
        return "ok"
    return answer if answer == "hang" or answer.isdigit() else "ok"


class _Handler(BaseHTTPRequestHandler):
    server: _Receiver

    def do_GET(self) -> None:
        self._answer(200 if self.path == "/health" else 404, b'{"ok": true}\n' if self.path == "/health" else b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, MAX_BODY))
        mode = answer_mode(self.server.state_dir)
        self.server.record({
            "time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "path": self.path,
            "event": self.headers.get("X-Rollout-Event"),
            "signature": self.server.verify(self.headers.get("X-Rollout-Signature"), body),
            "answer": mode if mode != "ok" else "200",
            "body": _parsed(body),
        })
        if mode == "hang":
            time.sleep(HANG_S)
            return
        self._answer(int(mode) if mode != "ok" else 200, b"ok\n" if mode == "ok" else b"failing on purpose\n")

    def _answer(self, status: int, data: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:
        pass  # every request is in notifications.jsonl; the log keeps start-up and errors


class _Receiver(ThreadingHTTPServer):
    daemon_threads = True  # a hanging answer never keeps the process from ending

    def __init__(self, port: int, state_dir: Path) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.state_dir = state_dir

    def record(self, entry: dict[str, Any]) -> None:
        """One line in one write(2) on an O_APPEND descriptor: whole beside `sandbox notifications` reading."""
        line = (json.dumps(entry) + "\n").encode()
        fd = os.open(self.state_dir / RECEIVED_NAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

    def verify(self, header: str | None, body: bytes) -> str:
        """valid | invalid | unsigned: the X-Rollout-Signature against the sandbox's secret file."""
        if not header:
            return "unsigned"
        try:
            secret = (self.state_dir / SECRET_NAME).read_text(encoding="utf-8").strip()
        except OSError:
            return "invalid"
        expected = "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        return "valid" if hmac.compare_digest(expected, header) else "invalid"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a sender that gave up (its timeout) is expected here, not a traceback


def _parsed(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body.decode("utf-8", errors="replace")[:2000]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--dir", required=True, type=Path)
    parser.add_argument("--port", required=True, type=int)
    options = parser.parse_args()
    state_dir = options.dir / ".rollout"
    server = _Receiver(options.port, state_dir)
    print(f"notification receiver on http://127.0.0.1:{options.port}/hook, recording to {state_dir / RECEIVED_NAME}",
          flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
