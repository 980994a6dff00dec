"""Docker Swarm adapter: read, scale and restart a replicated service through the SDK's services API.

The engine comes from DOCKER_HOST, as for containers (io/container.py). A
service's state is read from the service and its tasks: swarm replaces a failed
task with a new one in the same slot, so "restarts" of a replica are the
earlier tasks of its slot that the engine still keeps (task history, 5 a slot
by default). Scaling writes the replica count and any labels in one update,
checked against the service's version, so a concurrent change is refused
rather than overwritten.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from rollout_cli.errors import ContainerNotFound, InputError, UnavailableError
from rollout_cli.io.container import connect
from rollout_cli.io.engine import docker_host, engine_reason, engine_time, unavailable

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.services import Service

SERVICE_SETTING = "gateway.service"
# Task states in which a replica's container exists or is about to: the replica holds its slot and port.
ACTIVE_TASK_STATES = ("new", "pending", "assigned", "accepted", "preparing", "ready", "starting", "running")
POLL_S = 0.3


@dataclass(frozen=True)
class TaskState:
    """One replica as the swarm sees it: its current task in a slot."""

    slot: int
    task_id: str
    state: str  # running, starting, preparing, failed, shutdown, ...
    desired_state: str  # running | shutdown
    node: str
    container_id: str | None
    error: str | None  # the engine's reason when the task failed or was rejected
    since: datetime | None
    restarts: int  # earlier tasks of this slot still in the task history

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["since"] = self.since.isoformat() if self.since else None
        return data


@dataclass(frozen=True)
class ServiceState:
    """A replicated service: what it should run, what runs, and its tasks slot by slot."""

    name: str
    id: str
    image: str
    desired: int
    running: int
    update_state: str | None  # updating, completed, rollback_started, ... (None: never updated)
    update_started: str | None  # when the last update began, as the engine wrote it
    labels: dict[str, str]
    tasks: list[TaskState] = field(default_factory=list)
    command: list[str] = field(default_factory=list)  # the task's entrypoint and arguments (for its worker count)
    env: list[str] = field(default_factory=list)  # NAME=value: never shown (it may hold secrets)

    @property
    def status(self) -> str:
        if self.desired == 0:
            return "stopped" if self.running == 0 else "stopping"
        if self.update_state in ("updating", "rollback_started"):
            return "updating"
        if self.running >= self.desired:
            return "running"
        return "degraded" if self.running else "starting"


def _image(spec: Mapping[str, Any]) -> str:
    """The image as the operator named it: without the digest swarm pins it to."""
    return str(spec.get("TaskTemplate", {}).get("ContainerSpec", {}).get("Image", "")).split("@", 1)[0]


def service_state(service: Service, client: DockerClient) -> ServiceState:
    """The service and its tasks, read now."""
    with _engine_errors(service.name, "inspect"):
        service.reload()
        tasks = service.tasks()
        nodes = {n.id: n.attrs.get("Description", {}).get("Hostname", n.id[:12]) for n in client.nodes.list()}
    spec = service.attrs.get("Spec", {})
    task_spec = spec.get("TaskTemplate", {}).get("ContainerSpec", {})
    mode = spec.get("Mode", {})
    if "Replicated" not in mode:
        raise InputError(f"service '{service.name}' runs in {next(iter(mode), 'unknown').lower()} mode; "
                         f"rollout scales replicated services only: check {SERVICE_SETTING} in rollout.yaml")
    by_slot: dict[int, list[dict[str, Any]]] = {}
    for task in tasks:
        by_slot.setdefault(int(task.get("Slot") or 0), []).append(task)
    current: list[TaskState] = []
    for slot, history in sorted(by_slot.items()):
        history.sort(key=lambda t: str(t.get("CreatedAt", "")))
        task = history[-1]
        status = task.get("Status", {})
        container = (status.get("ContainerStatus") or {}).get("ContainerID")
        current.append(TaskState(
            slot=slot, task_id=str(task.get("ID", ""))[:12], state=str(status.get("State", "unknown")),
            desired_state=str(task.get("DesiredState", "")), node=nodes.get(task.get("NodeID", ""), "-"),
            container_id=container[:12] if container else None, error=status.get("Err") or None,
            since=engine_time(status.get("Timestamp")), restarts=len(history) - 1,
        ))
    desired = int(mode["Replicated"].get("Replicas", 0))
    # A slot above the desired count is a replica on its way out (scaled down): it still counts while it runs.
    running = sum(1 for t in current if t.state == "running")
    return ServiceState(
        name=service.name, id=service.id[:12], image=_image(spec), desired=desired, running=running,
        update_state=(service.attrs.get("UpdateStatus") or {}).get("State"),
        update_started=(service.attrs.get("UpdateStatus") or {}).get("StartedAt"),
        labels=dict(spec.get("Labels") or {}), tasks=current,
        command=[*(task_spec.get("Command") or []), *(task_spec.get("Args") or [])],
        env=list(task_spec.get("Env") or []),
    )


class SwarmServices:
    """Operations on the services of one swarm engine, addressed by service name."""

    def __init__(self, client: DockerClient | None = None, setting: str = SERVICE_SETTING) -> None:
        self.client = client if client is not None else connect()
        self.setting = setting

    def find(self, name: str) -> Service:
        with _engine_errors(name, "look up"):
            found = [s for s in self.client.services.list(filters={"name": name}) if s.name == name]
        if not found:
            raise ContainerNotFound(f"no swarm service named '{name}' (docker service ls); check {self.setting} "
                                    "in rollout.yaml, and DOCKER_HOST: it must reach a swarm manager")
        return found[0]

    def state(self, name: str) -> ServiceState:
        return service_state(self.find(name), self.client)

    def scale(self, name: str, replicas: int, *, labels: Mapping[str, str | None] | None = None) -> ServiceState:
        """Set the replica count and the given labels (None removes one) in one update of the service."""
        from docker.types import ServiceMode  # lazy: start-up time

        service = self.find(name)
        with _engine_errors(name, "scale"):
            current = dict(service.attrs.get("Spec", {}).get("Labels") or {})
            for key, value in (labels or {}).items():
                if value is None:
                    current.pop(key, None)
                else:
                    current[key] = value
            self.client.api.update_service(service.id, service.version, mode=ServiceMode("replicated", replicas),
                                           labels=current, fetch_current_spec=True)
        return service_state(service, self.client)

    def force_update(self, name: str) -> ServiceState:
        """Replace every task (rolling, as the service's update_config says): a restart of the replicas."""
        service = self.find(name)
        with _engine_errors(name, "restart"):
            service.force_update()
        return service_state(service, self.client)

    def wait_for(self, name: str, settled: Any, timeout: float) -> ServiceState:
        """Poll until `settled(state)` is true or `timeout` s passed; the last state either way."""
        service = self.find(name)
        ends = time.monotonic() + timeout
        while True:
            state = service_state(service, self.client)
            if settled(state) or time.monotonic() >= ends:
                return state
            time.sleep(POLL_S)

    def logs(self, name: str, tail: int = 100) -> list[str]:
        """The last `tail` lines of every replica, as the engine interleaves them."""
        service = self.find(name)
        with _engine_errors(name, "read logs of"):
            chunks = service.logs(stdout=True, stderr=True, tail=tail, follow=False)
            text = b"".join(chunks).decode("utf-8", errors="replace")
        return text.splitlines()

    def follow_logs(self, name: str, tail: int = 0) -> Iterator[str]:
        service = self.find(name)
        with _engine_errors(name, "follow logs of"):
            pending = ""
            for chunk in service.logs(stdout=True, stderr=True, tail=tail, follow=True):
                pending += chunk.decode("utf-8", errors="replace")
                *lines, pending = pending.split("\n")
                yield from lines
            if pending:
                yield pending


@contextmanager
def _engine_errors(name: str, action: str) -> Iterator[None]:
    """SDK exceptions as the CLI's one-line errors (a swarm's own wording for a missing service)."""
    import docker.errors  # lazy: start-up time
    import requests.exceptions  # lazy: start-up time (docker's transport)

    try:
        yield
    except docker.errors.NotFound as exc:
        raise ContainerNotFound(f"swarm service '{name}' vanished while trying to {action} it: {engine_reason(exc)} "
                                "(docker service ls)") from exc
    except docker.errors.APIError as exc:
        if "not a swarm manager" in engine_reason(exc):
            raise UnavailableError(f"the Docker engine at {docker_host()} is not a swarm manager, so it cannot {action} "
                                   f"service '{name}'; point DOCKER_HOST at a manager (scripts/swarm-up.sh "
                                   "prints one)") from exc
        raise UnavailableError(f"Docker engine refused to {action} service '{name}': {engine_reason(exc)}") from exc
    except (requests.exceptions.RequestException, docker.errors.DockerException, OSError) as exc:
        raise unavailable(exc) from exc
