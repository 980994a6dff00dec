from __future__ import annotations

from pathlib import Path

import typer

from ..render import render

HELP = (
    "The CI smoke step: the suite against every model, a fallback drill, a cost guard. "
    "Exit 0 passed, 1 failed, 2 bad input or key refused, 3 only inconclusive, 4 gateway unreachable."
)


def register(app: typer.Typer) -> None:
    @app.command("smoke", help=HELP)
    def smoke(
        ctx: typer.Context,
        suite: Path = typer.Option(None, "--suite", help="Suite YAML (default: playbooks/smoke.yaml)."),
        models: list[str] = typer.Option(None, "--model", "-m", help="Run against this alias only (repeatable)."),
        junit_xml: Path = typer.Option(None, "--junit-xml", help="Write JUnit XML here (one case per model x check)."),
        markdown: Path = typer.Option(None, "--markdown", help="Write a Markdown summary here (PR comment)."),
        plan: bool = typer.Option(False, "--plan", help="Print the requests a run would send; send nothing."),
        max_requests: int = typer.Option(
            None, "--max-requests", min=1, help="Refuse to run when the plan needs more requests than N."
        ),
        json_output: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        from ...checks.smoke import smoke as core_smoke
        from ..app import load

        render(
            core_smoke(
                load(ctx), suite, models, max_requests=max_requests, plan_only=plan,
                junit_xml=junit_xml, markdown=markdown,
            ),
            json_output,
        )
