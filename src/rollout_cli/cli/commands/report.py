from __future__ import annotations

from pathlib import Path

import typer

from rollout_cli.cli.context import load
from rollout_cli.cli.options import json_option, markdown_option
from rollout_cli.cli.render import render

HELP = (
    "The go/no-go report for now: verdict matrix, every gate, stage history, rollback readiness. "
    "Changes nothing."
)


def register(app: typer.Typer) -> None:
    @app.command("report", help=HELP)
    def report(
        ctx: typer.Context,
        markdown: Path = markdown_option("Also write the report as Markdown to FILE."),
        replay: Path = typer.Option(
            None, "--replay", metavar="FILE",
            help="Judge a recorded evidence snapshot (a `report --json` output, or its `snapshot`) against "
                 "the stage plan now; sends no check.",
        ),
        html: Path = typer.Option(
            None, "--html", metavar="FILE",
            help="Also write the report as one self-contained HTML page with charts (stage and observed share, "
                 "requests by path, error rate, added latency, fallbacks) to FILE.",
        ),
        json_output: bool = json_option(),
    ) -> None:
        from rollout_cli.rollout.report import report as core_report  # lazy: start-up time

        render(core_report(load(ctx), markdown=markdown, replay=replay, html=html), json_output)
