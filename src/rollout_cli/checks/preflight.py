"""Before any model is asked anything: does the gateway answer, is it ready, does it take our key?

All three cost no upstream request, so they never spend a free model's rate
limit. Health and smoke both start here; their exit codes follow from it:
unreachable -> 4, key missing or refused -> 2 (the operator's input is wrong).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rollout_cli.checks.classify import is_auth_failure
from rollout_cli.core.workspace import GatewayConfig
from rollout_cli.errors import InputError
from rollout_cli.gateway.api import GatewayClient, Probe
from rollout_cli.gateway.topology import Topology


@dataclass
class GatewayState:
    url: str
    liveliness: Probe | None = None
    readiness: Probe | None = None
    auth: Probe | None = None
    served_aliases: list[str] = field(default_factory=list)  # from /v1/models
    problem: str | None = None  # unreachable | auth-error | not-ready
    message: str | None = None
    warnings: list[str] = field(default_factory=list)  # e.g. several gateway processes without shared router state

    @property
    def reachable(self) -> bool:
        return self.problem not in ("unreachable",)

    @property
    def usable(self) -> bool:
        """Whether model checks can be sent at all."""
        return self.problem in (None, "not-ready")

    def to_json(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "reachable": self.reachable,
            "liveliness": self.liveliness.to_json() if self.liveliness else None,
            "readiness": self.readiness.to_json() if self.readiness else None,
            "auth": self.auth.to_json() if self.auth else None,
            "problem": self.problem,
            "message": self.message,
            "warnings": self.warnings,
        }


def check_gateway(client: GatewayClient, config: GatewayConfig) -> GatewayState:
    state = GatewayState(url=config.url)
    state.liveliness = client.liveliness()
    if not state.liveliness.ok:
        state.problem = "unreachable"
        seen = (
            f"HTTP {state.liveliness.status} on /health/liveliness"
            if state.liveliness.status is not None
            else state.liveliness.error
        )
        state.message = (
            f"gateway {config.url} does not answer ({seen}); start it (`rollout sandbox up`, "
            "or its container) or fix gateway.url in rollout.yaml"
        )
        return state
    state.readiness = client.readiness()
    if not config.key.value:
        state.problem = "auth-error"
        try:
            config.key.require()
        except InputError as exc:
            state.message = exc.message
        return state
    state.auth, state.served_aliases = client.list_models()
    if not state.auth.ok and is_auth_failure(state.auth.status, state.auth.error):
        state.problem = "auth-error"
        state.message = (
            f"gateway {config.url} refused the master key from {config.key.source} "
            f"(HTTP {state.auth.status}: {state.auth.error}); set it to the gateway's master key"
        )
        return state
    if not state.readiness.ok:
        state.problem = "not-ready"
        state.message = (
            f"gateway {config.url} is alive but not ready (/health/readiness: "
            f"{state.readiness.status or state.readiness.error})"
        )
    return state


# A gateway that is up but lists no model (an empty /v1/models): every check that needs one says so.
NO_MODELS = "the gateway serves no models"


def known_aliases(topology: Topology | None, state: GatewayState | None = None) -> list[str]:
    """The aliases checks may name: the gateway config's, else what the gateway serves."""
    if topology is not None:
        return topology.aliases
    return list(state.served_aliases) if state is not None else []


def select_models(requested: Sequence[str] | None, known: list[str], source: str) -> list[str]:
    """The requested aliases in the order given (duplicates dropped), or all known ones."""
    if not requested:
        return list(known)
    unknown = [name for name in requested if name not in known]
    if unknown:
        raise InputError(
            f"unknown model '{unknown[0]}' for --model; {source} knows: {', '.join(known) or 'none'}"
        )
    return list(dict.fromkeys(requested))

