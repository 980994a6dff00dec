"""Read-only questions to a local Docker engine, straight over its unix socket.

Importing the Docker SDK (with requests and urllib3 under it) costs about 0.1 s
of a command's start. The questions asked on the fast paths (which containers
bind-mount a file, before each write of rollback level 1; what state the
gateway's container is in, for `gateway status`) are one or two GETs of the
Engine API, so they are asked here when DOCKER_HOST is a unix socket (the usual
local engine). Any other DOCKER_HOST goes through the SDK (io/container.py).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
from datetime import datetime
from typing import Any

from rollout_cli.errors import DockerUnavailable

DEFAULT_DOCKER_HOST = "unix:///var/run/docker.sock"
CONNECT_TIMEOUT_S = 5.0


def engine_reason(exc: Any) -> str:
    """The first line of what the engine (or the SDK) said went wrong."""
    explanation = getattr(exc, "explanation", None) or str(exc)
    return str(explanation).splitlines()[0]


_FRACTION = re.compile(r"(\.\d{6})\d+")


def engine_time(value: str | None) -> datetime | None:
    """A timestamp of the Engine API: nanoseconds cut to what Python reads; year 1 means "never"."""
    if not value or value.startswith("0001-01-01"):
        return None
    try:
        return datetime.fromisoformat(_FRACTION.sub(r"\1", value))
    except ValueError:
        return None


def docker_host() -> str:
    return os.environ.get("DOCKER_HOST") or DEFAULT_DOCKER_HOST


def local_socket() -> str | None:
    """The engine's unix socket path, or None when DOCKER_HOST is something else (tcp://, ssh://)."""
    host = docker_host()
    return host.removeprefix("unix://") if host.startswith("unix://") else None


def unavailable(exc: BaseException, host: str | None = None) -> DockerUnavailable:
    """`host`: the engine asked when it was not $DOCKER_HOST's (a workspace's gateway.docker_host)."""
    if host:
        return DockerUnavailable(f"Docker engine does not answer at {host}: {_root_reason(exc)}; "
                                 "check gateway.docker_host in rollout.yaml (the swarm sandbox: `rollout sandbox up`)")
    return DockerUnavailable(
        f"Docker engine does not answer at {docker_host()}: {_root_reason(exc)}; "
        "start it (e.g. scripts/docker-up.sh) or check DOCKER_HOST"
    )


def _root_reason(exc: BaseException) -> str:
    """The innermost OS-level reason ("Connection refused"), not the SDK's nested repr."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, OSError) and current.strerror:
            return current.strerror
        stack.extend(a for a in current.args if isinstance(a, BaseException))
        stack.extend(e for e in (current.__cause__, current.__context__) if e is not None)
    if "timed out" in str(exc).lower():
        return f"no answer within {CONNECT_TIMEOUT_S:g} s"
    return str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


def get_json(path: str, *, timeout: float = CONNECT_TIMEOUT_S) -> Any:
    """GET `path` of the local engine's API: its JSON, or None for a 404.

    Only for a unix-socket DOCKER_HOST (local_socket() is not None). Raises
    DockerUnavailable when the engine does not answer or answers anything else.
    """
    where = local_socket()
    if where is None:
        raise ValueError(f"not a unix socket: {docker_host()}")
    connection = _UnixConnection(where, timeout)
    try:
        connection.request("GET", path)
        answer = connection.getresponse()
        body = answer.read()
    except OSError as exc:
        raise unavailable(exc) from exc
    finally:
        connection.close()
    if answer.status == 404:
        return None
    if answer.status != 200:
        raise DockerUnavailable(f"Docker engine at {docker_host()} answered HTTP {answer.status} to GET "
                                f"{path.split('?')[0]}; check the engine (docker info)")
    try:
        return json.loads(body)
    except ValueError as exc:
        raise DockerUnavailable(f"Docker engine at {docker_host()} answered GET {path.split('?')[0]} with "
                                f"something that is not JSON; check DOCKER_HOST") from exc
