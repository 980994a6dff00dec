"""What the gateway config file says the checks should expect: aliases, fallback chains, upstreams.

Read from the LiteLLM config (`gateway.config` in rollout.yaml), not from the
running proxy: the config is what CI reviews and what the operator changes,
so a model that the file names but the proxy lost is a finding, not noise.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rollout_cli.gateway.config import load_config

OPENROUTER_PREFIX = "openrouter/"
OPENROUTER_API_BASE = "https://openrouter.ai/api/v1"
_ENV_REF = "os.environ/"


@dataclass(frozen=True)
class GatewayModel:
    """One `model_list` entry."""

    alias: str  # model_name: what clients (and checks) ask for
    model: str  # litellm_params.model, e.g. openrouter/z-ai/glm-4.5-air:free
    api_base: str | None = None  # resolved: `os.environ/X` becomes $X, None when unset

    @property
    def provider(self) -> str:
        return self.model.split("/", 1)[0] if "/" in self.model else ""

    @property
    def upstream_id(self) -> str:
        """The id the provider knows: the OpenRouter id without LiteLLM's prefix."""
        return self.model.removeprefix(OPENROUTER_PREFIX)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "upstream_id": self.upstream_id}


@dataclass(frozen=True)
class Topology:
    """The gateway's models in config order and its fallback chains."""

    models: tuple[GatewayModel, ...]
    fallbacks: dict[str, list[str]] = field(default_factory=dict)
    mock_testing_allowed: bool = False  # general_settings.dangerously_allow_mock_testing_request_params
    source: Path | None = None
    redis: str | None = None  # router_settings' redis_host or redis_url as written (maybe os.environ/NAME)

    @property
    def aliases(self) -> list[str]:
        seen: list[str] = []
        for model in self.models:
            if model.alias not in seen:
                seen.append(model.alias)
        return seen

    @property
    def primary(self) -> str | None:
        """The head of the fallback chains (the alias nothing falls back to), else the first alias."""
        targets = {t for chain in self.fallbacks.values() for t in chain}
        for alias in self.fallbacks:
            if alias not in targets:
                return alias
        return self.aliases[0] if self.aliases else None

    def deployments(self, alias: str) -> list[GatewayModel]:
        return [m for m in self.models if m.alias == alias]

    def next_in_chain(self, alias: str) -> str | None:
        chain = self.fallbacks.get(alias) or []
        return chain[0] if chain else None

    def to_json(self) -> dict[str, Any]:
        return {
            "source": str(self.source) if self.source else None,
            "primary": self.primary,
            "models": [m.to_json() for m in self.models],
            "fallbacks": self.fallbacks,
            "mock_testing_allowed": self.mock_testing_allowed,
        }


def read_topology(path: Path) -> Topology:
    """Parse a LiteLLM proxy config, validated whole (gateway_config.load_config) first."""

    raw = load_config(path)
    models = tuple(
        GatewayModel(entry["model_name"], entry["litellm_params"]["model"],
                     _resolve(entry["litellm_params"].get("api_base")))
        for entry in raw["model_list"]
    )
    router = raw.get("router_settings") or {}
    general = raw.get("general_settings") or {}
    return Topology(
        models=models,
        fallbacks={alias: list(targets) for rule in router.get("fallbacks") or [] for alias, targets in rule.items()},
        mock_testing_allowed=bool(general.get("dangerously_allow_mock_testing_request_params")),
        source=path,
        redis=str(router.get("redis_host") or router.get("redis_url") or "") or None,
    )


def shared_state_warning(processes: int, how: str, topology: Topology | None,
                         environment: dict[str, str] | None = None) -> str | None:
    """Why several gateway processes without Redis misjudge models, or None (one process, Redis set, no config).

    LiteLLM keeps cooldowns, allowed-fails counts and rate limits in each
    process's memory unless router_settings points at Redis: a model one
    process has cooled down is still tried by the others, and each process
    allows its own share of failures and requests. A setting that names a
    variable (`os.environ/REDIS_HOST`, as the shipped config does) is Redis
    only when the gateway's `environment` sets it (None: not known, taken as set).
    """
    if processes <= 1 or topology is None:
        return None
    if not topology.redis:
        missing = "no Redis (redis_host or redis_url)"
    elif topology.redis.startswith(_ENV_REF) and environment is not None \
            and not environment.get(topology.redis[len(_ENV_REF):]):
        missing = f"no Redis (its {topology.redis} is unset in the gateway's environment)"
    else:
        return None
    return (f"the gateway runs as {processes} processes ({how}) and router_settings in {topology.source} "
            f"has {missing}: cooldowns and rate limits are kept per process, so a model cooled down in one is "
            "still tried by the others; point router_settings at a shared Redis (docs/SETUP.md, \"Several nodes\")")


def _resolve(value: Any) -> str | None:
    """`os.environ/NAME` as LiteLLM resolves it; None when the variable is unset."""
    if not isinstance(value, str) or not value:
        return None
    if value.startswith(_ENV_REF):
        return os.environ.get(value[len(_ENV_REF):]) or None
    return value


def load_topology(config: Path | None) -> Topology | None:
    """The topology of the workspace's gateway config, or None when none is configured."""
    return read_topology(config) if config is not None else None
