"""The global options (`-w`, `--debug`) as the commands see them, and the workspace they name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from rollout_cli.core.workspace import Workspace


@dataclass
class Globals:
    workspace: str | None = None
    debug: bool = False


def workspace_option(ctx: typer.Context) -> str | None:
    """The `-w DIR` given before the command, if any."""
    return ctx.obj.workspace if isinstance(ctx.obj, Globals) else None


def workspace_root(ctx: typer.Context) -> Path:
    from rollout_cli.core.workspace import resolve_root  # lazy: start-up time (yaml)

    return resolve_root(workspace_option(ctx))


def load(ctx: typer.Context) -> Workspace:
    """The workspace of -w / $ROLLOUT_WORKSPACE / the current folder, validated."""
    from rollout_cli.core.text import remember_secrets
    from rollout_cli.core.workspace import load_workspace, secret_values  # lazy: start-up time (yaml)

    ws = load_workspace(workspace_root(ctx))
    remember_secrets(lambda: secret_values(ws))  # the audit trail blanks them wherever a reason quotes one
    return ws
