"""Which running containers see a host file through a single-file bind mount.

`docker inspect` lists a container's mounts with their host Source; a bind
mount whose Source is the file itself (not a folder above it) pins the file's
inode inside the container, so a rename-based write never reaches it.

Rollback level 1 asks this before each write, so the usual local engine (a unix
socket) is asked directly, one GET of the Engine API over the socket, without
importing the Docker SDK (start-up time); any other DOCKER_HOST goes through the SDK.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rollout_cli.errors import DockerUnavailable
from rollout_cli.io.container import docker_host

PROBE_TIMEOUT_S = 2.0
RUNNING = "/containers/json?filters=" + quote(json.dumps({"status": ["running"]}))


def engine_socket_present() -> bool:
    """Whether a local engine could be there at all; False skips the question."""
    host = docker_host()
    if not host.startswith("unix://"):
        return True
    return os.path.exists(host.removeprefix("unix://"))


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("localhost", timeout=timeout)
        self.socket_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.socket_path)
        self.sock = sock


def _running_containers() -> list[dict[str, Any]]:
    host = docker_host()
    if not host.startswith("unix://"):
        # lazy: start-up time
        from rollout_cli.io.container import connect

        client = connect(timeout=PROBE_TIMEOUT_S)
        try:
            return list(client.api.containers(filters={"status": "running"}))
        except Exception as exc:  # the SDK wraps socket errors in several layers
            raise DockerUnavailable(f"Docker engine at {host} did not list its containers: {exc}") from exc
        finally:
            client.close()
    connection = _UnixConnection(host.removeprefix("unix://"), PROBE_TIMEOUT_S)
    try:
        connection.request("GET", RUNNING)
        answer = connection.getresponse()
        body = answer.read()
    except OSError as exc:
        raise DockerUnavailable(f"Docker engine does not answer at {host}: {exc}") from exc
    finally:
        connection.close()
    if answer.status != 200:
        raise DockerUnavailable(f"Docker engine at {host} answered HTTP {answer.status} to a container list")
    return list(json.loads(body))


def containers_bind_mounting(path: Path) -> list[str]:
    """Names of the running containers with a bind mount whose host source is exactly `path`.

    Raises DockerUnavailable when the engine does not answer.
    """
    target = os.path.realpath(path)
    names = []
    for box in _running_containers():
        for mount in box.get("Mounts") or ():
            if mount.get("Type") == "bind" and os.path.realpath(mount.get("Source") or "/") == target:
                names.append(str((box.get("Names") or ["?"])[0]).lstrip("/"))
                break
    return sorted(names)
