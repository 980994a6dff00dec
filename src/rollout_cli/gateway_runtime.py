"""Where the gateway runs: a Docker container, or a local litellm process the sandbox started.

`rollout gateway ...` works the same on both. Production is always a
container (found by name or compose service label); the process runtime exists
so that the sandbox works on a machine without a Docker engine. Both report
their state as a `ContainerState`, so renderers and checks need no second shape.
"""

from __future__ import annotations

import os
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from .container import ContainerState
from .errors import InputError, UnavailableError

if TYPE_CHECKING:
    from .container import ContainerRuntime
    from .sandbox.state import SandboxState
    from .workspace import Workspace


class GatewayRuntime(ABC):
    kind: str  # docker | process
    name: str  # as shown to the operator

    @abstractmethod
    def state(self) -> ContainerState: ...

    @abstractmethod
    def start(self) -> ContainerState: ...

    @abstractmethod
    def stop(self, timeout: int = 10) -> ContainerState: ...

    def restart(self, timeout: int = 10) -> ContainerState:
        self.stop(timeout)
        return replace(self.start(), changed=True)

    @abstractmethod
    def logs(self, tail: int = 100) -> list[str]: ...

    @abstractmethod
    def follow_logs(self, tail: int = 0) -> Iterator[str]: ...


class DockerGateway(GatewayRuntime):
    """The gateway's container, by name or compose service, through the Docker SDK."""

    kind = "docker"

    def __init__(self, name: str, runtime: ContainerRuntime | None = None) -> None:
        self.name = name
        self._runtime = runtime

    @property
    def runtime(self) -> ContainerRuntime:
        if self._runtime is None:
            from .container import ContainerRuntime

            self._runtime = ContainerRuntime()
        return self._runtime

    def state(self) -> ContainerState:
        return self.runtime.state(self.name)

    def start(self) -> ContainerState:
        return self.runtime.start(self.name)

    def stop(self, timeout: int = 10) -> ContainerState:
        return self.runtime.stop(self.name, timeout=timeout)

    def restart(self, timeout: int = 10) -> ContainerState:
        return self.runtime.restart(self.name, timeout=timeout)

    def logs(self, tail: int = 100) -> list[str]:
        return self.runtime.logs(self.name, tail=tail).splitlines()

    def follow_logs(self, tail: int = 0) -> Iterator[str]:
        return self.runtime.follow_logs(self.name, tail=tail)


class ProcessGateway(GatewayRuntime):
    """litellm as a local process, as `rollout sandbox up --runtime process` started it.

    Start and restart rebuild the process from the sandbox record: the same
    command line, the config in the sandbox folder (checked again first, since
    an operator may have edited it), and the master key from the workspace.
    """

    kind = "process"

    def __init__(self, sandbox: SandboxState, master_key: str | None, config: Path) -> None:
        self.sandbox = sandbox
        self.master_key = master_key
        self.config = config
        self.name = f"litellm process of the sandbox in {sandbox.root}"

    def state(self) -> ContainerState:
        record = self.sandbox.gateway_process
        running = record is not None and record.alive()
        started = datetime.fromtimestamp(record.started_at, timezone.utc) if record else None
        return ContainerState(
            name="litellm (process)",
            id=f"pid {record.pid}" if record else "-",
            status="running" if running else ("exited" if record else "not started"),
            running=running,
            health=None,
            started_at=started,
            finished_at=None,
            uptime_s=record.uptime_s() if record and running else None,
            restart_count=self.sandbox.restarts,
            image=self.sandbox.gateway_argv[0] if self.sandbox.gateway_argv else "litellm",
            exit_code=None,  # not our child: its exit status is not ours to read
            oom_killed=False,
        )

    def start(self) -> ContainerState:
        from .gateway_config import check_master_key, load_config
        from .process import spawn_detached
        from .sandbox.state import gateway_environment
        from .sandbox.world import ensure_port_free

        before = self.state()
        if before.running:
            return before
        load_config(self.config)
        key = check_master_key(self.master_key, "the sandbox's key file or $ROLLOUT_SANDBOX_MASTER_KEY")
        if not self.sandbox.gateway_argv:
            raise InputError(f"{self.sandbox.path} records no gateway command; run `rollout sandbox up` again")
        ensure_port_free(self.sandbox.gateway_port, "the gateway (recorded by `rollout sandbox up`)")
        env = {**_base_env(os.environ), **gateway_environment(key, self.sandbox.simulator_api_base,
                                                              self.sandbox.simulator_key)}
        self.sandbox.gateway_process = spawn_detached(
            self.sandbox.gateway_argv, log=self.sandbox.gateway_log, env=env, cwd=self.sandbox.root
        )
        if before.status != "not started":
            self.sandbox.restarts += 1
        self.sandbox.save()
        return replace(self.state(), changed=True)

    def stop(self, timeout: int = 10) -> ContainerState:
        record = self.sandbox.gateway_process
        if record is None or not record.alive():
            return self.state()
        record.stop(grace_s=timeout)
        return replace(self.state(), changed=True)

    def logs(self, tail: int = 100) -> list[str]:
        from .process import tail_file

        return tail_file(self.sandbox.gateway_log, tail)

    def follow_logs(self, tail: int = 0) -> Iterator[str]:
        """The last `tail` lines, then new ones as they come, until the process ends."""
        log = self.sandbox.gateway_log
        yield from self.logs(tail)
        try:
            handle = open(log, encoding="utf-8", errors="replace")
        except OSError as exc:
            raise UnavailableError(f"cannot read the gateway log {log}: {exc.strerror}") from None
        with handle:
            handle.seek(0, 2)
            pending = ""
            while True:
                chunk = handle.read()
                if chunk:
                    pending += chunk
                    *lines, pending = pending.split("\n")
                    yield from lines
                    continue
                record = self.sandbox.gateway_process
                if record is None or not record.alive():
                    break
                time.sleep(0.2)
            if pending:
                yield pending


def _base_env(environ: Mapping[str, str]) -> dict[str, str]:
    """The operator's environment minus anything that could route loopback traffic elsewhere."""
    blocked = {"http_proxy", "https_proxy", "all_proxy", "no_proxy"}
    return {k: v for k, v in environ.items() if k.lower() not in blocked}


def runtime_for(ws: Workspace) -> GatewayRuntime:
    """The sandbox's litellm process when the workspace is a process-runtime sandbox, else the container."""
    from .sandbox.state import load_state

    sandbox = load_state(ws.root)
    if sandbox is not None and sandbox.runtime == "process":
        config = ws.gateway.config or ws.root / "gateway" / "litellm-config.yaml"
        return ProcessGateway(sandbox, ws.gateway.master_key(), config)
    if not ws.gateway.container:
        raise InputError(
            f"gateway.container is not set in {ws.config_path}; name the gateway's container "
            "or compose service there"
        )
    return DockerGateway(ws.gateway.container)

