"""Where the gateway runs, as `gateway.runtime` in rollout.yaml says: a Docker container, a local process, or
a replicated Docker Swarm service.

`rollout gateway ...` and rollback level 3 work the same on all three. `docker`
(the default) finds the container by name or compose service label. `process`
is a litellm that rollout started on this machine (`rollout sandbox up
--runtime process` does, where no Docker engine runs); how to start it again is
recorded in `.rollout/gateway-process.json`. `swarm` is a service
(`gateway.service`) whose replicas each listen on their own port (the service
label `rollout.replica-port-base` plus the task's slot: deploy/docker-stack.yml);
stopping it scales it to 0 and records the replica count it had as a label, and
starting it scales back to that count. All report their state as a
`ContainerState` (a service's summed over its replicas), so renderers and checks
need no second shape; a service also lists its replicas. The runtime is read
from the workspace, never guessed from what happens to run.
"""

from __future__ import annotations

import json
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from rollout_cli.core.workspace import MasterKey, Workspace
from rollout_cli.errors import InputError, RolloutError, UnavailableError
from rollout_cli.gateway.config import check_master_key, load_config
from rollout_cli.io.atomic import atomic_write_text
from rollout_cli.io.container import ContainerRuntime, ContainerState, connect, read_attrs, read_state
from rollout_cli.io.net import ensure_port_free, loopback_environment
from rollout_cli.io.process import ProcessRecord, environment_of, spawn_detached, tail_file
from rollout_cli.io.swarm import ACTIVE_TASK_STATES, ServiceState, SwarmServices, TaskState

if TYPE_CHECKING:
    from rollout_cli.io.container import ContainerRuntime

PROCESS_RECORD = "gateway-process.json"


class GatewayRuntime(ABC):
    kind: str  # docker | process | swarm
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

    def replicas(self) -> list[Replica] | None:
        """Each replica (as of the last state()) and where it answers; None for one container or process."""
        return None

    def desired(self) -> int | None:
        """How many replicas should run (as of the last state()); None for one container or process."""
        return None

    @abstractmethod
    def processes(self) -> tuple[int, str, dict[str, str] | None]:
        """How many LiteLLM processes serve (replicas times workers), how that count came about, and their
        environment (None: not known)."""

    def stop_preview(self, state: ContainerState) -> str:
        """What stop() would do, for a dry run."""
        return f"stop container {state.name} ({state.status}, image {state.image})"


class DockerGateway(GatewayRuntime):
    """The gateway's container, by name or compose service, through the Docker SDK."""

    kind = "docker"

    def __init__(self, name: str, runtime: ContainerRuntime | None = None) -> None:
        self.name = name
        self._runtime = runtime

    @property
    def runtime(self) -> ContainerRuntime:
        if self._runtime is None:
            self._runtime = ContainerRuntime()
        return self._runtime

    def state(self) -> ContainerState:
        if self._runtime is None:  # a read alone: over a local engine's socket, without the SDK's import
            found = read_state(self.name)
            if found is not None:
                return found
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

    def processes(self) -> tuple[int, str, dict[str, str] | None]:
        attrs = read_attrs(self.name) if self._runtime is None else None  # a read alone: no SDK import
        config = (attrs if attrs is not None else self.runtime.find(self.name).attrs).get("Config") or {}
        workers = workers_of([*(config.get("Entrypoint") or []), *(config.get("Cmd") or [])], config.get("Env") or [])
        return workers, f"{workers} workers in container {self.name}", _environment(config.get("Env") or [])


@dataclass
class GatewayProcess:
    """How to start the gateway as a local process again, and the process running now.

    `env` holds only settings that are not secret; the master key comes from
    the workspace (`gateway.master_key_env` / `master_key_file`) at each start.
    """

    argv: list[str]
    cwd: Path
    log: Path
    env: dict[str, str]
    port: int | None = None
    process: ProcessRecord | None = None
    restarts: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "argv": self.argv, "cwd": str(self.cwd), "log": str(self.log), "env": self.env, "port": self.port,
            "process": self.process.to_json() if self.process else None, "restarts": self.restarts,
        }

    @classmethod
    def load(cls, path: Path) -> GatewayProcess | None:
        """The record at `path`, or None when no process gateway was ever started there."""
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            return cls(
                argv=[str(a) for a in raw["argv"]], cwd=Path(raw["cwd"]), log=Path(raw["log"]),
                env={str(k): str(v) for k, v in (raw.get("env") or {}).items()},
                port=int(raw["port"]) if raw.get("port") is not None else None,
                process=ProcessRecord.from_json(raw["process"]) if raw.get("process") else None,
                restarts=int(raw.get("restarts", 0)),
            )
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise InputError(
                f"{path} is damaged ({exc.__class__.__name__}: {exc}); stop the gateway process by hand and delete it"
            ) from None

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(self.to_json(), indent=2) + "\n")


class ProcessGateway(GatewayRuntime):
    """The gateway as a local process (`gateway.runtime: process`), from its record in `.rollout/`.

    Start and restart rebuild the process from the record: the same command
    line, the config checked again first (an operator may have edited it), and
    the master key from the workspace.
    """

    kind = "process"

    def __init__(self, record_path: Path, key: MasterKey, config: Path | None) -> None:
        self.record_path = record_path
        self.key = key
        self.config = config
        self.name = f"litellm process recorded in {record_path}"

    def record(self) -> GatewayProcess | None:
        return GatewayProcess.load(self.record_path)

    def _need_record(self) -> GatewayProcess:
        record = self.record()
        if record is None:
            raise InputError(
                f"gateway.runtime is process but {self.record_path} records no gateway process; "
                "start one with `rollout sandbox up --runtime process`, or set gateway.runtime: docker"
            )
        return record

    def state(self) -> ContainerState:
        record = self.record()
        proc = record.process if record else None
        running = proc is not None and proc.alive()
        started = datetime.fromtimestamp(proc.started_at, UTC) if proc else None
        return ContainerState(
            name="litellm (process)",
            id=f"pid {proc.pid}" if proc else "-",
            status="running" if running else ("exited" if proc else "not started"),
            running=running,
            health=None,
            started_at=started,
            finished_at=None,
            uptime_s=proc.uptime_s() if proc and running else None,
            restart_count=record.restarts if record else 0,
            image=record.argv[0] if record and record.argv else "litellm",
            exit_code=None,  # not our child: its exit status is not ours to read
            oom_killed=False,
        )

    def start(self) -> ContainerState:
        record = self._need_record()
        if record.process is not None and record.process.alive():
            return self.state()
        if self.config is not None:
            load_config(self.config)
        if self.key.problem:
            self.key.require()  # raises: says what is wrong with the key that was found
        key = check_master_key(self.key.value, self.key.source)
        if record.port is not None:
            ensure_port_free(record.port, "the gateway's port (recorded in " + str(self.record_path) + ")")
        env = {**loopback_environment(), **record.env, "LITELLM_MASTER_KEY": key}
        # Under the test suite's coverage run, every Python process we start would be measured;
        # litellm is not ours to measure, and tracing would only slow its start down.
        env = {k: v for k, v in env.items() if not k.startswith("COVERAGE_")}
        was_started = record.process is not None
        record.process = spawn_detached(record.argv, log=record.log, env=env, cwd=record.cwd)
        if was_started:
            record.restarts += 1
        record.save(self.record_path)
        return replace(self.state(), changed=True)

    def stop(self, timeout: int = 10) -> ContainerState:
        record = self.record()
        if record is None or record.process is None or not record.process.alive():
            return self.state()
        record.process.stop(grace_s=timeout)
        return replace(self.state(), changed=True)

    def logs(self, tail: int = 100) -> list[str]:
        record = self._need_record()
        return tail_file(record.log, tail)

    def processes(self) -> tuple[int, str, dict[str, str] | None]:
        record = self.record()
        workers = workers_of(record.argv, [f"{k}={v}" for k, v in record.env.items()]) if record else 1
        process = record.process if record else None
        environment = environment_of(process.pid) if process is not None and process.alive() else None
        return workers, f"{workers} workers of the gateway process", environment

    def follow_logs(self, tail: int = 0) -> Iterator[str]:
        """The last `tail` lines, then new ones as they come, until the process ends."""
        log = self._need_record().log
        yield from self.logs(tail)
        try:
            # opened apart from the `with`, so only a failure to open becomes this error
            handle = open(log, encoding="utf-8", errors="replace")  # noqa: SIM115
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
                record = self.record()
                if record is None or record.process is None or not record.process.alive():
                    break
                time.sleep(0.2)
            if pending:
                yield pending


REPLICA_PORT_LABEL = "rollout.replica-port-base"
REPLICAS_BEFORE_STOP_LABEL = "rollout.replicas-before-stop"
STOP_SETTLE_S = 60.0  # beyond the step's timeout: the service's own stop_grace_period, then the engine reaping the tasks
UPDATE_BEGINS_S = 10.0  # how long a restart waits for the engine to mark its rolling update as begun


@dataclass(frozen=True)
class Replica:
    """One replica of a swarm service: its task, and the URL it answers on (None: no port known)."""

    task: TaskState
    url: str | None


class SwarmGateway(GatewayRuntime):
    """The gateway as a replicated Docker Swarm service (`gateway.service`), through the SDK's services API."""

    kind = "swarm"

    def __init__(self, name: str, url: str, services: SwarmServices | None = None, *,
                 docker_host: str | None = None) -> None:
        self.name = name
        self.url = url
        self._services = services
        self.docker_host = docker_host  # None: $DOCKER_HOST
        self._last: ServiceState | None = None

    @property
    def services(self) -> SwarmServices:
        if self._services is None:
            self._services = SwarmServices(connect(base_url=self.docker_host) if self.docker_host else None)
        return self._services

    def service(self) -> ServiceState:
        """The service and its tasks, read now."""
        self._last = self.services.state(self.name)
        return self._last

    def state(self) -> ContainerState:
        return _summary(self.service())

    def replicas(self) -> list[Replica]:
        service = self._last if self._last is not None else self.service()
        # A slot the service wants whose task failed stays listed (named, not silently missing) until replaced.
        return [Replica(task, replica_url(self.url, service, task.slot)) for task in service.tasks
                if task.slot <= service.desired or task.desired_state == "running" or task.state in ACTIVE_TASK_STATES]

    def desired(self) -> int:
        return (self._last if self._last is not None else self.service()).desired

    def stop_preview(self, state: ContainerState) -> str:
        service = self._last or self.service()
        return (f"scale service {service.name} from {service.desired} replicas to 0 "
                f"(recording {service.desired} in its label {REPLICAS_BEFORE_STOP_LABEL}), image {service.image}")

    def stop(self, timeout: int = 10) -> ContainerState:
        """Scale to 0, recording the replica count as a label; returns once no task runs (bounded)."""
        before = self.service()
        if before.desired == 0 and before.running == 0:
            return _summary(before)
        if before.desired > 0:
            self.services.scale(self.name, 0, labels={REPLICAS_BEFORE_STOP_LABEL: str(before.desired)})
        after = self.services.wait_for(self.name, _no_task_active, timeout + STOP_SETTLE_S)
        self._last = after
        if not _no_task_active(after):
            still = ", ".join(f"slot {t.slot} {t.state}" for t in after.tasks if t.state in ACTIVE_TASK_STATES)
            raise UnavailableError(f"service {self.name} was scaled to 0 but its tasks did not stop within "
                                   f"{timeout + STOP_SETTLE_S:g} s ({still}); see docker service ps {self.name}")
        return replace(_summary(after), changed=True)

    def start(self) -> ContainerState:
        """Scale back to the replica count recorded by stop(); a service with replicas is left alone."""
        before = self.service()
        if before.desired > 0:
            return _summary(before)
        recorded = before.labels.get(REPLICAS_BEFORE_STOP_LABEL)
        if recorded is None or not recorded.isdigit() or int(recorded) < 1:
            raise InputError(f"service {self.name} is scaled to 0 and records no replica count to restore "
                             f"(label {REPLICAS_BEFORE_STOP_LABEL}); scale it yourself: "
                             f"docker service scale {self.name}=N")
        after = self.services.scale(self.name, int(recorded), labels={REPLICAS_BEFORE_STOP_LABEL: None})
        self._last = after
        return replace(_summary(after), changed=True)

    def restart(self, timeout: int = 10) -> ContainerState:
        """Replace every replica, one at a time as the service's update_config says."""
        before = self.service()
        if before.desired == 0:
            return self.start()
        self.services.force_update(self.name)
        # The engine marks the update as begun a moment later: until then the old replicas look settled to a wait.
        self._last = self.services.wait_for(
            self.name, lambda s: s.update_started != before.update_started, UPDATE_BEGINS_S)
        return replace(_summary(self._last), changed=True)

    def logs(self, tail: int = 100) -> list[str]:
        return self.services.logs(self.name, tail=tail)

    def processes(self) -> tuple[int, str, dict[str, str] | None]:
        service = self.service()
        workers = workers_of(service.command, service.env)
        each = f" x {workers} workers" if workers > 1 else ""
        return (service.desired * workers, f"{service.desired} replicas of service {self.name}{each}",
                _environment(service.env))

    def follow_logs(self, tail: int = 0) -> Iterator[str]:
        return self.services.follow_logs(self.name, tail=tail)


def _no_task_active(service: ServiceState) -> bool:
    return not any(t.state in ACTIVE_TASK_STATES for t in service.tasks)


def _summary(service: ServiceState) -> ContainerState:
    """A service as one ContainerState: running while any replica runs; restarts summed over the slots."""
    return ContainerState(
        name=service.name, id=service.id, status=service.status, running=service.running > 0, health=None,
        started_at=None, finished_at=None, uptime_s=None,
        restart_count=sum(t.restarts for t in service.tasks), image=service.image, exit_code=None, oom_killed=False,
    )


def replica_url(gateway_url: str, service: ServiceState, slot: int) -> str | None:
    """gateway.url's scheme and host, at the service's port base plus the slot; None without the label."""
    base = service.labels.get(REPLICA_PORT_LABEL, "")
    if not base.isdigit() or slot < 1:
        return None
    parts = urlsplit(gateway_url)
    return urlunsplit((parts.scheme, f"{parts.hostname}:{int(base) + slot}", "", "", ""))


_WORKERS = re.compile(r"--num_workers(?:=|\s+)(\d+)")


def _environment(entries: Sequence[str]) -> dict[str, str]:
    """`NAME=value` entries (a container's or a service's Env) as a mapping."""
    return dict(entry.partition("=")[::2] for entry in entries)


def workers_of(argv: Sequence[str], env: Sequence[str]) -> int:
    """LiteLLM's worker processes from its command line (`--num_workers N`, also inside a `sh -c` string)
    or, without that option, its NUM_WORKERS variable (`NAME=value` entries); 1 when neither says."""
    found = _WORKERS.findall(" ".join(argv))
    if found:
        return max(1, int(found[-1]))  # click takes the last occurrence
    for entry in env:
        name, _, value = entry.partition("=")
        if name == "NUM_WORKERS" and value.strip().isdigit():
            return max(1, int(value))
    return 1


def process_record_path(ws: Workspace) -> Path:
    return ws.state_dir / PROCESS_RECORD


def runtime_for(ws: Workspace) -> GatewayRuntime:
    """The gateway's runtime, as `gateway.runtime` in rollout.yaml says."""
    if ws.gateway.runtime == "process":
        return ProcessGateway(process_record_path(ws), ws.gateway.key, ws.gateway.config)
    if ws.gateway.runtime == "swarm":
        if not ws.gateway.service:
            raise InputError(f"gateway.runtime is swarm but gateway.service is not set in {ws.config_path}; "
                             "name the gateway's swarm service there (docker service ls)")
        return SwarmGateway(ws.gateway.service, ws.gateway.url, docker_host=ws.gateway.docker_host)
    if not ws.gateway.container:
        raise InputError(
            f"gateway.container is not set in {ws.config_path}; name the gateway's container "
            "or compose service there (or set gateway.runtime: process)"
        )
    return DockerGateway(ws.gateway.container)


def runtime_summary(ws: Workspace) -> dict[str, Any] | None:
    """The gateway's container, process or swarm service (`runtime` says which) state, or why it cannot be read;
    None when no runtime is named."""
    if ws.gateway.runtime == "docker" and not ws.gateway.container:
        return None
    try:
        state = runtime_for(ws).state()
    except RolloutError as exc:
        return {"name": ws.gateway.service or ws.gateway.container, "status": "unknown", "error": str(exc),
                "runtime": ws.gateway.runtime}
    return {**state.as_dict(), "runtime": ws.gateway.runtime}
