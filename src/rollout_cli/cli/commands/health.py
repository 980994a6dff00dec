from __future__ import annotations

import typer

from rollout_cli.cli.context import load
from rollout_cli.cli.options import count_option, interval_option, json_option, models_option, timeout_option
from rollout_cli.cli.render import render, render_rounds

HELP = (
    "Check the gateway (liveliness, readiness, key, container; a swarm service replica by replica) and every "
    "model through it, concurrently. Exit 0 healthy, 1 down/broken, 2 bad input or key refused, 3 only rate-limited, "
    "4 gateway unreachable."
)


def register(app: typer.Typer) -> None:
    @app.command("health", help=HELP)
    def health(
        ctx: typer.Context,
        models: list[str] = models_option("Check only this alias (repeatable)."),
        timeout: float = timeout_option(10.0, "Seconds each model may take."),
        watch: bool = typer.Option(False, "--watch", help="Refresh a live table until Ctrl-C."),
        interval: float = interval_option(5.0, "Seconds between --watch rounds."),
        count: int = count_option("Stop --watch after N rounds."),
        sequential: bool = typer.Option(False, "--sequential", hidden=True, help="One model at a time."),
        json_output: bool = json_option("Print JSON (one line per round with --watch)."),
    ) -> None:
        from rollout_cli.checks.health import check_health, watch_health  # lazy: start-up time

        ws = load(ctx)
        one_at_a_time = sequential or None  # None: $ROLLOUT_CHECKS_SEQUENTIAL decides
        required = None
        if ws.gateway.runtime == "swarm":  # the stage plan says how many replicas must be ready
            from rollout_cli.rollout.plan import load_plan  # lazy: start-up time

            required = load_plan(ws.playbooks).gates.min_ready_replicas
        if watch:
            rounds = watch_health(ws, models, interval=interval, count=count, timeout=timeout,
                                  sequential=one_at_a_time, replicas_required=required)
            render_rounds(rounds, json_output)
        render(check_health(ws, models, timeout=timeout, sequential=one_at_a_time,
                            replicas_required=required).to_result(), json_output)
