from __future__ import annotations

import typer

from ..render import render

HELP = (
    "Live dashboard during a soak: stage, soak progress, per-model state, error rate, latency, "
    "fallbacks. Records each sample in .rollout/ so `advance` can judge the window."
)


def register(app: typer.Typer) -> None:
    @app.command("watch", help=HELP)
    def watch(
        ctx: typer.Context,
        interval: float = typer.Option(30.0, "--interval", min=0.5, help="Seconds between samples."),
        count: int = typer.Option(None, "--count", min=1, help="Stop after N samples (default: until Ctrl-C)."),
        probe: bool = typer.Option(False, "--probe", help="Also send one completion per model each sample."),
        json_output: bool = typer.Option(False, "--json", help="One JSON line per sample."),
    ) -> None:
        import json
        import sys

        from ...watch import watch as core_watch
        from ..app import load
        from ..views.rollout import watch_renderable

        ws = load(ctx)
        if json_output:
            def emit(view):  # type: ignore[no-untyped-def]
                sys.stdout.write(json.dumps(view, default=str) + "\n")
                sys.stdout.flush()

            result = core_watch(ws, interval=interval, count=count, probe=probe, on_sample=emit)
            raise typer.Exit(int(result.exit_code))
        from rich.live import Live

        from ..render import console

        out = console()
        with Live(console=out, auto_refresh=False, transient=False) as live:
            result = core_watch(ws, interval=interval, count=count, probe=probe,
                                on_sample=lambda view: live.update(watch_renderable(view), refresh=True))
        out.print()
        render(result, False)
