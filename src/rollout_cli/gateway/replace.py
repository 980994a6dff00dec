"""Swap one model of a LiteLLM config for another, editing only the lines that name it.

The operator's config carries comments and layout that a YAML dump would lose,
so the edit is textual: the entry's `model_name` line, its `model:` line, and
the fallback lines that name the alias. Everything else stays byte for byte.
The result is parsed and validated, and its topology compared with the one
expected (same order, alias renamed everywhere), before anyone writes it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from rollout_cli.errors import InputError
from rollout_cli.gateway.config import validate_config
from rollout_cli.gateway.topology import OPENROUTER_PREFIX

_MODEL_NAME = re.compile(r"^(?P<lead>\s*-\s*model_name:\s*)(?P<q>[\"']?)(?P<name>[^\"'#\s]+)(?P=q)(?P<rest>.*)$")
# `model:` as a block key or inside a flow mapping (`{model: 'openrouter/...', ...}`), never `model_name:`
_MODEL = re.compile(r"(?P<lead>(?:^|[\s{,])model:\s*)(?P<q>[\"']?)(?P<value>[^\"',}#\s]+)(?P=q)")
_TOP_KEY = re.compile(r"^[A-Za-z_][\w-]*:")


@dataclass(frozen=True)
class Edit:
    """The edited text and which lines changed (1-based), for the diff and the audit trail."""

    text: str
    lines: list[int]
    old_alias: str
    new_alias: str
    new_model: str


def alias_for(model_id: str) -> str:
    """The alias a new model gets by default: its OpenRouter name without vendor and `:free`."""
    return model_id.rsplit("/", 1)[-1].removesuffix(":free")


def replace_model(text: str, old: str, new_model: str, new_alias: str, *, where: str | Path) -> Edit:
    """`text` with alias `old` replaced by `new_alias` serving `openrouter/new_model`."""
    token = re.compile(rf"(?<![\w.:/-]){re.escape(old)}(?![\w./-]|:\w)")  # `kimi-k2:` yes, `kimi-k2:free` no
    lines = text.splitlines(keepends=True)
    changed: list[int] = []
    in_entry = in_fallbacks = False
    fallback_indent = -1
    section = ""
    for i, line in enumerate(lines):
        body = line.rstrip("\r\n")
        ending = line[len(body):]
        if _TOP_KEY.match(body):
            section = body.split(":", 1)[0]
            in_entry = in_fallbacks = False
        entry = _MODEL_NAME.match(body)
        if section == "model_list" and entry:
            in_entry = entry["name"] == old
            if in_entry:
                rest = entry["rest"]
                pad = len(rest) - len(rest.lstrip(" "))
                if pad and rest.lstrip(" ").startswith("#"):  # keep a trailing comment in its column
                    rest = " " * max(1, pad + len(old) - len(new_alias)) + rest.lstrip(" ")
                lines[i] = f"{entry['lead']}{entry['q']}{new_alias}{entry['q']}{rest}{ending}"
                changed.append(i + 1)
            continue
        model = _MODEL.search(body.split(" #", 1)[0]) if in_entry else None
        if model:
            lines[i] = f"{body[:model.start('value')]}{OPENROUTER_PREFIX}{new_model}{body[model.end('value'):]}{ending}"
            changed.append(i + 1)
            in_entry = False
            continue
        if section == "router_settings":
            indent = len(body) - len(body.lstrip())
            if body.strip().startswith("fallbacks:"):
                in_fallbacks, fallback_indent = True, indent
                continue
            if in_fallbacks and body.strip() and not body.lstrip().startswith("#") and indent <= fallback_indent \
                    and not body.lstrip().startswith("-"):
                in_fallbacks = False
            if in_fallbacks:
                code, hash_, comment = body.partition(" #")
                edited = token.sub(new_alias, code)
                if edited != code:
                    lines[i] = edited + hash_ + comment + ending
                    changed.append(i + 1)
    if not changed:
        raise InputError(f"gateway config {where}: no model_name {old!r} in model_list; "
                         "`rollout models` lists the configured aliases")
    return Edit("".join(lines), changed, old, new_alias, new_model)


def check_edit(before: dict, after: dict, edit: Edit, where: str | Path) -> None:
    """The edited config must be the old one with the alias renamed and its model swapped: nothing else."""
    validate_config(after, where)

    def rename(name: str) -> str:
        return edit.new_alias if name == edit.old_alias else name

    want_models = [
        (rename(e["model_name"]),
         f"{OPENROUTER_PREFIX}{edit.new_model}" if e["model_name"] == edit.old_alias else e["litellm_params"]["model"])
        for e in before["model_list"]
    ]
    got_models = [(e["model_name"], e["litellm_params"]["model"]) for e in after["model_list"]]
    want_fallbacks = [{rename(k): [rename(t) for t in v] for k, v in rule.items()}
                      for rule in (before.get("router_settings") or {}).get("fallbacks") or []]
    got_fallbacks = (after.get("router_settings") or {}).get("fallbacks") or []
    if got_models != want_models or got_fallbacks != want_fallbacks:
        raise InputError(f"gateway config {where}: the edit could not be made safely (its layout is unusual); "
                         f"change {edit.old_alias} by hand, then run `rollout models`")
