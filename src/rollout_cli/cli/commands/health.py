from __future__ import annotations

import typer

from ..render import render

HELP = (
    "Check the gateway (liveliness, readiness, key, container) and every model through it, "
    "concurrently. Exit 0 healthy, 1 down/broken, 2 bad input or key refused, 3 only rate-limited, "
    "4 gateway unreachable."
)


def register(app: typer.Typer) -> None:
    @app.command("health", help=HELP)
    def health(
        ctx: typer.Context,
        models: list[str] = typer.Option(None, "--model", "-m", help="Check only this alias (repeatable)."),
        timeout: float = typer.Option(10.0, "--timeout", min=0.1, help="Seconds each model may take."),
        watch: bool = typer.Option(False, "--watch", help="Refresh a live table until Ctrl-C."),
        interval: float = typer.Option(5.0, "--interval", min=0.1, help="Seconds between --watch rounds."),
        count: int = typer.Option(None, "--count", min=1, help="Stop --watch after N rounds."),
        sequential: bool = typer.Option(False, "--sequential", hidden=True, help="One model at a time."),
        json_output: bool = typer.Option(False, "--json", help="Print JSON (one line per round with --watch)."),
    ) -> None:
        from ...checks.health import check_health
        from ..app import load

        ws = load(ctx)
        options = {"timeout": timeout, "sequential": sequential or None}
        if not watch:
            render(check_health(ws, models, **options).to_result(), json_output)
            return
        _watch(lambda: check_health(ws, models, **options).to_result(), interval, count, json_output)


def _watch(run, interval: float, count: int | None, json_output: bool) -> None:  # type: ignore[no-untyped-def]
    """Re-run until Ctrl-C or `count` rounds; the exit code is the last round's."""
    import json
    import sys
    import time

    from ..render import console
    from ..views.checks import health_renderable

    last = None
    rounds = 0
    try:
        if json_output:
            while True:
                last = run()
                sys.stdout.write(json.dumps(last.to_json(), default=str) + "\n")
                sys.stdout.flush()
                rounds += 1
                if count and rounds >= count:
                    break
                time.sleep(interval)
        else:
            from rich.live import Live

            with Live(console=console(), auto_refresh=False, transient=False) as live:
                while True:
                    last = run()
                    live.update(health_renderable(last), refresh=True)
                    rounds += 1
                    if count and rounds >= count:
                        break
                    time.sleep(interval)
    except KeyboardInterrupt:
        pass  # Ctrl-C is how --watch ends
    raise typer.Exit(int(last.exit_code) if last is not None else 130)
