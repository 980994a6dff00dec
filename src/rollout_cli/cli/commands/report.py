from __future__ import annotations

from pathlib import Path

import typer

from ..render import render

HELP = (
    "The go/no-go report for now: verdict matrix, every gate, stage history, rollback readiness. "
    "Changes nothing."
)


def register(app: typer.Typer) -> None:
    @app.command("report", help=HELP)
    def report(
        ctx: typer.Context,
        markdown: Path = typer.Option(None, "--markdown", help="Also write the report as Markdown to FILE."),
        json_output: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        from ...report import report as core_report
        from ..app import load

        render(core_report(load(ctx), markdown=markdown), json_output)
