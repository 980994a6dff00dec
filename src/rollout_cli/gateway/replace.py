"""Swap one model of a LiteLLM config for another, editing only the lines that name it.

The operator's config carries comments and layout that a YAML dump would lose,
so the edit is textual: the entry's `model_name` line, its `model:` line, and
the fallback lines that name the alias. Everything else stays byte for byte,
trailing comments in their columns.
The result is parsed and validated, and its topology compared with the one
expected (same order, alias renamed everywhere), before anyone writes it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollout_cli.errors import InputError
from rollout_cli.gateway.config import validate_config
from rollout_cli.gateway.topology import OPENROUTER_PREFIX

_MODEL_NAME = re.compile(r"^(?P<lead>\s*-\s*model_name:\s*)(?P<q>[\"']?)(?P<name>[^\"'#\s]+)(?P=q)")
# `model:` as a block key or inside a flow mapping (`{model: 'openrouter/...', ...}`), never `model_name:`
_MODEL = re.compile(r"(?P<lead>(?:^|[\s{,])model:\s*)(?P<q>[\"']?)(?P<value>[^\"',}#\s]+)(?P=q)")
_TOP_KEY = re.compile(r"^[A-Za-z_][\w-]*:")
_COMMENT = re.compile(r"(?P<pad>[ \t]+)(?P<comment>#.*)$")  # the first ` #` of a line starts its comment
BOM = "\ufeff"
# Settings that name aliases besides `router_settings.fallbacks` (which the edit renames): after a rename
# they would still route to, or group under, the old alias, which no longer exists.
ALIAS_SETTINGS = (("router_settings", "context_window_fallbacks"), ("router_settings", "content_policy_fallbacks"),
                  ("router_settings", "model_group_alias"), ("router_settings", "default_fallbacks"),
                  ("litellm_settings", "default_fallbacks"), ("litellm_settings", "context_window_fallbacks"),
                  ("litellm_settings", "content_policy_fallbacks"), ("litellm_settings", "fallbacks"))


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


def _code(body: str) -> str:
    """A line without its trailing comment."""
    comment = _COMMENT.search(body)
    return body[: comment.start()] if comment else body


def _with_comment(body: str, edited: str) -> str:
    """`edited` (the new code of `body`) with body's trailing comment where its author put it.

    A comment aligned in a column (two spaces or more before it) keeps that
    column while the new code leaves two spaces; one written a space after
    the code (or after a tab) stays that close. So a replace and the replace
    back give the file byte for byte unless a name outgrew the gap.
    """
    comment = _COMMENT.search(body)
    if comment is None:
        return edited
    pad = comment["pad"]
    if edited == body[: comment.start()] or pad == " " or "\t" in pad:
        return edited + body[comment.start():]
    return edited + " " * max(2, comment.start("comment") - len(edited)) + comment["comment"]


def replace_model(text: str, old: str, new_model: str, new_alias: str, *, where: str | Path) -> Edit:
    """`text` with alias `old` replaced by `new_alias` serving `openrouter/new_model`.

    Only the alias's OpenRouter deployments get the new model; a deployment of
    another provider (its own api_key and api_base) is never rewritten into an
    OpenRouter one, and renaming an alias that has one is refused (InputError).
    A UTF-8 BOM and flow-style (`[...]`, `{...}`) fallbacks are kept as written.
    """
    token = re.compile(rf"(?<![\w.:/-]){re.escape(old)}(?![\w./-]|:\w)")  # `kimi-k2:` yes, `kimi-k2:free` no
    bom = BOM if text.startswith(BOM) else ""
    lines = text[len(bom):].splitlines(keepends=True)
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
            if in_entry and new_alias != old:
                rest = _code(body)[entry.end():]
                lines[i] = _with_comment(body, f"{entry['lead']}{entry['q']}{new_alias}{entry['q']}{rest}") + ending
                changed.append(i + 1)
            continue
        model = _MODEL.search(_code(body)) if in_entry else None
        if model:
            in_entry = False
            if not model["value"].startswith(OPENROUTER_PREFIX):
                if new_alias != old:
                    raise InputError(f"gateway config {where}: {old} also has a {model['value']} deployment, "
                                     f"which is not OpenRouter's; renaming the alias would carry it along: "
                                     f"pass --alias {old} to replace only its OpenRouter deployment(s), "
                                     "or edit the file by hand")
                continue  # another provider's deployment of the alias: not ours to change
            code = _code(body)
            edited = f"{code[:model.start('value')]}{OPENROUTER_PREFIX}{new_model}{code[model.end('value'):]}"
            lines[i] = _with_comment(body, edited) + ending
            changed.append(i + 1)
            continue
        if section == "router_settings" and new_alias != old:
            indent = len(body) - len(body.lstrip())
            stripped = body.strip()
            if stripped.startswith("fallbacks:"):
                in_fallbacks, fallback_indent = True, indent
            elif in_fallbacks and stripped and not stripped.startswith(("#", "-")) and indent <= fallback_indent:
                in_fallbacks = False
            if in_fallbacks:
                # `fallbacks: [{a: [b, c]}]` (flow style, one line) names aliases on the key's own line
                lead = len(body) - len(body.lstrip()) + len("fallbacks:") if stripped.startswith("fallbacks:") else 0
                code = _code(body)
                edited = code[:lead] + token.sub(new_alias, code[lead:])
                if edited != code:
                    lines[i] = _with_comment(body, edited) + ending
                    changed.append(i + 1)
    if not changed:
        raise InputError(f"gateway config {where}: no model_name {old!r} in model_list; "
                         "`rollout models` lists the configured aliases")
    return Edit(bom + "".join(lines), changed, old, new_alias, new_model)


def stale_references(raw: dict[str, Any], alias: str) -> list[str]:
    """The settings (besides `router_settings.fallbacks`) that still name `alias`, as key paths."""
    found: list[str] = []

    def walk(value: Any, where: str) -> None:
        if isinstance(value, dict):
            for key, item in value.items():
                if key == alias:
                    found.append(f"{where}.{key}")
                walk(item, f"{where}.{key}")
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{where}[{index}]")
        elif value == alias:
            found.append(where)

    for section, key in ALIAS_SETTINGS:
        settings = raw.get(section)
        if isinstance(settings, dict) and key in settings:
            walk(settings[key], f"{section}.{key}")
    return found


def check_edit(before: dict, after: dict, edit: Edit, where: str | Path) -> None:
    """The edited config must be the old one with the alias renamed and its model swapped: nothing else."""
    validate_config(after, where)

    def rename(name: str) -> str:
        return edit.new_alias if name == edit.old_alias else name

    def swap(entry: dict[str, Any]) -> str:
        model = str(entry["litellm_params"]["model"])
        ours = entry["model_name"] == edit.old_alias and model.startswith(OPENROUTER_PREFIX)
        return f"{OPENROUTER_PREFIX}{edit.new_model}" if ours else model

    want_models = [(rename(e["model_name"]), swap(e)) for e in before["model_list"]]
    got_models = [(e["model_name"], e["litellm_params"]["model"]) for e in after["model_list"]]
    want_fallbacks = [{rename(k): [rename(t) for t in v] for k, v in rule.items()}
                      for rule in (before.get("router_settings") or {}).get("fallbacks") or []]
    got_fallbacks = (after.get("router_settings") or {}).get("fallbacks") or []
    if got_models != want_models or got_fallbacks != want_fallbacks:
        raise InputError(f"gateway config {where}: the edit could not be made safely (its layout is unusual); "
                         f"change {edit.old_alias} by hand, then run `rollout models`")
