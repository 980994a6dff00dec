"""Docker adapter: find, inspect, stop, start and run the gateway's container.

The one place that talks to the Docker engine (rollback level 3, health, the
sandbox). `docker` is imported inside functions so that commands which never
touch a container (`rollout rollback --level 1`, `--help`) start fast.
Containers always run with host networking: the engine here has no bridge, and
only loopback traffic is allowed.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from rollout_cli.errors import ContainerNotFound, InputError, UnavailableError
from rollout_cli.io.engine import (
    CONNECT_TIMEOUT_S,
    engine_reason,
    engine_time,
    get_json,
    local_socket,
    unavailable,
)

if TYPE_CHECKING:
    from docker import DockerClient
    from docker.models.containers import Container

COMPOSE_SERVICE_LABEL = "com.docker.compose.service"
COMPOSE_ONEOFF_LABEL = "com.docker.compose.oneoff"  # "True" on `docker compose run` containers
GATEWAY_SETTING = "gateway.container"
UP = ("running", "paused", "restarting")  # a container in these states holds its place (and its mounts)


@dataclass(frozen=True)
class ContainerState:
    """What an operator needs to judge a container, read from `docker inspect`.

    `changed` says whether the call that returned this state did anything
    (stop on a stopped container is harmless and reports `changed=False`).
    """

    name: str
    id: str
    status: str  # created, running, paused, restarting, removing, exited, dead
    running: bool
    health: str | None  # None when the image has no healthcheck
    started_at: datetime | None
    finished_at: datetime | None
    uptime_s: float | None
    restart_count: int
    image: str
    exit_code: int | None
    oom_killed: bool
    changed: bool = False

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data for `--json` renderers."""
        data = asdict(self)
        for key in ("started_at", "finished_at"):
            if data[key] is not None:
                data[key] = data[key].isoformat()
        return data


def connect(timeout: float = CONNECT_TIMEOUT_S, base_url: str | None = None) -> DockerClient:
    """Return a client that has answered a ping, or raise DockerUnavailable.

    Honours DOCKER_HOST (and the other DOCKER_* variables) like the docker CLI,
    unless `base_url` names the engine (a workspace's gateway.docker_host).
    The timeout is short because a rollback must not hang on a dead engine.
    """
    import docker  # lazy: start-up time

    try:
        if base_url:
            client = docker.DockerClient(base_url=base_url, timeout=int(timeout) or 1)
        else:
            client = docker.DockerClient.from_env(timeout=int(timeout) or 1)
        client.ping()
    except Exception as exc:  # the SDK wraps socket errors in several layers
        raise unavailable(exc, base_url) from exc
    return client


def find_container(client: DockerClient, name_or_service: str, setting: str = GATEWAY_SETTING) -> Container:
    """Find by exact container name, else by compose service label (see `pick_service_container`).

    Stopped containers count: a rollback may need to start one again, and
    health must be able to say "exited (code 137)" rather than "not found".
    `setting` is the rollout.yaml key that named the container, for the error messages.
    """
    with _engine_errors(name_or_service, "look up"):
        # The name filter is a regex substring match; keep exact names only.
        by_name = client.containers.list(
            all=True, filters={"name": name_or_service}, ignore_removed=True
        )
        exact = [c for c in by_name if c.name == name_or_service]
        if exact:
            return exact[0]
        by_service = client.containers.list(
            all=True,
            filters={"label": f"{COMPOSE_SERVICE_LABEL}={name_or_service}"},
            ignore_removed=True,
        )
    chosen = pick_service_container(name_or_service, [c.attrs for c in by_service], setting)
    return next(c for c in by_service if c.attrs is chosen)


def pick_service_container(service: str, found: Sequence[Mapping[str, Any]], setting: str) -> Mapping[str, Any]:
    """The one container of compose service `service` that is meant, from `docker inspect` answers.

    A one-off container (`docker compose run`) is a task, not the service: it is
    never chosen. Of the rest, the one that is up (running, paused or
    restarting) wins, else the newest; two up at once (`--scale`) is refused,
    because stopping or restarting one of them at random is not a rollback.
    """
    services = [attrs for attrs in found if _labels(attrs).get(COMPOSE_ONEOFF_LABEL) != "True"]
    if not services:
        raise _not_found(service, setting, oneoffs=len(found))
    up = sorted((attrs for attrs in services if (attrs.get("State") or {}).get("Status") in UP), key=_name)
    if len(up) > 1:
        raise InputError(
            f"compose service '{service}' has {len(up)} containers up ({', '.join(map(_name, up))}): which one "
            f"is meant is unclear; set {setting} in rollout.yaml to one container's exact name"
        )
    return up[0] if up else max(services, key=_created)


def _labels(attrs: Mapping[str, Any]) -> Mapping[str, str]:
    return (attrs.get("Config") or {}).get("Labels") or {}


def _name(attrs: Mapping[str, Any]) -> str:
    return str(attrs.get("Name", "")).lstrip("/")


def _created(attrs: Mapping[str, Any]) -> datetime:
    """`docker inspect`'s creation time, for picking the newest of a compose service's containers."""
    return engine_time(attrs.get("Created")) or datetime.min.replace(tzinfo=UTC)


def _not_found(name_or_service: str, setting: str, oneoffs: int = 0) -> ContainerNotFound:
    if oneoffs:
        return ContainerNotFound(
            f"compose service '{name_or_service}' has only one-off containers ({oneoffs}, from `docker compose "
            f"run`), no service container (docker ps -a); start the service, or check {setting} in rollout.yaml"
        )
    return ContainerNotFound(
        f"no container named '{name_or_service}' or with compose service "
        f"'{name_or_service}' (docker ps -a); check {setting} in rollout.yaml"
    )


def read_state(name_or_service: str, setting: str = GATEWAY_SETTING) -> ContainerState | None:
    """What ContainerRuntime().state(name_or_service) says, asked over a local engine's socket without the SDK
    (io/engine.py: start-up time); None when DOCKER_HOST is not a unix socket, so the caller uses the SDK."""
    attrs = read_attrs(name_or_service, setting)
    return None if attrs is None else state_from_attrs(attrs)


def read_attrs(name_or_service: str, setting: str = GATEWAY_SETTING) -> Mapping[str, Any] | None:
    """`docker inspect` of the container read_state chooses, without the SDK; None: not a local socket."""
    if local_socket() is None:
        return None
    listed = "/containers/json?all=1&filters="
    by_name = get_json(listed + quote(json.dumps({"name": [name_or_service]}))) or []
    chosen = [c for c in by_name if f"/{name_or_service}" in (c.get("Names") or ())][:1]
    by_service = not chosen
    if by_service:
        label = f"{COMPOSE_SERVICE_LABEL}={name_or_service}"
        chosen = get_json(listed + quote(json.dumps({"label": [label]}))) or []
        if not chosen:
            raise _not_found(name_or_service, setting)
    inspected = [get_json(f"/containers/{quote(str(c.get('Id', '')))}/json") for c in chosen]
    found = [attrs for attrs in inspected if attrs is not None]
    if not found:
        raise ContainerNotFound(f"container '{name_or_service}' vanished while trying to inspect it (docker ps -a)")
    # chosen from the exact answers of `docker inspect`, as find_container does (the list's Created has whole seconds)
    return pick_service_container(name_or_service, found, setting) if by_service else found[0]


def inspect_state(container: Container) -> ContainerState:
    """Reload the container and turn `docker inspect` into a ContainerState."""
    with _engine_errors(container.name, "inspect"):
        container.reload()
    return state_from_attrs(container.attrs)


def state_from_attrs(attrs: Mapping[str, Any]) -> ContainerState:
    """`docker inspect`'s answer as a ContainerState."""
    state = attrs.get("State", {})
    started = engine_time(state.get("StartedAt"))
    finished = engine_time(state.get("FinishedAt"))
    running = bool(state.get("Running")) and state.get("Status") != "paused"
    uptime = (datetime.now(UTC) - started).total_seconds() if running and started else None
    never_ran = started is None and state.get("Status") == "created"
    return ContainerState(
        name=str(attrs.get("Name", "")).lstrip("/"),
        id=str(attrs.get("Id", ""))[:12],
        status=state.get("Status", "unknown"),
        running=running,
        health=(state.get("Health") or {}).get("Status"),
        started_at=started,
        finished_at=finished,
        uptime_s=round(uptime, 3) if uptime is not None else None,
        restart_count=int(attrs.get("RestartCount", 0)),
        image=attrs.get("Config", {}).get("Image", ""),
        exit_code=None if running or never_ran else state.get("ExitCode"),
        oom_killed=bool(state.get("OOMKilled")),
    )


class ContainerRuntime:
    """Operations on one engine, addressed by container name or compose service.

    `setting` is the rollout.yaml key the names come from, for the messages that say what to fix.
    """

    def __init__(self, client: DockerClient | None = None, setting: str = GATEWAY_SETTING) -> None:
        self.client = client if client is not None else connect()
        self.setting = setting

    def find(self, name: str) -> Container:
        return find_container(self.client, name, self.setting)

    def state(self, name: str) -> ContainerState:
        return inspect_state(self.find(name))

    def stop(self, name: str, timeout: int = 10) -> ContainerState:
        """Stop (SIGTERM, then SIGKILL after `timeout` s); a stopped container is left alone."""
        container = self.find(name)
        before = inspect_state(container)
        if before.status not in ("running", "restarting", "paused"):
            return before
        with _engine_errors(name, "stop"):
            container.stop(timeout=timeout)
        return replace(inspect_state(container), changed=True)

    def start(self, name: str) -> ContainerState:
        """Start a stopped container; a running one is left alone."""
        container = self.find(name)
        before = inspect_state(container)
        if before.running:
            return before
        with _engine_errors(name, "start"):
            if before.status == "paused":
                container.unpause()
            else:
                container.start()
        return replace(inspect_state(container), changed=True)

    def restart(self, name: str, timeout: int = 10) -> ContainerState:
        container = self.find(name)
        with _engine_errors(name, "restart"):
            container.restart(timeout=timeout)
        return replace(inspect_state(container), changed=True)

    def signal(self, name: str, signal: str) -> ContainerState:
        """Send `signal` ("SIGHUP", ...) to the container's main process (an app's reload)."""
        container = self.find(name)
        with _engine_errors(name, "signal"):
            container.kill(signal=signal)
        return replace(inspect_state(container), changed=True)

    def logs(self, name: str, tail: int = 100) -> str:
        """The last `tail` lines of stdout and stderr, interleaved as Docker stored them."""
        container = self.find(name)
        with _engine_errors(name, "read logs of"):
            raw = container.logs(stdout=True, stderr=True, tail=tail)
        return raw.decode("utf-8", errors="replace")

    def follow_logs(self, name: str, tail: int = 0) -> Iterator[str]:
        """Yield log lines as they come (after the last `tail` ones); ends when the container stops."""
        container = self.find(name)
        with _engine_errors(name, "follow logs of"):
            chunks = container.logs(stdout=True, stderr=True, stream=True, follow=True, tail=tail)
            pending = ""
            try:
                # Chunks are frames, not lines: split and carry the rest over.
                for chunk in chunks:
                    pending += chunk.decode("utf-8", errors="replace")
                    *lines, pending = pending.split("\n")
                    yield from lines
            finally:
                chunks.close()  # also when the caller stops reading early
            if pending:
                yield pending

    def run_detached(
        self,
        image: str,
        name: str,
        *,
        command: str | Sequence[str] | None = None,
        environment: Mapping[str, str] | None = None,
        volumes: Mapping[str, str] | None = None,
        labels: Mapping[str, str] | None = None,
        restart: str | None = None,
        healthcheck: Mapping[str, Any] | None = None,
        entrypoint: Sequence[str] | None = None,
    ) -> ContainerState:
        """Create and start a container on the host network (the only network here).

        `volumes` maps a host path to "container_path[:ro]". `restart` is a
        Docker restart policy such as "unless-stopped" or "on-failure:3".
        `healthcheck` is the engine's HealthConfig ({"test": [...], "interval": ns, ...}).
        The image must already be in the engine: there is no registry to pull from.
        """
        import docker.errors  # lazy: start-up time

        policy = None
        if restart:
            policy_name, _, retries = restart.partition(":")
            policy = {"Name": policy_name, "MaximumRetryCount": int(retries or 0)}
        with _engine_errors(name, "create"):
            try:
                # create + start, not run: run would try to pull a missing image.
                container = self.client.containers.create(
                    image,
                    command=command if command is None or isinstance(command, str) else list(command),
                    name=name,
                    detach=True,
                    network_mode="host",
                    environment=dict(environment or {}),
                    volumes=[f"{host}:{target}" for host, target in (volumes or {}).items()],
                    labels=dict(labels or {}),
                    restart_policy=policy,
                    healthcheck=dict(healthcheck) if healthcheck else None,
                    entrypoint=list(entrypoint) if entrypoint else None,
                )
            except docker.errors.ImageNotFound as exc:
                raise UnavailableError(
                    f"image '{image}' is not in the Docker engine (docker images); build it, "
                    "e.g. scripts/build-gateway-image.sh or scripts/build-test-image.sh"
                ) from exc
        with _engine_errors(name, "start"):
            container.start()
        return replace(inspect_state(container), changed=True)

    def names_with_label(self, label: str) -> list[str]:
        """Names of the containers (stopped ones too) carrying `label` ("key=value" or "key")."""
        with _engine_errors(label, "list"):
            return [c.name for c in self.client.containers.list(all=True, filters={"label": label}, ignore_removed=True)]

    def remove(self, name: str, force: bool = True) -> bool:
        """Remove the container with exactly this name; False when there was none.

        Exact name only, never a compose service: removing is not undoable.
        """
        import docker.errors  # lazy: start-up time

        with _engine_errors(name, "remove"):
            matches = [
                c
                for c in self.client.containers.list(all=True, filters={"name": name}, ignore_removed=True)
                if c.name == name
            ]
            for container in matches:
                try:
                    container.remove(force=force)
                except docker.errors.NotFound:
                    return False  # removed meanwhile, which is what was asked
        return bool(matches)


@contextmanager
def _engine_errors(name: str, action: str) -> Iterator[None]:
    """Turn SDK exceptions into the CLI's one-line errors."""
    import docker.errors  # lazy: start-up time
    import requests.exceptions  # lazy: start-up time (docker's transport)

    try:
        yield
    except docker.errors.NotFound as exc:
        raise ContainerNotFound(
            f"container '{name}' vanished or its image is missing while trying to {action} it: "
            f"{engine_reason(exc)} (docker ps -a)"
        ) from exc
    except docker.errors.APIError as exc:
        raise UnavailableError(f"Docker engine refused to {action} container '{name}': {engine_reason(exc)}") from exc
    except (requests.exceptions.RequestException, docker.errors.DockerException, OSError) as exc:
        raise unavailable(exc) from exc
