"""Real headless Chromium (Debian's `chromium`) driven over the DevTools protocol on a pipe.

`--remote-debugging-pipe` makes Chromium read protocol messages on fd 3 and
write them on fd 4 (JSON, each ended by a NUL byte): no port, no websocket
library. A visit records every request the page makes (Network.requestWillBeSent,
the document itself included), every console error (console.error/assert,
an uncaught exception, a browser log entry of level error such as a failed
load or a blocked resource), the answer of a JavaScript probe of the DOM, and a
full-page PNG screenshot.
"""

from __future__ import annotations

import base64
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

QUIET_S = 0.5  # after the load event: this long without a new request or console message


def chromium_path() -> str:
    """Debian's chromium; fail (never skip) without it: scripts/setup.sh installs it."""
    found = shutil.which("chromium")
    if not found:
        pytest.fail("chromium is not installed: run scripts/setup.sh (it installs Debian's chromium)", pytrace=False)
    return found


@dataclass
class Visit:
    url: str
    requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    probe: Any = None
    screenshot: bytes = b""
    pdf: bytes = b""  # the page printed (Page.printToPDF, A4), when asked


class DevTools:
    def __init__(self, argv: list[str]) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        # Chromium's fd 3 reads our commands and its fd 4 writes the answers: bash puts the pipes there (dash
        # takes single-digit fds only)
        wired = ["bash", "-c", f'exec "$@" 3<&{to_chrome_r} 4>&{from_chrome_w}', "chromium", *argv]
        self.proc = subprocess.Popen(wired, pass_fds=(to_chrome_r, from_chrome_w), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._next = 0
        self.log: list[str] = []  # the last lines Chromium wrote on stderr
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self._answers: dict[int, dict[str, Any]] = {}
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._drain_stderr, daemon=True).start()

    def _drain_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:  # mostly D-Bus noise; drained so Chromium never blocks on a full pipe
            self.log = [*self.log[-20:], line.decode(errors="replace").rstrip()]

    def _read(self) -> None:
        buffer = b""
        while True:
            chunk = os.read(self._from_chrome, 65536)
            if not chunk:
                break
            buffer += chunk
            while b"\0" in buffer:
                raw, buffer = buffer.split(b"\0", 1)
                message = json.loads(raw)
                if "id" in message:
                    with self._cond:
                        self._answers[message["id"]] = message
                        self._cond.notify_all()
                else:
                    self.events.put(message)

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 30.0) -> dict[str, Any]:
        self._next += 1
        ident = self._next
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        with self._cond:
            while ident not in self._answers:
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise AssertionError(f"Chromium gave no answer to {method} within {timeout:g} s "
                                         f"(exit {self.proc.poll()}): " + "\n".join(self.log[-8:]))
                self._cond.wait(min(left, 0.5))
            answer = self._answers.pop(ident)
        if "error" in answer:
            raise AssertionError(f"Chromium refused {method}: {answer['error']}")
        return dict(answer.get("result") or {})

    def close(self) -> None:
        try:
            self.call("Browser.close", timeout=10)
        except (AssertionError, OSError):
            pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=15)
        for fd in (self._to_chrome, self._from_chrome):
            try:
                os.close(fd)
            except OSError:
                pass


def visit(url: str, probe: str = "null", width: int = 1366, height: int = 900, timeout: float = 60.0,
          pdf: bool = False) -> Visit:
    """Open `url` in a fresh headless Chromium at a laptop's window size; what it requested, logged and showed."""
    profile = tempfile.mkdtemp(prefix="rollout-chromium-")
    argv = [chromium_path(), "--headless", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe",
            f"--user-data-dir={profile}", "--no-first-run", "--no-default-browser-check",
            "--disable-background-networking", "--disable-component-update", "--disable-default-apps",
            "--disable-sync", "--disable-extensions", "--mute-audio", f"--window-size={width},{height}", "about:blank"]
    tools = DevTools(argv)
    out = Visit(url)
    try:
        target = tools.call("Target.createTarget", {"url": "about:blank"}, timeout=timeout)["targetId"]
        session = tools.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for method in ("Runtime.enable", "Log.enable", "Network.enable", "Page.enable"):
            tools.call(method, session=session)
        tools.call("Emulation.setDeviceMetricsOverride",
                   {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session=session)
        tools.call("Page.navigate", {"url": url}, session=session)
        deadline = time.monotonic() + timeout
        loaded, last_seen = False, time.monotonic()
        while True:
            try:
                event = tools.events.get(timeout=0.1)
            except queue.Empty:
                if loaded and time.monotonic() - last_seen >= QUIET_S:
                    break
                if time.monotonic() > deadline:
                    raise AssertionError(f"{url} did not finish loading within {timeout:g} s") from None
                continue
            if event.get("sessionId") != session:
                continue
            last_seen = time.monotonic()
            _record(out, event)
            loaded = loaded or event["method"] == "Page.loadEventFired"
        out.probe = tools.call("Runtime.evaluate", {"expression": probe, "returnByValue": True},
                               session=session)["result"].get("value")
        size = tools.call("Page.getLayoutMetrics", session=session)["cssContentSize"]
        shot = tools.call("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1},
        }, session=session, timeout=timeout)
        out.screenshot = base64.b64decode(shot["data"])
        if pdf:
            printed = tools.call("Page.printToPDF", {"paperWidth": 8.27, "paperHeight": 11.69}, session=session,
                                 timeout=timeout)
            out.pdf = base64.b64decode(printed["data"])
        while not tools.events.empty():  # anything the probe or the screenshot set off
            event = tools.events.get_nowait()
            if event.get("sessionId") == session:
                _record(out, event)
    finally:
        tools.close()
        shutil.rmtree(profile, ignore_errors=True)
    return out


def _record(out: Visit, event: dict[str, Any]) -> None:
    method, params = event["method"], event.get("params") or {}
    if method == "Network.requestWillBeSent":
        out.requests.append(params["request"]["url"])
    elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
        out.console_errors.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params["args"]))
    elif method == "Runtime.exceptionThrown":
        details = params["exceptionDetails"]
        out.console_errors.append(str((details.get("exception") or {}).get("description") or details.get("text")))
    elif method == "Log.entryAdded" and params["entry"].get("level") == "error":
        out.console_errors.append(f"{params['entry'].get('text')} ({params['entry'].get('url', '')})")


def artifacts_dir(fallback: Path) -> Path:
    """Where screenshots are kept: $ROLLOUT_ARTIFACTS (.ci/run sets it to .ci/out), else the test's own folder."""
    where = Path(os.environ.get("ROLLOUT_ARTIFACTS") or fallback)
    where.mkdir(parents=True, exist_ok=True)
    return where
