from __future__ import annotations

from pathlib import Path

import typer

from rollout_cli.cli.context import workspace_root
from rollout_cli.cli.options import json_option
from rollout_cli.cli.render import render

HELP = "Write a commented rollout.yaml into DIR (default: the workspace folder)."


def register(app: typer.Typer) -> None:
    @app.command("init", help=HELP)
    def init(
        ctx: typer.Context,
        directory: Path = typer.Argument(None, help="Folder for the new workspace."),
        force: bool = typer.Option(False, "--force", help="Overwrite an existing rollout.yaml."),
        json_output: bool = json_option(),
    ) -> None:
        from rollout_cli.core.workspace import init_workspace  # lazy: start-up time

        render(init_workspace(directory or workspace_root(ctx), force=force), json_output)
