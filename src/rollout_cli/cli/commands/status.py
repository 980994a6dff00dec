from __future__ import annotations

import typer

from rollout_cli.cli.context import load
from rollout_cli.cli.options import json_option
from rollout_cli.cli.render import render

HELP = "Show the stage now (env and flags), drift between them, who moved it last, the gateway's container (or swarm service, replica by replica)."


def register(app: typer.Typer) -> None:
    @app.command("status", help=HELP)
    def status(ctx: typer.Context, json_output: bool = json_option()) -> None:
        from rollout_cli.rollout.status import status as core_status  # lazy: start-up time

        render(core_status(load(ctx)), json_output)
