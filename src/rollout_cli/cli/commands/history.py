from __future__ import annotations

import typer

from rollout_cli.cli.context import load
from rollout_cli.cli.options import json_option
from rollout_cli.cli.render import render

HELP = "Show the audit trail (.rollout/history.jsonl), oldest first."


def register(app: typer.Typer) -> None:
    @app.command("history", help=HELP)
    def history(
        ctx: typer.Context,
        limit: int = typer.Option(20, "--limit", "-n", min=1, help="Show the last N records."),
        json_output: bool = json_option("Print JSON (the full records)."),
    ) -> None:
        from rollout_cli.rollout.status import history as core_history  # lazy: start-up time

        render(core_history(load(ctx), limit), json_output)
