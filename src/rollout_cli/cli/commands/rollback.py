from __future__ import annotations

import sys

import typer

from rollout_cli.cli.context import load
from rollout_cli.cli.options import dry_run_option, json_option, reason_option, yes_option
from rollout_cli.cli.render import plain, render
from rollout_cli.errors import InputError
from rollout_cli.io.lock import actor

HELP = (
    "Roll back: level 1 flag to 0% (30 s), 2 router code (5 min), 3 stop the gateway "
    "container (10 min), 4 git revert (15 min). Level N runs levels 1..N in order."
)


def register(app: typer.Typer) -> None:
    @app.command("rollback", help=HELP)
    def rollback(
        ctx: typer.Context,
        level: int = typer.Option(..., "--level", "-l", help="Rollback level, 1..4."),
        reason: str = reason_option(),
        yes: bool = yes_option(),
        dry_run: bool = dry_run_option("Show what would change; change nothing."),
        drill: bool = typer.Option(False, "--drill", help="Check every precondition; change nothing."),
        json_output: bool = json_option(),
    ) -> None:
        from rollout_cli.playbook.levels import Mode, plan_rollback, run_rollback  # lazy: start-up time

        if dry_run and drill:
            raise InputError("--dry-run and --drill exclude each other; pick one")
        ws = load(ctx)
        plan = plan_rollback(ws, level)  # a bad level or playbook is said before asking
        mode: Mode = "dry-run" if dry_run else "drill" if drill else "run"
        if mode == "run" and not yes:
            if not sys.stdin.isatty():
                raise InputError("rollback needs confirmation; pass --yes to run it non-interactively")
            typer.confirm(f"Roll back to level {level} in {plain(ws.root)}?", abort=True, err=True)
        render(run_rollback(ws, plan, reason=reason, mode=mode, announce_as=actor()), json_output)
