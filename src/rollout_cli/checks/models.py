"""`rollout models`: the catalog watchdog, and `--replace OLD NEW` to swap a model in the gateway config.

The watchdog reads OpenRouter's public `/api/v1/models` (no key, no quota) and
says, for every configured model: listed, free, context length, supported
parameters against `app.requires`, and free replacements for a failing one.
The swap edits the gateway config in place (comments and layout kept, only
the lines naming the model change), atomic, under the workspace lock, audited;
`rollout gateway restart` then applies it.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Any

from rollout_cli.checks.catalog import CatalogReport, check_catalog, is_free
from rollout_cli.checks.catalog import fetch_entries as fetch_catalog
from rollout_cli.core.audit import AuditLog
from rollout_cli.core.result import Result
from rollout_cli.core.workspace import Workspace
from rollout_cli.errors import ExitCode, InputError, UnavailableError
from rollout_cli.gateway.replace import alias_for, check_edit, replace_model, stale_references
from rollout_cli.gateway.topology import OPENROUTER_PREFIX, GatewayModel, Topology, load_topology
from rollout_cli.io.atomic import atomic_write_text, sha256_of
from rollout_cli.io.lock import WorkspaceLock
from rollout_cli.io.textfile import CONFIG_LIMIT, read_text
from rollout_cli.io.yamlfile import parse_yaml_text


@dataclass
class ModelsPayload:
    """`rollout models`: the catalog report for every configured model."""

    config: str
    report: CatalogReport

    def to_json(self) -> dict[str, Any]:
        return {"mode": "check", "config": self.config, **self.report.to_json()}


@dataclass
class ReplacePayload:
    """`rollout models --replace OLD NEW`: the edit, as a diff, and whether it was written."""

    config: str
    old: str
    new_alias: str
    new_model: str
    dry_run: bool
    written: bool
    lines: list[int]
    diff: list[str]
    before_sha256: str | None = None
    after_sha256: str | None = None
    models: list[str] = field(default_factory=list)  # the OpenRouter ids replaced, one per deployment
    kept: list[str] = field(default_factory=list)  # the alias's deployments on other providers, left as they were
    warnings: list[str] = field(default_factory=list)
    next: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"mode": "replace", "config": self.config, "old": self.old, "new_alias": self.new_alias,
                "new_model": self.new_model, "dry_run": self.dry_run, "written": self.written, "lines": self.lines,
                "diff": self.diff, "before_sha256": self.before_sha256, "after_sha256": self.after_sha256,
                "replaced": self.models, "kept": self.kept, "warnings": self.warnings, "next": self.next}


def _topology(ws: Workspace) -> Topology:
    topology = load_topology(ws.gateway.config)
    if topology is None or topology.source is None:
        raise InputError("no gateway config: set gateway.config in rollout.yaml to the LiteLLM config file")
    return topology


def models(ws: Workspace) -> Result[ModelsPayload]:
    """Exit 1 when a configured model is retired, not free or lacks a required capability; 4 when the
    catalog cannot be read."""
    topology = _topology(ws)
    report = check_catalog(topology, ws.app.requires)
    payload = ModelsPayload(str(topology.source), report)
    messages = []
    for m in report.failing:
        offer = ", ".join(r.id for r in m.replacements) or "no free replacement meets app.requires"
        messages.append(f"{m.alias}: {m.status}: {m.reason}; replacements: {offer}")
        if m.replacements:
            messages.append(f"  rollout models --replace {m.alias} {m.replacements[0].id}")
    unreached = [c for c in report.catalogs if not c["reachable"]]
    if unreached:
        messages += [f"catalog {c['url']} cannot be read: {c['error']}" for c in unreached]
    if report.failing:
        return Result("models", payload, messages, ExitCode.FAILED)
    if unreached:
        return Result("models", payload, messages, ExitCode.UNAVAILABLE)
    capable = f" of {', '.join(ws.app.requires)}" if ws.app.requires else ""
    outside = report.unknown  # not OpenRouter's (an unreadable catalog exits 4 above): no price, no capabilities
    if not outside:
        return Result("models", payload, [f"all {len(report.models)} models listed, free and capable{capable}"])
    checked = len(report.models) - len(outside)
    return Result("models", payload, [
        f"{checked} of {len(report.models)} deployments listed, free and capable{capable}; not checked: "
        + "; ".join(f"{m.alias} ({m.model}: not an OpenRouter model, so its price and capabilities are unknown)"
                    for m in outside)
    ])


def replace(
    ws: Workspace, old: str, new: str, *, alias: str | None = None, dry_run: bool = False, reason: str | None = None,
    force: bool = False,
) -> Result[ReplacePayload]:
    """Swap `old` (an alias) for the OpenRouter model `new` in the gateway config; checked before writing."""
    topology = _topology(ws)
    path = topology.source
    assert path is not None
    new_model = new.removeprefix(OPENROUTER_PREFIX)
    new_alias = alias or alias_for(new_model)
    if old not in topology.aliases:
        raise InputError(f"{old!r} is not a model_name in {path}; configured: {', '.join(topology.aliases)}")
    if new_alias != old and new_alias in topology.aliases:
        raise InputError(f"alias {new_alias!r} is already in {path}; choose another with --alias NAME")
    ours = [d for d in topology.deployments(old) if d.provider == "openrouter"]
    others = [d.model for d in topology.deployments(old) if d.provider != "openrouter"]
    if not ours:
        raise InputError(f"{old} is served by {', '.join(others)}, not by OpenRouter: --replace swaps OpenRouter "
                         f"models only; edit {path} by hand")
    if others and new_alias != old:
        raise InputError(f"{old} also has {len(others)} deployment(s) not on OpenRouter ({', '.join(others)}); "
                         f"renaming the alias would carry them along: pass --alias {old} to replace only its "
                         f"OpenRouter deployment(s), or edit {path} by hand")
    if not force:
        _require_fit(ours[0], new_model, ws.app.requires)
    before_text = read_text(path, limit=CONFIG_LIMIT, label="gateway config ")
    edit = replace_model(before_text, old, new_model, new_alias, where=path)
    after = parse_yaml_text(edit.text, path)
    check_edit(parse_yaml_text(before_text, path), after, edit, path)
    diff = list(difflib.unified_diff(before_text.splitlines(), edit.text.splitlines(),
                                     str(path), str(path), n=0, lineterm=""))
    stale = stale_references(after, old) if new_alias != old else []
    warnings = [f"{where} still names {old}, which is gone: rename it to {new_alias} by hand" for where in stale]
    kept = [f"kept {model}: {old}'s deployment on another provider, not OpenRouter's" for model in others]
    payload = ReplacePayload(str(path), old, new_alias, new_model, dry_run, False, edit.lines, diff,
                             sha256_of(path), models=[d.upstream_id for d in ours], kept=others, warnings=warnings)
    if dry_run:
        return Result("models", payload, [f"dry run: {len(edit.lines)} line(s) of {path} would change; nothing written",
                                          *kept, *warnings])
    with WorkspaceLock(ws.state_dir, command=f"rollout models --replace {old} {new}"):
        if read_text(path, limit=CONFIG_LIMIT, label="gateway config ") != before_text:
            raise InputError(f"{path} changed while the edit was prepared; run the command again")
        atomic_write_text(path, edit.text)
        if read_text(path, limit=CONFIG_LIMIT, label="gateway config ") != edit.text:  # read back, as every write is
            raise InputError(f"{path} does not read back as written; check the file system")
        payload.written = True
        payload.after_sha256 = sha256_of(path)
        AuditLog(ws.state_dir).append(
            "models replace", reason=reason, result="ok",
            changes=[{"file": str(path), "key": old, "before": f"{old} ({d.upstream_id})",
                      "after": f"{new_alias} ({new_model})", "lines": edit.lines,
                      "before_sha256": payload.before_sha256, "after_sha256": payload.after_sha256} for d in ours],
        )
    payload.next = ["rollout gateway restart", "rollout models", "rollout health"]
    replaced = ", ".join(d.upstream_id for d in ours)
    return Result("models", payload, [
        f"replaced {old} ({replaced}) with {new_alias} ({new_model}) in {path}: "
        f"lines {', '.join(map(str, edit.lines))}",
        *kept, *warnings,
        "apply it: rollout gateway restart; then check: rollout models && rollout health",
    ])


def _require_fit(deployment: GatewayModel, new_model: str, requires: tuple[str, ...]) -> None:
    """NEW must be listed, free (:free id, zero price) and meet app.requires, in the catalog OLD is served from."""
    from rollout_cli.checks.catalog import IMPLICIT, catalog_url  # one module, named here for the reader

    url = catalog_url(deployment)
    entries, error = fetch_catalog(url)
    if entries is None:
        raise UnavailableError(f"catalog {url} cannot be read ({error}): NEW cannot be checked; "
                               "retry, or pass --force to edit unchecked")
    entry = next((e for e in entries if e.get("id") == new_model), None)
    if entry is None:
        raise InputError(f"{new_model} is not in OpenRouter's catalog ({url}); `rollout models` proposes replacements")
    if not (new_model.endswith(":free") and is_free(entry)):
        raise InputError(f"{new_model} is not free (a :free id at zero price); choose a :free model")
    missing = [r for r in requires if r not in IMPLICIT and r not in (entry.get("supported_parameters") or [])]
    if missing:
        raise InputError(f"{new_model} lacks {', '.join(missing)}, which app.requires lists; choose another model")
