from __future__ import annotations

import sys

import typer

from ..render import render

HELP = (
    "Roll back: level 1 flag to 0% (30 s), 2 router code (5 min), 3 stop the gateway "
    "container (10 min), 4 git revert (15 min). Level N runs levels 1..N in order."
)


def register(app: typer.Typer) -> None:
    @app.command("rollback", help=HELP)
    def rollback(
        ctx: typer.Context,
        level: int = typer.Option(..., "--level", "-l", help="Rollback level, 1..4."),
        reason: str = typer.Option(None, "--reason", help="Why; recorded in the audit trail."),
        yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
        dry_run: bool = typer.Option(False, "--dry-run", help="Show what would change; change nothing."),
        drill: bool = typer.Option(False, "--drill", help="Check every precondition; change nothing."),
        json_output: bool = typer.Option(False, "--json", help="Print JSON."),
    ) -> None:
        from ...errors import InputError
        from ...rollback import load_levels, rollback as core_rollback
        from ..app import load

        if dry_run and drill:
            raise InputError("--dry-run and --drill exclude each other; pick one")
        ws = load(ctx)
        mode = "dry-run" if dry_run else "drill" if drill else "run"
        if mode == "run" and not yes:
            load_levels(ws, level)  # bad level or playbook: say so before asking
            if not sys.stdin.isatty():
                raise InputError("rollback needs confirmation; pass --yes to run it non-interactively")
            typer.confirm(f"Roll back to level {level} in {ws.root}?", abort=True, err=True)
        render(core_rollback(ws, level, reason=reason, mode=mode), json_output)
