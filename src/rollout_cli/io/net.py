"""Loopback ports (is one free, pick a free one), and one bounded HTTP GET.

Everything rollout starts listens on 127.0.0.1. Every answer rollout reads
from the gateway or the app over HTTP (metrics, health probes) goes through
`bounded_get`: a total deadline and a byte cap, so a gateway that drips one
byte a second or sends gigabytes cannot hang a rollback or fill memory.
"""

from __future__ import annotations

import errno
import http.client
import os
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass

from rollout_cli.errors import InputError

HOST = "127.0.0.1"
_PROXY_VARIABLES = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}


def free_port(avoid: int | None = None) -> int:
    """A port the kernel says is free on loopback now (another program may take it later)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind((HOST, 0))
            port = int(sock.getsockname()[1])
        if port != avoid:
            return port


def ensure_port_free(port: int, option: str) -> None:
    """InputError naming the port and the option that sets it, when something listens there."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers are not "in use"
        try:
            sock.bind((HOST, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise InputError(
                    f"port {port} on {HOST} is in use; choose another with {option} (or 0 for any free port)"
                ) from None
            raise InputError(f"cannot use port {port} on {HOST}: {exc.strerror}; choose another with {option}") from None


def loopback_environment(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment minus proxy variables, so a process we start keeps loopback traffic on loopback."""
    source = os.environ if environ is None else environ
    return {k: v for k, v in source.items() if k.lower() not in _PROXY_VARIABLES}


MiB = 1024 * 1024


@dataclass(frozen=True)
class HttpAnswer:
    status: int
    headers: dict[str, str]  # names in lower case
    body: bytes

    def text(self) -> str:
        return self.body.decode("utf-8", errors="replace")


class HttpFailure(Exception):
    """No whole answer. `kind`: refused | timeout | too-large | broken | bad-url | bad-request; `reason` says it
    in words, and never quotes a header (one carries the master key)."""

    def __init__(self, kind: str, url: str, reason: str) -> None:
        super().__init__(f"{url}: {reason}")
        self.kind, self.url, self.reason = kind, url, reason


def bounded_get(url: str, headers: Mapping[str, str] | None = None, *, deadline_s: float, max_bytes: int) -> HttpAnswer:
    """GET `url` whole within `deadline_s` seconds in all (connect, headers, body), at most `max_bytes` of body.

    A socket timeout bounds each recv only; a watchdog shuts the socket down at
    the deadline, so a server that sends one byte a second is cut off on time.
    No proxy: the connection goes straight to the URL's host. Raises HttpFailure.
    """
    return bounded_request("GET", url, headers, deadline_s=deadline_s, max_bytes=max_bytes)


def bounded_request(method: str, url: str, headers: Mapping[str, str] | None = None, body: bytes | None = None,
                    *, deadline_s: float, max_bytes: int) -> HttpAnswer:
    """`bounded_get` for any method, with an optional request body (a notification's POST). No redirect is followed."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise HttpFailure("bad-url", url, "not an http:// or https:// URL")
    deadline_s = max(deadline_s, 0.05)
    give_up = time.monotonic() + deadline_s
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    conn: http.client.HTTPConnection
    if parts.scheme == "https":
        conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=deadline_s,
                                           context=ssl.create_default_context())
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=deadline_s)
    expired = threading.Event()

    def cut_off() -> None:
        expired.set()
        sock = conn.sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes a recv blocked in the reading thread
            except OSError:
                pass

    watchdog = threading.Timer(deadline_s, cut_off)
    watchdog.daemon = True
    watchdog.start()
    late = HttpFailure("timeout", url, f"no whole answer within {deadline_s:.3g} s (a slow or stuck server)")
    too_large = HttpFailure("too-large", url, f"the answer is larger than the {max_bytes / MiB:g} MiB rollout reads")
    connected = False
    try:
        conn.connect()
        connected = True
        try:
            conn.request(method, path, body=body, headers=dict(headers or {}))
        except ValueError:  # http.client's message quotes the header: it may be the key
            raise HttpFailure("bad-request", url, "the request could not be sent (an invalid header value?)") from None
        response = conn.getresponse()
        length = response.getheader("content-length")
        if length is not None and length.isdigit() and int(length) > max_bytes:
            raise too_large
        answer = bytearray()
        while True:
            left = give_up - time.monotonic()
            if left <= 0 or expired.is_set():
                raise late
            if conn.sock is not None:
                conn.sock.settimeout(left)
            chunk = response.read1(64 * 1024)
            if not chunk:
                break
            answer += chunk
            if len(answer) > max_bytes:
                raise too_large
        if expired.is_set():  # the watchdog's shutdown reads as an end of file
            raise late
        return HttpAnswer(response.status, {k.lower(): v for k, v in response.getheaders()}, bytes(answer))
    except HttpFailure:
        raise
    except ConnectionRefusedError:
        raise HttpFailure("refused", url, "cannot connect: Connection refused") from None
    except TimeoutError:
        raise late from None
    except (OSError, http.client.HTTPException) as exc:
        if expired.is_set():
            raise late from None
        if not connected:
            why = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
            raise HttpFailure("broken", url, f"cannot connect: {why}") from None
        raise HttpFailure("broken", url, "the connection broke off before an answer") from None
    finally:
        watchdog.cancel()
        conn.close()
