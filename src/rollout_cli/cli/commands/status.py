from __future__ import annotations

import typer

from ..render import render

HELP = "Show the stage now (env and flags), drift between them, who moved it last, the container."


def register(app: typer.Typer) -> None:
    @app.command("status", help=HELP)
    def status(
        ctx: typer.Context,
        json_output: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        from ...status import status as core_status
        from ..app import load

        render(core_status(load(ctx)), json_output)
