from __future__ import annotations

import typer

from ..render import render

HELP = "Show the audit trail (.rollout/history.jsonl), oldest first."


def register(app: typer.Typer) -> None:
    @app.command("history", help=HELP)
    def history(
        ctx: typer.Context,
        limit: int = typer.Option(20, "--limit", "-n", min=1, help="Show the last N records."),
        json_output: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        from ...status import history as core_history
        from ..app import load

        render(core_history(load(ctx), limit), json_output)
