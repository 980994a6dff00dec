from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer

from rollout_cli.cli.context import load
from rollout_cli.cli.options import dry_run_option, json_option, reason_option, yes_option
from rollout_cli.cli.render import console, render
from rollout_cli.errors import InputError
from rollout_cli.io.lock import actor

if TYPE_CHECKING:
    from rollout_cli.rollout.judge import Decision

HELP = (
    "Advance to the next stage (0 -> 10 -> 50 -> 100%) if every gate passes: health, smoke, cost, "
    "agreement, soak, error rate, added latency. Exit 0 GO, 3 HOLD, 1 NO-GO."
)


def register(app: typer.Typer) -> None:
    @app.command("advance", help=HELP)
    def advance(
        ctx: typer.Context,
        yes: bool = yes_option("Do not ask before writing the next stage."),
        reason: str = reason_option(),
        dry_run: bool = dry_run_option("Evaluate the gates; write nothing."),
        skip_soak: bool = typer.Option(False, "--skip-soak", help="Do not wait for the soak time (needs --reason)."),
        plan: bool = typer.Option(False, "--plan", help="Forecast the requests it would send against the free "
                                  "quota (`rollout quota`); send nothing."),
        json_output: bool = json_option(),
    ) -> None:
        from rollout_cli.rollout.advance import advance as core_advance  # lazy: start-up time
        from rollout_cli.rollout.advance import plan_advance  # lazy: start-up time

        ws = load(ctx)
        if plan:
            render(plan_advance(ws), json_output)
        confirm = None
        if not yes and not dry_run:
            if not sys.stdin.isatty():
                raise InputError("advance needs confirmation; pass --yes to run it non-interactively")
            confirm = _ask
        render(core_advance(ws, reason=reason, dry_run=dry_run, skip_soak=skip_soak, confirm=confirm,
                            announce_as=actor()), json_output)


def _ask(decision: Decision) -> bool:
    from rollout_cli.cli.views.rollout import decision_renderable  # lazy: start-up time (rich)

    console(stderr=True).print(decision_renderable(decision.to_json()))
    return typer.confirm(f"GO: advance {decision.current}% -> {decision.next}%?", err=True)
