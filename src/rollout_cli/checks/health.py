"""`rollout health`: is the gateway up, and does every model answer through it, right now?

One real completion per alias, all at once (threads: the work is waiting on
sockets), each with its own timeout, so five slow models cost one slow answer.

A fallback must not hide a failing model: every check is sent with
`disable_fallbacks: true` (the failing model then answers with its own error),
and the answer's `x-litellm-model-group` is still read: if another alias
served, the model counts as down. The gateway's `/health?model=` is not used:
it calls the model the same way but judges an empty answer healthy, and says
nothing about which alias served.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

from rollout_cli.checks.budget import RequestBudget
from rollout_cli.checks.classify import (
    AUTH_ERROR,
    COOLDOWN_MEMORY,
    FAILING,
    HEALTHY,
    INCONCLUSIVE,
    NOT_CHECKED,
    classify,
    explain_cooldowns,
)
from rollout_cli.checks.evidence import Evidence
from rollout_cli.checks.preflight import NO_MODELS, GatewayState, known_aliases, select_models
from rollout_cli.core.quota import require_room
from rollout_cli.core.result import Result
from rollout_cli.core.workspace import Workspace
from rollout_cli.errors import ExitCode
from rollout_cli.gateway.control import count_replicas, replica_evidence
from rollout_cli.gateway.runtime import runtime_for, runtime_summary
from rollout_cli.gateway.topology import Topology, shared_state_warning

HEALTH_PROMPT = "ping: reply with the single word pong"
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_MAX_TOKENS = 16
SEQUENTIAL_ENV = "ROLLOUT_CHECKS_SEQUENTIAL"  # benchmarks compare against a one-at-a-time run
REPLICAS_WAIT_S = 30.0  # a swarm engine and N replica probes (3 s each at most) that do not answer in time


@dataclass
class ModelHealth:
    alias: str
    status: str  # healthy | rate-limited | down | broken | auth-error | not-checked
    upstream_id: str | None = None
    latency_ms: float | None = None
    http_status: int | None = None
    error_class: str | None = None
    served_by: str | None = None
    retry_after: float | None = None
    attempted_fallbacks: int | None = None
    message: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == HEALTHY

    @property
    def failing(self) -> bool:
        return self.status in FAILING

    @property
    def inconclusive(self) -> bool:
        return self.status in INCONCLUSIVE

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class HealthReport:
    """Everything `rollout health` found; the advance gates read it directly."""

    gateway: GatewayState
    models: list[ModelHealth]
    container: dict[str, Any] | None = None
    primary: str | None = None
    fallbacks: dict[str, list[str]] = field(default_factory=dict)
    config: str | None = None
    requests: dict[str, Any] = field(default_factory=dict)
    duration_ms: float = 0.0
    timeout_s: float = DEFAULT_TIMEOUT_S
    # A swarm service's replicas, each probed at its own port (gateway/control.py's replica_evidence),
    # with `required` (None: all); None for one container or process.
    replicas: dict[str, Any] | None = None

    def replica_count(self) -> Any:
        """The replica rule's finding (gateway/control.py's count_replicas), or None without replicas."""
        if self.replicas is None:
            return None
        return count_replicas(self.replicas, self.replicas.get("required"))

    def model(self, alias: str) -> ModelHealth | None:
        return next((m for m in self.models if m.alias == alias), None)

    @property
    def healthy_count(self) -> int:
        return sum(1 for m in self.models if m.ok)

    @property
    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for m in self.models:
            out[m.status] = out.get(m.status, 0) + 1
        return out

    @property
    def verdict(self) -> str:
        """unreachable | auth-error | failing | inconclusive | healthy."""
        if self.gateway.problem in ("unreachable", "auth-error"):
            return self.gateway.problem
        replicas = self.replica_count()
        replicas_status = replicas.status if replicas else None
        if self.gateway.problem or self.no_models or any(m.failing for m in self.models) or replicas_status == "fail":
            return "failing"
        if any(m.inconclusive for m in self.models) or replicas_status == "inconclusive":
            return "inconclusive"
        return "healthy"

    @property
    def no_models(self) -> bool:
        """The gateway answered, and there was not one model to check."""
        return self.gateway.problem is None and not self.models

    @property
    def exit_code(self) -> ExitCode:
        return {
            "unreachable": ExitCode.UNAVAILABLE,
            "auth-error": ExitCode.BAD_INPUT,
            "failing": ExitCode.FAILED,
            "inconclusive": ExitCode.HOLD,
        }.get(self.verdict, ExitCode.OK)

    @property
    def messages(self) -> list[str]:
        lines = [self.gateway.message] if self.gateway.message else []
        replicas = self.replica_count()
        if replicas is not None and replicas.status != "pass":
            lines.append(replicas.reason)
        if self.gateway.problem in ("unreachable", "auth-error"):
            return lines  # one cause, said once
        lines += self.gateway.warnings
        if replicas is not None:
            lines += replicas.warnings
        if self.no_models:
            lines.append(NO_MODELS)
        for m in self.models:
            if m.failing or m.inconclusive:
                lines.append(f"{m.alias}: {m.status} ({m.error_class}): {m.message or ''}".rstrip(": "))
        return lines

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "gateway": self.gateway.to_json(),
            "container": self.container,
            "replicas": self.replicas_json(),
            "config": self.config,
            "primary": self.primary,
            "fallbacks": self.fallbacks,
            "models": [m.to_json() for m in self.models],
            "counts": self.counts,
            "requests": self.requests,
            "timeout_s": self.timeout_s,
            "duration_ms": self.duration_ms,
        }

    def replicas_json(self) -> dict[str, Any] | None:
        count = self.replica_count()
        if self.replicas is None or count is None:
            return None
        return {**self.replicas, "verdict": count.status, "value": count.value, "reason": count.reason,
                "warnings": count.warnings}

    def to_result(self) -> Result[HealthReport]:
        return Result("health", self, self.messages, self.exit_code)


def check_health(
    ws: Workspace,
    models: Sequence[str] | None = None,
    *,
    timeout: float = DEFAULT_TIMEOUT_S,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    sequential: bool | None = None,
    container: bool = True,
    evidence: Evidence | None = None,
    prompt: str = HEALTH_PROMPT,
    replicas_required: int | None = None,
) -> HealthReport:
    """Check the gateway and every (or each named) model alias; never raises for what it finds.

    `evidence` shares the parsed gateway config, the client and the preflight
    with the other checks of one decision (and, when it shares answers, the
    completions: `advance` asks with the smoke suite's first case as `prompt`
    and `max_tokens`, so that case costs no second request). A swarm service's replicas are
    probed each at its own port (unless `container` is false); `replicas_required` of them
    must be ready (None: all). Raises InputError only for bad
    input: an unknown alias in `models`, an unreadable gateway config.
    """
    started = time.perf_counter()
    if sequential is None:
        sequential = os.environ.get(SEQUENTIAL_ENV) == "1"
    own = evidence is None
    evidence = evidence or Evidence(ws, timeout=timeout)
    topology = evidence.topology
    if topology is not None:  # bad input is refused before anything is sent
        selected = select_models(models, topology.aliases, f"gateway config {topology.source}")

    box: dict[str, Any] = {}
    box_thread = None
    if container and (ws.gateway.container or ws.gateway.runtime in ("process", "swarm")):
        # Docker may be slow or absent; it never holds up the model checks.
        box_thread = threading.Thread(target=_read_container, args=(ws, box), daemon=True)
        box_thread.start()
    replicas_thread = None
    if container and ws.gateway.runtime == "swarm":
        replicas_thread = threading.Thread(target=_read_replicas, args=(ws, box), daemon=True)
        replicas_thread.start()

    try:
        state = evidence.gateway()
        if topology is None:
            selected = select_models(models, known_aliases(None, state), f"gateway {ws.gateway.url}")
        budget = RequestBudget(evidence.client, planned=len(selected) if state.usable else 0, shared=evidence.answers)
        if state.usable:
            require_room(evidence.ledger, ws.openrouter, "health", len(selected))  # exit 3 past rollout's share
            results = _check_models(budget, selected, topology, timeout, prompt, max_tokens, sequential)
            explain_cooldowns(results, evidence.client.metrics, ws.state_dir / COOLDOWN_MEMORY)
        else:
            # Nothing was sent: with the key refused every model is an auth error, with no gateway unknown.
            status = AUTH_ERROR if state.problem == "auth-error" else NOT_CHECKED
            results = [
                ModelHealth(
                    alias, status, _upstream(topology, alias),
                    error_class="gateway-auth" if status == AUTH_ERROR else None,
                    message=f"not sent: {state.problem}",
                )
                for alias in selected
            ]
    finally:
        if own:
            evidence.close()
    container_state = None
    if box_thread is not None:
        box_thread.join(timeout=6.0)
        container_state = box.get("state") or {
            "name": ws.gateway.container or ws.gateway.service, "status": "unknown", "error": "Docker engine did not answer in 6 s",
        }
    processes, how, environment = box.get("processes") or (1, "", None)
    shared = shared_state_warning(processes, how, topology, environment)
    if shared is not None and shared not in state.warnings:  # the preflight is shared by one decision's checks
        state.warnings.append(shared)
    replicas = None
    if replicas_thread is not None:
        replicas_thread.join(timeout=REPLICAS_WAIT_S)
        replicas = box.get("replicas") or {
            "service": ws.gateway.service, "desired": None, "status": "unknown", "replicas": [],
            "error": f"the swarm engine and the replicas did not answer in {REPLICAS_WAIT_S:g} s"}
        replicas = {**replicas, "required": replicas_required}
    return HealthReport(
        gateway=state,
        models=results,
        container=container_state,
        primary=topology.primary if topology else (selected[0] if selected else None),
        fallbacks=topology.fallbacks if topology else {},
        config=str(topology.source) if topology and topology.source else None,
        requests=budget.to_json(),
        duration_ms=round((time.perf_counter() - started) * 1000, 1),
        timeout_s=timeout,
        replicas=replicas,
    )



def watch_health(
    ws: Workspace,
    models: Sequence[str] | None = None,
    *,
    interval: float = 5.0,
    count: int | None = None,
    **options: Any,
) -> Iterator[Result[HealthReport]]:
    """`rollout health --watch`: one report per round, `interval` seconds apart, until `count` rounds.

    The caller renders each round and ends the loop early by closing the generator (or Ctrl-C).
    """
    rounds = 0
    while True:
        yield check_health(ws, models, **options).to_result()
        rounds += 1
        if count is not None and rounds >= count:
            return
        time.sleep(interval)


def _check_models(
    budget: RequestBudget,
    aliases: list[str],
    topology: Topology | None,
    timeout: float,
    prompt: str,
    max_tokens: int,
    sequential: bool,
) -> list[ModelHealth]:
    def one(alias: str) -> ModelHealth:
        # Health is one shot per alias: a 429 is reported at once, the next run (or --watch round) is the retry.
        seen, _ = budget.ask_counted(alias, prompt, max_tokens=max_tokens, timeout=timeout, retry=False)
        verdict = classify(seen, alias)
        return ModelHealth(
            alias=alias,
            status=verdict.status,
            upstream_id=_upstream(topology, alias),
            latency_ms=seen.latency_ms,
            http_status=seen.status,
            error_class=verdict.error_class,
            served_by=seen.served_by,
            retry_after=seen.retry_after,
            attempted_fallbacks=seen.attempted_fallbacks,
            message=verdict.message,
        )

    if sequential or len(aliases) <= 1:
        return [one(alias) for alias in aliases]
    with ThreadPoolExecutor(max_workers=len(aliases), thread_name_prefix="health") as pool:
        return list(pool.map(one, aliases))


def _upstream(topology: Topology | None, alias: str) -> str | None:
    if topology is None:
        return None
    deployments = topology.deployments(alias)
    return deployments[0].upstream_id if deployments else None


def _read_replicas(ws: Workspace, box: dict[str, Any]) -> None:
    try:
        box["replicas"] = replica_evidence(ws)
    except Exception as exc:  # like the container: context for the gate, never a crash of the check
        box["replicas"] = {"service": ws.gateway.service, "desired": None, "status": "unknown", "replicas": [],
                           "error": str(exc)}


def _read_container(ws: Workspace, box: dict[str, Any]) -> None:
    try:
        box["state"] = runtime_summary(ws)
    except Exception as exc:  # the container is context here, never a reason to fail
        box["state"] = {"name": ws.gateway.container or ws.gateway.service, "status": "unknown", "error": str(exc)}
        return
    try:
        box["processes"] = runtime_for(ws).processes()
    except Exception:  # a count unknown is a warning not given, never a failed check
        pass
