from __future__ import annotations

from pathlib import Path

import typer

from ..render import render

HELP = "Write a commented rollout.yaml into DIR (default: the workspace folder)."


def register(app: typer.Typer) -> None:
    @app.command("init", help=HELP)
    def init(
        ctx: typer.Context,
        directory: Path = typer.Argument(None, help="Folder for the new workspace."),
        force: bool = typer.Option(False, "--force", help="Overwrite an existing rollout.yaml."),
        json_output: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        from ...workspace import init_workspace
        from ..app import workspace_root

        render(init_workspace(directory or workspace_root(ctx), force=force), json_output)
