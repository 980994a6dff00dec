from __future__ import annotations

import typer

from rollout_cli.cli.context import load
from rollout_cli.cli.options import json_option
from rollout_cli.cli.render import render

HELP = "Finish an in-place write of the env or flags file that a killed rollout left, under the workspace lock."


def register(app: typer.Typer) -> None:
    @app.command("recover", help=HELP)
    def recover(
        ctx: typer.Context,
        json_output: bool = json_option(),
    ) -> None:
        from rollout_cli.core.recovery import recover as core_recover  # lazy: start-up time

        render(core_recover(load(ctx)), json_output)
