"""`rollout autopilot [--once] [--json]` and `rollout autopilot status|pause|resume`."""

from __future__ import annotations

import typer

from rollout_cli.cli.context import load
from rollout_cli.cli.options import json_option, reason_required
from rollout_cli.cli.render import plain, print_error_json, print_json, render

HELP = ("Run the staged rollout unattended: every interval judge the breach checks (roll back after "
        "failure_threshold breached ticks), and after each soak the advance gates (advance on GO). "
        "Runs until SIGTERM/SIGINT (finishes its tick, exits 0); --once runs one tick. "
        "Exit 4 when another autopilot holds the workspace.")


def register(app: typer.Typer) -> None:
    autopilot = typer.Typer(help=HELP, invoke_without_command=True)
    app.add_typer(autopilot, name="autopilot")

    @autopilot.callback()
    def run(
        ctx: typer.Context,
        once: bool = typer.Option(False, "--once", help="Run one tick and exit (for cron or a CI schedule)."),
        json_output: bool = json_option("One JSON line per tick."),
    ) -> None:
        if ctx.invoked_subcommand is not None:
            return
        from rollout_cli.autopilot.service import run as core_run  # lazy: start-up time
        from rollout_cli.cli.views.autopilot import tick_line  # lazy: start-up time

        def show(result) -> None:  # type: ignore[no-untyped-def]
            if json_output:
                print_json(result.to_json(), line=True)
            else:
                typer.echo(plain(tick_line(result.payload.to_json())))

        def started(notes: list[str]) -> None:
            if not json_output:
                for note in notes:
                    typer.echo(plain(note), err=True)

        def failed(exc) -> None:  # type: ignore[no-untyped-def]
            if json_output:  # the stream stays one JSON object per tick: the error envelope
                print_error_json("autopilot", int(exc.exit_code), exc.message, line=True)
            typer.echo(plain(f"rollout: error: this tick failed, the next one runs in its time: {exc.message}"),
                       err=True)

        raise typer.Exit(int(core_run(load(ctx), once=once, on_tick=show, on_start=started, on_error=failed)))

    @autopilot.command("status", help="The autopilot's stage, soak left, last tick, consecutive failures, "
                       "next action, pending approval, who runs it, and failed notification deliveries.")
    def status(ctx: typer.Context, json_output: bool = json_option()) -> None:
        from rollout_cli.autopilot.controls import status as core_status  # lazy: start-up time

        render(core_status(load(ctx)), json_output)

    @autopilot.command("pause", help="Pause the autopilot (recorded): no check, promotion or rollback "
                       "until `rollout autopilot resume`.")
    def pause(ctx: typer.Context, reason: str = reason_required(), json_output: bool = json_option()) -> None:
        from rollout_cli.autopilot.controls import pause as core_pause  # lazy: start-up time

        render(core_pause(load(ctx), reason), json_output)

    @autopilot.command("resume", help="Resume the autopilot after a pause or a rollback (recorded).")
    def resume(ctx: typer.Context, reason: str = reason_required(), json_output: bool = json_option()) -> None:
        from rollout_cli.autopilot.controls import resume as core_resume  # lazy: start-up time

        render(core_resume(load(ctx), reason), json_output)


__all__ = ["register"]
