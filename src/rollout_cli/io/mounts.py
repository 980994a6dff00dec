"""Which containers see a host file through a single-file bind mount.

`docker inspect` lists a container's mounts with their host Source; a bind
mount whose Source is the file itself (not a folder above it) pins the file's
inode inside the container, so a rename-based write never reaches it. A paused
or restarting container holds its mounts as a running one does: after
`docker unpause` the app reads the inode it had, so those count too.

Rollback level 1 asks this before each write, so the usual local engine (a unix
socket) is asked directly (io/engine.py), without importing the Docker SDK
(start-up time); any other DOCKER_HOST goes through the SDK.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rollout_cli.errors import DockerUnavailable
from rollout_cli.io.container import UP  # the module only; the Docker SDK stays unimported
from rollout_cli.io.engine import docker_host, get_json, local_socket

PROBE_TIMEOUT_S = 2.0
HOLDING = list(UP)  # the states in which a container's mounts are in place
LISTED = "/containers/json?filters=" + quote(json.dumps({"status": HOLDING}))


def engine_socket_present() -> bool:
    """Whether a local engine could be there at all; False skips the question."""
    where = local_socket()
    return where is None or os.path.exists(where)


def _holding_containers() -> list[dict[str, Any]]:
    if local_socket() is None:
        # lazy: start-up time
        from rollout_cli.io.container import connect

        host = docker_host()
        client = connect(timeout=PROBE_TIMEOUT_S)
        try:
            return list(client.api.containers(filters={"status": HOLDING}))
        except Exception as exc:  # the SDK wraps socket errors in several layers
            raise DockerUnavailable(f"Docker engine at {host} did not list its containers: {exc}") from exc
        finally:
            client.close()
    return list(get_json(LISTED, timeout=PROBE_TIMEOUT_S) or ())


def containers_bind_mounting(path: Path) -> list[str]:
    """Names of the running, paused or restarting containers with a bind mount whose host source is exactly `path`.

    Raises DockerUnavailable when the engine does not answer.
    """
    target = os.path.realpath(path)
    names = []
    for box in _holding_containers():
        for mount in box.get("Mounts") or ():
            if mount.get("Type") == "bind" and os.path.realpath(mount.get("Source") or "/") == target:
                names.append(str((box.get("Names") or ["?"])[0]).lstrip("/"))
                break
    return sorted(names)
