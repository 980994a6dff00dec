from __future__ import annotations

from pathlib import Path

import typer

from rollout_cli.cli.context import load
from rollout_cli.cli.options import json_option, markdown_option, models_option
from rollout_cli.cli.render import render

HELP = (
    "The CI smoke step: the suite against every model, a fallback drill, a cost guard. "
    "Exit 0 passed, 1 failed, 2 bad input or key refused, 3 only inconclusive, 4 gateway unreachable."
)


def register(app: typer.Typer) -> None:
    @app.command("smoke", help=HELP)
    def smoke(
        ctx: typer.Context,
        suite: Path = typer.Option(None, "--suite", help="Suite YAML (default: playbooks/smoke.yaml)."),
        models: list[str] = models_option("Run against this alias only (repeatable)."),
        junit_xml: Path = typer.Option(None, "--junit-xml", help="Write JUnit XML here (one case per model x check)."),
        markdown: Path = markdown_option("Write a Markdown summary here (PR comment)."),
        plan: bool = typer.Option(False, "--plan", help="Print the requests a run would send; send nothing."),
        max_requests: int = typer.Option(
            None, "--max-requests", min=1, help="Refuse to run when the plan needs more requests than N."
        ),
        json_output: bool = json_option(),
    ) -> None:
        from rollout_cli.checks.smoke import smoke as core_smoke  # lazy: start-up time

        result = core_smoke(
            load(ctx), suite, models, max_requests=max_requests, plan_only=plan, junit_xml=junit_xml, markdown=markdown
        )
        render(result, json_output)
