"""`rollout approve --reason TEXT`: the go-ahead the autopilot waits for before an `approve_before` stage."""

from __future__ import annotations

import typer

from rollout_cli.cli.context import load
from rollout_cli.cli.options import json_option, reason_required
from rollout_cli.cli.render import render


def register(app: typer.Typer) -> None:
    @app.command("approve", help="Approve advancing from the current stage to the next (recorded: who, when, "
                 "why); the autopilot waits for it before the stages in autopilot.approve_before.")
    def approve(ctx: typer.Context, reason: str = reason_required(), json_output: bool = json_option()) -> None:
        from rollout_cli.autopilot.controls import approve as core_approve  # lazy: start-up time

        render(core_approve(load(ctx), reason), json_output)


