"""Which running containers see a host file through a single-file bind mount.

`docker inspect` lists a container's mounts with their host Source; a bind
mount whose Source is the file itself (not a folder above it) pins the file's
inode inside the container, so a rename-based write never reaches it.
"""

from __future__ import annotations

import os
from pathlib import Path

from rollout_cli.errors import DockerUnavailable
from rollout_cli.io.container import connect, docker_host

PROBE_TIMEOUT_S = 2.0


def engine_socket_present() -> bool:
    """Whether a local engine could be there at all; False skips the SDK import (start-up time)."""
    host = docker_host()
    if not host.startswith("unix://"):
        return True
    return os.path.exists(host.removeprefix("unix://"))


def containers_bind_mounting(path: Path) -> list[str]:
    """Names of the running containers with a bind mount whose host source is exactly `path`.

    Raises DockerUnavailable when the engine does not answer.
    """
    target = os.path.realpath(path)
    client = connect(timeout=PROBE_TIMEOUT_S)
    try:
        # The list endpoint carries Mounts already: one request, however many containers run.
        boxes = client.api.containers(filters={"status": "running"})
    except Exception as exc:  # the SDK wraps socket errors in several layers
        raise DockerUnavailable(f"Docker engine did not list its containers: {exc}") from exc
    finally:
        client.close()
    names = []
    for box in boxes:
        for mount in box.get("Mounts") or ():
            if mount.get("Type") == "bind" and os.path.realpath(mount.get("Source") or "/") == target:
                names.append(str((box.get("Names") or ["?"])[0]).lstrip("/"))
                break
    return sorted(names)
