"""The LiteLLM gateway config: the shipped `deploy/litellm-config.yaml`, checked before any start.

LiteLLM itself reports a bad config only after seconds of start-up, in a
traceback inside its log; this check takes milliseconds and names the key at
fault. It covers what the gateway needs to route: the model list, the fallback
chain, and where the master key comes from. The master key itself is checked
here too, because LiteLLM refuses weak keys only at boot.
"""

from __future__ import annotations

import hashlib
import secrets
from importlib import resources
from pathlib import Path
from typing import Any

from rollout_cli.core.workspace import master_key_problem
from rollout_cli.errors import InputError
from rollout_cli.io.yamlfile import read_yaml

CONFIG_NAME = "litellm-config.yaml"
MASTER_KEY_PREFIX = "sk-"
MIN_MASTER_KEY_RANDOM = 32  # characters after sk-
MIN_MASTER_KEY_DISTINCT = 12

# What `rollout sandbox up` adds to the deploy config, and why:
SANDBOX_OVERRIDES: dict[str, dict[str, Any]] = {
    # `mock_testing_fallbacks: true` in a request (the smoke fallback drill)
    # forces a fallback only when this is set; production keeps it off.
    "general_settings": {"dangerously_allow_mock_testing_request_params": True},
    # A fault cleared with `rollout sandbox fault --clear` should stop mattering
    # within seconds, not after production's cooldown.
    "router_settings": {"cooldown_time": 5},
    # Metrics stay behind the master key, as in production.
    "litellm_settings": {"require_auth_for_metrics_endpoint": True},
}


def packaged_config(name: str = CONFIG_NAME) -> Path:
    """A shipped deploy file (default: the gateway config): inside the wheel, or the repo's `deploy/` in a checkout."""
    shipped = resources.files("rollout_cli") / "deploy" / name
    if shipped.is_file():
        return Path(str(shipped))
    return Path(__file__).resolve().parents[3] / "deploy" / name


def load_config(path: Path) -> dict[str, Any]:
    """Read and validate a gateway config; every problem is one line naming the key."""

    if not path.exists():
        raise InputError(f"gateway config {path} does not exist; check gateway.config in rollout.yaml")
    raw = read_yaml(path, label="gateway config ")
    validate_config(raw, path)
    return raw


def validate_config(raw: Any, path: Path | str) -> list[str]:
    """Check the parts of a LiteLLM config the gateway cannot route without; returns the aliases."""

    def bad(key: str, problem: str) -> InputError:
        return InputError(f"gateway config {path}: {key} {problem}; fix the file")

    if not isinstance(raw, dict):
        raise bad("the top level", "must be a mapping with model_list, router_settings, general_settings")
    models = raw.get("model_list")
    if not isinstance(models, list) or not models:
        raise bad("model_list", "must be a non-empty list of models")
    aliases: list[str] = []
    for index, entry in enumerate(models):
        where = f"model_list[{index}]"
        if not isinstance(entry, dict):
            raise bad(where, "must be a mapping with model_name and litellm_params")
        name = entry.get("model_name")
        if not isinstance(name, str) or not name.strip():
            raise bad(f"{where}.model_name", "is missing or empty")
        params = entry.get("litellm_params")
        if not isinstance(params, dict):
            raise bad(f"{where}.litellm_params", f"is missing for {name!r}")
        model = params.get("model")
        if not isinstance(model, str) or "/" not in model:
            raise bad(f"{where}.litellm_params.model", f"of {name!r} must be provider/model, got {model!r}")
        for key in ("api_key", "api_base", "timeout", "stream_timeout"):
            value = params.get(key)
            if key in params and (value is None or value == ""):
                raise bad(f"{where}.litellm_params.{key}", f"of {name!r} is empty")
        if name not in aliases:
            aliases.append(name)

    router = raw.get("router_settings") or {}
    if not isinstance(router, dict):
        raise bad("router_settings", "must be a mapping")
    fallbacks = router.get("fallbacks") or []
    if not isinstance(fallbacks, list):
        raise bad("router_settings.fallbacks", "must be a list of {model: [fallbacks]} mappings")
    for index, rule in enumerate(fallbacks):
        where = f"router_settings.fallbacks[{index}]"
        if not isinstance(rule, dict) or len(rule) != 1:
            raise bad(where, "must be one mapping {model: [fallback, ...]}")
        (source, targets), = rule.items()
        if source not in aliases:
            raise bad(where, f"names {source!r}, which is not a model_name in model_list ({', '.join(aliases)})")
        if not isinstance(targets, list) or not all(isinstance(t, str) for t in targets):
            raise bad(f"{where}.{source}", "must be a list of model names")
        for target in targets:
            if target not in aliases:
                raise bad(f"{where}.{source}", f"falls back to {target!r}, which is not a model_name in model_list")
    for key in ("num_retries", "allowed_fails", "cooldown_time", "timeout", "stream_timeout"):
        value = router.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
            raise bad(f"router_settings.{key}", f"must be a number >= 0, got {value!r}")

    general = raw.get("general_settings") or {}
    if not isinstance(general, dict):
        raise bad("general_settings", "must be a mapping")
    master = general.get("master_key")
    if master is not None and not (isinstance(master, str) and master.startswith("os.environ/")):
        # A literal key in a config file ends up in git and in backups.
        raise bad("general_settings.master_key", "must be os.environ/VARIABLE, never the key itself")
    return aliases


def render_sandbox_config(source: Path, api_base: str | None = None) -> str:
    """The deploy config with the sandbox's overrides, as YAML text (no secret in it).

    `api_base` (the simulator) replaces `os.environ/OPENROUTER_API_BASE` in the
    file itself, so `rollout` reading the config (the cost guard's price check)
    finds the same OpenRouter the gateway talks to.
    """
    import yaml  # lazy: start-up time

    raw = load_config(source)
    if api_base:
        for entry in raw.get("model_list") or []:
            params = entry.get("litellm_params") if isinstance(entry, dict) else None
            if isinstance(params, dict) and params.get("api_base") == "os.environ/OPENROUTER_API_BASE":
                params["api_base"] = api_base
    for section, values in SANDBOX_OVERRIDES.items():
        current = raw.get(section)
        raw[section] = {**(current if isinstance(current, dict) else {}), **values}
    header = (
        f"# Written by `rollout sandbox up` from {source.name}, with the sandbox's overrides\n"
        f"# ({', '.join(f'{s}.{k}' for s, v in SANDBOX_OVERRIDES.items() for k in v)}).\n"
        "# Keys and addresses come from the environment the sandbox gives the gateway.\n"
    )
    return header + yaml.safe_dump(raw, sort_keys=False, default_flow_style=None, width=120)


def check_master_key(key: str | None, where: str) -> str:
    """The key when it is usable and strong enough to start a gateway with; InputError otherwise.

    LiteLLM only refuses keys it knows to be public; we also refuse short or
    repetitive ones, because the gateway listens on the host's network. A key
    is never trimmed: the one the gateway gets is the one the clients send.
    """
    if key is None or not key.strip():
        raise InputError(f"no gateway master key in {where}; set it to sk- followed by "
                         f"{MIN_MASTER_KEY_RANDOM}+ random characters")
    unusable = master_key_problem(key, where)
    if unusable:
        raise InputError(unusable)
    body = key[len(MASTER_KEY_PREFIX):] if key.startswith(MASTER_KEY_PREFIX) else None
    if body is None:
        problem = "does not start with sk-"
    elif len(body) < MIN_MASTER_KEY_RANDOM:
        problem = f"has {len(body)} characters after sk-, fewer than {MIN_MASTER_KEY_RANDOM}"
    elif len(set(body)) < MIN_MASTER_KEY_DISTINCT:
        problem = f"uses only {len(set(body))} distinct characters"
    else:
        return key
    # Never the key itself in a message; a short fingerprint lets the operator tell keys apart.
    fingerprint = hashlib.sha256(key.encode()).hexdigest()[:8]
    raise InputError(
        f"gateway master key in {where} is weak: it {problem} (sha256 {fingerprint}...); "
        f"use sk- followed by {MIN_MASTER_KEY_RANDOM}+ random characters"
    )


def generate_master_key() -> str:
    return MASTER_KEY_PREFIX + secrets.token_urlsafe(MIN_MASTER_KEY_RANDOM)
