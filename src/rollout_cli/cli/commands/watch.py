from __future__ import annotations

import typer

from rollout_cli.cli.context import load
from rollout_cli.cli.options import count_option, interval_option, json_option
from rollout_cli.cli.render import exit_with, render

HELP = (
    "Live dashboard during a soak: stage, soak progress, per-model state, error rate, latency, "
    "fallbacks. Records each sample in .rollout/ so `advance` can judge the window."
)


def register(app: typer.Typer) -> None:
    @app.command("watch", help=HELP)
    def watch(
        ctx: typer.Context,
        interval: float = interval_option(30.0, "Seconds between samples.", min=0.5),
        count: int = count_option("Stop after N samples (default: until Ctrl-C)."),
        probe: bool = typer.Option(False, "--probe", help="Also send one completion per model each sample."),
        json_output: bool = json_option("One JSON line per sample."),
    ) -> None:
        from rollout_cli.cli.views.rollout import sample_display  # lazy: start-up time (rich)
        from rollout_cli.rollout.watch import watch as core_watch  # lazy: start-up time

        ws = load(ctx)
        with sample_display(json_output) as show:
            result = core_watch(ws, interval=interval, count=count, probe=probe, on_sample=show)
        if json_output:
            exit_with(result)  # every sample is printed already
        render(result)
