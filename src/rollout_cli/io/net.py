"""Loopback ports: is one free, pick a free one. Everything rollout starts listens on 127.0.0.1."""

from __future__ import annotations

import errno
import os
import socket
from collections.abc import Mapping

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
