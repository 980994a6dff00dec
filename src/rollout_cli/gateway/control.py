"""`rollout gateway status|start|stop|restart|logs|wait`: the gateway's runtime plus its HTTP API.

The runtime (container, sandbox process or swarm service) says whether the
gateway runs; the proxy's own /health/liveliness and /health/readiness say
whether it serves. "Healthy" needs both. A swarm service is asked replica by
replica (each at its own port), so one broken replica is seen while the others
answer: healthy then also needs every desired replica running, live and ready. Progress while waiting is reported through a callback,
so that the CLI decides how to show it and the core never prints.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from rollout_cli.core.result import Result
from rollout_cli.core.workspace import Workspace
from rollout_cli.errors import ExitCode, GatewayUnavailable, RolloutError
from rollout_cli.gateway.api import GatewayClient, Probe
from rollout_cli.gateway.runtime import REPLICA_PORT_LABEL, GatewayRuntime, Replica, SwarmGateway, runtime_for
from rollout_cli.io.container import ContainerState
from rollout_cli.io.swarm import ACTIVE_TASK_STATES

LOG_LINES_ON_FAILURE = 20
POLL_INTERVAL_S = 0.25


@dataclass
class WaitProgress:
    """One poll of `wait_until_healthy`, for a progress display."""

    elapsed_s: float
    timeout_s: float
    liveliness: Probe
    readiness: Probe | None
    runtime_status: str | None  # running, restarting, exited, ... (None: no runtime known)

    @property
    def summary(self) -> str:
        parts = [f"liveliness {_probe_word(self.liveliness)}"]
        if self.readiness is not None:
            parts.append(f"readiness {_probe_word(self.readiness)}")
        if self.runtime_status is not None:
            parts.append(self.runtime_status)
        return ", ".join(parts)


Progress = Callable[[WaitProgress], None]


class GatewayNotHealthy(GatewayUnavailable):
    """The gateway did not become healthy in time; carries its last log lines."""

    def __init__(self, message: str, log_lines: list[str], waited_s: float) -> None:
        super().__init__(message)
        self.log_lines = log_lines
        self.waited_s = waited_s


def wait_until_healthy(
    url: str,
    runtime: GatewayRuntime | None,
    timeout: float,
    progress: Progress | None = None,
    *,
    logs: Callable[[], list[str]] | None = None,
) -> float:
    """Poll until liveliness and readiness answer 200 and the runtime runs; the seconds it took.

    A container whose health is "starting" counts once our own liveliness probe
    passes (its healthcheck is the same probe, it has just not run yet);
    "unhealthy" never does. A runtime that stopped (exited, dead) fails at once:
    nothing will come up. Raises GatewayNotHealthy with the last log lines.
    """
    started = time.monotonic()
    client = GatewayClient(url, None, timeout=3.0)
    last_problem = "no answer yet"
    try:
        while True:
            elapsed = time.monotonic() - started
            remaining = max(0.1, timeout - elapsed)
            live = client.liveliness(timeout=min(2.0, remaining))
            ready = client.readiness(timeout=min(2.0, remaining)) if live.ok else None
            status: str | None = None
            state: ContainerState | None = None
            replicas: str | None = None  # why a swarm service's replicas are not all ready
            if runtime is not None:
                try:
                    state = runtime.state()
                    status = state.status + (f" ({state.health})" if state.health else "")
                    listed = runtime.replicas()
                    if listed is not None:
                        replicas = replicas_problem(state, runtime.desired() or 0, probe_replicas(listed, 2.0))
                        status += f", {replicas or 'every replica ready'}"
                except RolloutError as exc:
                    status = "unknown"
                    last_problem = exc.message
            if progress is not None:
                progress(WaitProgress(round(elapsed, 2), timeout, live, ready, status))
            runs = state is None or (state.running and state.health != "unhealthy" and replicas is None)
            if live.ok and ready is not None and ready.ok and (runtime is None or (state is not None and runs)):
                return round(time.monotonic() - started, 2)
            if state is not None and state.status in ("exited", "dead", "not started", "stopped"):
                raise _not_healthy(
                    f"gateway {runtime.name if runtime else url} is {state.status}"
                    + (f" (exit code {state.exit_code})" if state.exit_code is not None else "")
                    + " and will not become healthy; see its last log lines",
                    logs, elapsed,
                )
            if not live.ok:
                last_problem = f"liveliness: {live.error or f'HTTP {live.status}'}"
            elif ready is not None and not ready.ok:
                last_problem = f"readiness: {ready.error or f'HTTP {ready.status}'}"
            elif replicas is not None:
                last_problem = replicas
            elif state is not None and not runs:
                last_problem = f"{runtime.name if runtime else 'runtime'} is {status}"
            if elapsed >= timeout:
                raise _not_healthy(
                    f"gateway at {url} not healthy after {timeout:g} s ({last_problem}); "
                    "see its last log lines, or wait longer with --timeout",
                    logs, elapsed,
                )
            time.sleep(min(POLL_INTERVAL_S, max(0.0, timeout - elapsed)))
    finally:
        client.close()


def _not_healthy(message: str, logs: Callable[[], list[str]] | None, elapsed: float) -> GatewayNotHealthy:
    lines: list[str] = []
    if logs is not None:
        try:
            lines = logs()[-LOG_LINES_ON_FAILURE:]
        except RolloutError as exc:
            lines = [f"(no log lines: {exc.message})"]
    return GatewayNotHealthy(message, lines, round(elapsed, 2))


def _probe_word(probe: Probe) -> str:
    if probe.ok:
        return "ok"
    return f"HTTP {probe.status}" if probe.status is not None else "no answer"


@dataclass(frozen=True)
class ReplicaHealth:
    """One replica of a swarm service: its task and its own liveliness and readiness."""

    replica: Replica
    liveliness: Probe
    readiness: Probe

    @property
    def healthy(self) -> bool:
        return self.replica.task.state == "running" and self.liveliness.ok and self.readiness.ok

    def to_json(self) -> dict[str, Any]:
        return {**self.replica.task.as_dict(), "url": self.replica.url, "liveliness": self.liveliness.to_json(),
                "readiness": self.readiness.to_json(), "healthy": self.healthy}


def probe_replicas(replicas: list[Replica], timeout: float = 3.0) -> list[ReplicaHealth]:
    """Ask every replica's own URL; a replica that is not running, or has no port, is not asked."""
    checked = []
    for replica in replicas:
        if replica.url is None:
            skipped = Probe(False, None, 0.0, f"skipped: no port (service label {REPLICA_PORT_LABEL})")
            checked.append(ReplicaHealth(replica, skipped, skipped))
            continue
        if replica.task.state != "running":
            skipped = Probe(False, None, 0.0, f"skipped: task {replica.task.state}")
            checked.append(ReplicaHealth(replica, skipped, skipped))
            continue
        with GatewayClient(replica.url, None, timeout=timeout) as client:
            live = client.liveliness(timeout=timeout)
            ready = client.readiness(timeout=timeout) if live.ok else Probe(False, None, 0.0, "skipped: not live")
        checked.append(ReplicaHealth(replica, live, ready))
    return checked


def replicas_problem(state: ContainerState | None, desired: int, checked: list[ReplicaHealth]) -> str | None:
    """Why a swarm service is not healthy replica by replica, or None when every desired replica serves."""
    if desired == 0:
        return f"service {state.name if state else ''} is scaled to 0".replace("  ", " ")
    broken = [r for r in checked if not r.healthy]
    if broken:
        first = broken[0]
        reason = (f"task {first.replica.task.state}" if first.replica.task.state != "running"
                  else f"liveliness {_probe_word(first.liveliness)}" if not first.liveliness.ok
                  else f"readiness {_probe_word(first.readiness)}")
        more = f" (and {len(broken) - 1} more)" if len(broken) > 1 else ""
        return f"replica {first.replica.task.slot} ({first.replica.url or 'no port'}): {reason}{more}"
    healthy = sum(1 for r in checked if r.healthy)
    if healthy < desired:
        return f"{healthy} of {desired} replicas ready"
    if state is not None and state.status == "updating":
        return "the service is updating"
    return None


# Task states of a replica the swarm is starting (or replacing): not ready yet, but on its way.
STARTING_TASK_STATES = tuple(s for s in ACTIVE_TASK_STATES if s != "running")


def replica_evidence(ws: Workspace, timeout: float = 3.0) -> dict[str, Any] | None:
    """A swarm service's replicas, each probed at its own port, as JSON-ready evidence; None for another runtime.

    `error` says why the service could not be read (then `replicas` is empty and nothing is judged ready).
    """
    if ws.gateway.runtime != "swarm":
        return None
    try:
        runtime = runtime_for(ws)
        assert isinstance(runtime, SwarmGateway)
        service = runtime.service()
        listed = runtime.replicas()
    except RolloutError as exc:
        return {"service": ws.gateway.service, "desired": None, "status": "unknown", "replicas": [], "error": str(exc)}
    checked = probe_replicas(listed, timeout)
    return {"service": service.name, "desired": service.desired, "status": service.status,
            "replicas": [r.to_json() for r in checked], "error": None}


def _on_its_way(replica: dict[str, Any]) -> bool:
    """A task the swarm is starting: desired `ready` while its restart delay runs, then `running`."""
    return replica["state"] in STARTING_TASK_STATES and replica.get("desired_state") in ("ready", "running")


def replica_text(replica: dict[str, Any]) -> str:
    """One replica (as in replica_evidence) named for an operator: slot, task, container, port, what failed."""
    where = ", ".join(filter(None, [f"task {replica['task_id']}",
                                    f"container {replica['container_id']}" if replica.get("container_id") else None,
                                    replica.get("url") or "no port"]))
    if replica.get("healthy"):
        return f"replica {replica['slot']} ({where}): ready"
    state = replica["state"]
    if state != "running":
        why = f"task {state}" + (f" ({replica['error']})" if replica.get("error") else "")
        if _on_its_way(replica):
            why += ": the swarm is starting it"
    else:
        live, ready = replica["liveliness"], replica["readiness"]
        probe, seen = ("liveliness", live) if not live["ok"] else ("readiness", ready)
        why = f"{probe} " + (f"HTTP {seen['status']}" if seen.get("status") is not None else seen.get("error") or "no answer")
    return f"replica {replica['slot']} ({where}): {why}"


@dataclass(frozen=True)
class ReplicaCount:
    """How many replicas are ready against how many must be: pass, fail, or inconclusive (the swarm starting one)."""

    status: str  # pass | fail | inconclusive
    value: str
    threshold: str
    reason: str
    warnings: list[str]


def count_replicas(found: dict[str, Any], required: int | None) -> ReplicaCount:
    """The replica rule, pure: `required` ready replicas (None: every one the service desires).

    Fewer ready is a failure, unless the replicas the swarm is starting (a task
    on its way to running, e.g. the replacement of a killed one) would make up
    the count: that is inconclusive (HOLD), since it may be ready in a minute.
    A service that cannot be read is inconclusive too; it is never a pass.
    """
    threshold = ">= all desired ready" if required is None else f">= {required} ready"
    service = found.get("service") or "the gateway service"
    if found.get("error"):
        return ReplicaCount("inconclusive", "unknown", threshold, f"replicas of {service} cannot be read: "
                            f"{found['error']}", [])
    desired = int(found.get("desired") or 0)
    listed = list(found.get("replicas") or [])
    ready = [r for r in listed if r.get("healthy")]
    broken = [r for r in listed if not r.get("healthy")]
    starting = [r for r in broken if _on_its_way(r)]
    value = f"{len(ready)} of {desired} ready"
    named = "; ".join(replica_text(r) for r in broken)
    if desired == 0:
        return ReplicaCount("fail", value, threshold, f"replicas: service {service} is scaled to 0", [])
    need = desired if required is None else required
    if need > desired:
        return ReplicaCount("fail", value, threshold, f"replicas: service {service} desires {desired}, "
                            f"fewer than the {need} the plan requires (gates.min_ready_replicas)", [])
    if len(ready) >= need:
        return ReplicaCount("pass", value, threshold, f"replicas: {value} (>= {need})",
                            [f"{replica_text(r)} (the gate allows it)" for r in broken])
    short = f"replicas: {value} < {need}: {named}"
    if len(ready) + len(starting) >= need:
        return ReplicaCount("inconclusive", value, threshold, short + " (wait for the swarm's replacement)", [])
    return ReplicaCount("fail", value, threshold, short, [])


# --- the commands' core ------------------------------------------------------


@dataclass(frozen=True)
class GatewayStatusPayload:
    """`rollout gateway status`: the runtime's state and the proxy's own probes."""

    url: str
    runtime: str | None  # docker | process (None: no runtime known)
    target: str | None  # container or process name
    state: ContainerState | None
    runtime_error: str | None
    liveliness: Probe
    readiness: Probe
    desired: int | None = None  # a swarm service's replica count (None: one container or process)
    replicas: list[ReplicaHealth] | None = None

    @property
    def replicas_problem(self) -> str | None:
        if self.replicas is None or self.desired is None:
            return None
        return replicas_problem(self.state, self.desired, self.replicas)

    @property
    def healthy(self) -> bool:
        return self.liveliness.ok and self.readiness.ok and self.replicas_problem is None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "url": self.url,
            "runtime": self.runtime,
            "target": self.target,
            "state": self.state.as_dict() if self.state else None,
            "runtime_error": self.runtime_error,
            "liveliness": self.liveliness.to_json(),
            "readiness": self.readiness.to_json(),
            "healthy": self.healthy,
        }
        if self.replicas is not None:
            out["desired"] = self.desired
            out["replicas"] = [r.to_json() for r in self.replicas]
        return out


@dataclass(frozen=True)
class GatewayWaitPayload:
    """`rollout gateway wait` (and the waiting part of start and restart)."""

    url: str
    timeout_s: float
    runtime: str | None
    healthy: bool
    waited_s: float
    log_lines: list[str]
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "url": self.url, "timeout_s": self.timeout_s, "runtime": self.runtime,
            "healthy": self.healthy, "waited_s": self.waited_s, "log_lines": self.log_lines,
        }
        if self.error is not None:
            out["error"] = self.error
        return out


@dataclass(frozen=True)
class GatewayActionPayload:
    """`rollout gateway start|stop|restart`: what the runtime did, then (unless --no-wait) the wait."""

    action: str  # start | stop | restart
    url: str
    runtime: str
    target: str
    state: ContainerState
    wait: GatewayWaitPayload | None = None

    @property
    def changed(self) -> bool:
        return self.state.changed

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "runtime": self.runtime, "target": self.target, "state": self.state.as_dict(),
            "url": self.url, "action": self.action, "changed": self.changed,
        }
        if self.wait is not None:
            out.update(self.wait.to_json())
        return out


@dataclass(frozen=True)
class GatewayLogsPayload:
    """`rollout gateway logs`: the last lines."""

    runtime: str
    target: str
    tail: int
    lines: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"runtime": self.runtime, "target": self.target, "tail": self.tail, "lines": self.lines}


def status(ws: Workspace) -> Result[GatewayStatusPayload]:
    """Runtime state and the proxy's liveliness and readiness; exit 0 only when both answer."""
    runtime_error: str | None = None
    kind: str | None = None
    target: str | None = None
    state: ContainerState | None = None
    replicas: list[Replica] | None = None
    desired: int | None = None
    try:
        runtime = runtime_for(ws)
        kind, target = runtime.kind, runtime.name
        state = runtime.state()
        replicas = runtime.replicas()
        desired = runtime.desired()
    except RolloutError as exc:
        runtime_error = exc.message
    with GatewayClient(ws.gateway.url, None) as client:
        live = client.liveliness()
        ready = client.readiness() if live.ok else Probe(False, None, 0.0, "skipped: not live")
    checked = probe_replicas(replicas) if replicas is not None else None
    payload = GatewayStatusPayload(ws.gateway.url, kind, target, state, runtime_error, live, ready, desired, checked)
    messages = []
    if payload.replicas_problem is not None:
        messages.append(f"service {target}: {payload.replicas_problem}; see `rollout gateway logs`, "
                        "or `docker service ps` for the tasks")
    elif not payload.healthy:
        messages.append(f"gateway at {ws.gateway.url} is not healthy; try `rollout gateway logs` "
                        "or `rollout gateway start`")
    return Result("gateway status", payload, messages, ExitCode.OK if payload.healthy else ExitCode.UNAVAILABLE)


def start(ws: Workspace, *, wait: bool, timeout: float, progress: Progress | None = None) -> Result[GatewayActionPayload]:
    return _act(ws, "start", lambda r: r.start(), wait=wait, timeout=timeout, progress=progress)


def stop(ws: Workspace, *, timeout: int = 10) -> Result[GatewayActionPayload]:
    return _act(ws, "stop", lambda r: r.stop(timeout), wait=False, timeout=0)


def restart(ws: Workspace, *, wait: bool, timeout: float, progress: Progress | None = None) -> Result[GatewayActionPayload]:
    return _act(ws, "restart", lambda r: r.restart(), wait=wait, timeout=timeout, progress=progress)


def _act(
    ws: Workspace,
    verb: str,
    action: Callable[[GatewayRuntime], ContainerState],
    *,
    wait: bool,
    timeout: float,
    progress: Progress | None = None,
) -> Result[GatewayActionPayload]:
    runtime = runtime_for(ws)
    state = action(runtime)
    past = {"start": "started", "stop": "stopped", "restart": "restarted"}[verb]
    messages = [f"{past} {runtime.name} ({state.status})" if state.changed
                else f"{runtime.name} already {state.status}: nothing to do"]
    waited: GatewayWaitPayload | None = None
    code = ExitCode.OK
    if not wait:
        if verb != "stop":
            messages.append("check it with `rollout gateway wait`")
    else:
        waited, wait_messages, code = _wait(ws, runtime, timeout, progress)
        messages += wait_messages
    payload = GatewayActionPayload(verb, ws.gateway.url, runtime.kind, runtime.name, state, waited)
    return Result(f"gateway {verb}", payload, messages, code)


def wait(ws: Workspace, *, timeout: float, progress: Progress | None = None) -> Result[GatewayWaitPayload]:
    try:
        runtime: GatewayRuntime | None = runtime_for(ws)
    except RolloutError:
        runtime = None  # no container named: the HTTP API alone decides
    payload, messages, code = _wait(ws, runtime, timeout, progress)
    return Result("gateway wait", payload, messages, code)


def _wait(
    ws: Workspace, runtime: GatewayRuntime | None, timeout: float, progress: Progress | None
) -> tuple[GatewayWaitPayload, list[str], ExitCode]:
    kind = runtime.kind if runtime else None
    try:
        took = wait_until_healthy(ws.gateway.url, runtime, timeout, progress,
                                  logs=(lambda: runtime.logs(LOG_LINES_ON_FAILURE)) if runtime else None)
    except GatewayNotHealthy as exc:
        payload = GatewayWaitPayload(ws.gateway.url, timeout, kind, False, exc.waited_s, exc.log_lines, exc.message)
        return payload, [exc.message], ExitCode.UNAVAILABLE
    payload = GatewayWaitPayload(ws.gateway.url, timeout, kind, True, took, [])
    every = f", and all {runtime.desired()} replicas of {runtime.name} ready" if runtime and runtime.replicas() else ""
    return payload, [f"gateway at {ws.gateway.url} is healthy{every} (after {took:g} s)"], ExitCode.OK


def logs(ws: Workspace, *, tail: int) -> Result[GatewayLogsPayload]:
    runtime = runtime_for(ws)
    return Result("gateway logs", GatewayLogsPayload(runtime.kind, runtime.name, tail, runtime.logs(tail)))


def follow_logs(ws: Workspace, *, tail: int) -> Iterator[str]:
    """Log lines as they come; the CLI prints them (a stream has no Result to render)."""
    return runtime_for(ws).follow_logs(tail)
