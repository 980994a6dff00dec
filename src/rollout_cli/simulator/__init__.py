"""A local OpenRouter stand-in with per-model fault injection (stdlib only).

The gateway's openrouter deployments point at `Simulator.api_base`; tests,
`rollout sandbox` and rollback drills change its faults at run time.
"""

from rollout_cli.simulator.catalog import (
    FREE_MODELS,
    GATEWAY_ALIASES,
    MODELS,
    CatalogModel,
    find_model,
    known_names,
    resolve_model,
)
from rollout_cli.simulator.faults import ALL_MODELS, CALLERS, FAULT_MODES, VIA, AccountLimits, Fault, FaultBook
from rollout_cli.simulator.server import (
    DEFAULT_API_KEY,
    DEFAULT_HOST,
    DEFAULT_PORT,
    Simulator,
    SimulatorAdmin,
    compose_reply,
    main,
)

__all__ = [
    "ALL_MODELS",
    "CALLERS",
    "DEFAULT_API_KEY",
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "FAULT_MODES",
    "FREE_MODELS",
    "GATEWAY_ALIASES",
    "MODELS",
    "VIA",
    "AccountLimits",
    "CatalogModel",
    "Fault",
    "FaultBook",
    "Simulator",
    "SimulatorAdmin",
    "compose_reply",
    "find_model",
    "known_names",
    "main",
    "resolve_model",
]
