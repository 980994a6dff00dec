from __future__ import annotations

import sys

import typer

from ..render import render

HELP = (
    "Advance to the next stage (0 -> 10 -> 50 -> 100%) if every gate passes: health, smoke, cost, "
    "agreement, soak, error rate, added latency. Exit 0 GO, 3 HOLD, 1 NO-GO."
)


def register(app: typer.Typer) -> None:
    @app.command("advance", help=HELP)
    def advance(
        ctx: typer.Context,
        yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before writing the next stage."),
        reason: str = typer.Option(None, "--reason", help="Why; recorded in the audit trail."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Evaluate the gates; write nothing."),
        skip_soak: bool = typer.Option(False, "--skip-soak", help="Do not wait for the soak time (needs --reason)."),
        json_output: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        from ...advance import advance as core_advance
        from ...errors import InputError
        from ..app import load

        ws = load(ctx)
        confirm = None
        if not yes and not dry_run:
            if not sys.stdin.isatty():
                raise InputError("advance needs confirmation; pass --yes to run it non-interactively")
            confirm = _ask
        render(core_advance(ws, reason=reason, dry_run=dry_run, skip_soak=skip_soak, confirm=confirm), json_output)


def _ask(decision) -> bool:  # type: ignore[no-untyped-def]
    from ..render import console
    from ..views.rollout import decision_renderable

    out = console(stderr=True)
    out.print(decision_renderable(decision.to_json()))
    return typer.confirm(f"GO: advance {decision.current}% -> {decision.next}%?", err=True)
