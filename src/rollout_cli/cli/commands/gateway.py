"""`rollout gateway status|start|stop|restart|logs|wait`."""

from __future__ import annotations

import typer

from ..render import render

HELP = "Control the gateway: its container (gateway.container), or the sandbox's litellm process."
JSON = typer.Option(False, "--json", help="Print JSON.")


def register(app: typer.Typer) -> None:
    gateway = typer.Typer(help=HELP, no_args_is_help=True)
    app.add_typer(gateway, name="gateway")

    @gateway.command("status", help="Runtime state (status, health, uptime, restarts, image, exit code, "
                     "OOM kill) and the proxy's liveliness and readiness. Exit 4 when not healthy.")
    def status(ctx: typer.Context, json_output: bool = JSON) -> None:
        from ... import gateway_control
        from ..app import load

        render(gateway_control.status(load(ctx)), json_output)

    @gateway.command("start", help="Start the gateway, then wait until it is healthy.")
    def start(
        ctx: typer.Context,
        wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait until healthy (default) or return at once."),
        timeout: float = typer.Option(60.0, "--timeout", min=0.1, help="Seconds to wait for health."),
        json_output: bool = JSON,
    ) -> None:
        _start_or_restart(ctx, "start", wait, timeout, json_output)

    @gateway.command("stop", help="Stop the gateway (SIGTERM, then SIGKILL after --timeout).")
    def stop(
        ctx: typer.Context,
        timeout: int = typer.Option(10, "--timeout", min=0, help="Seconds of grace before SIGKILL."),
        json_output: bool = JSON,
    ) -> None:
        from ... import gateway_control
        from ..app import load

        render(gateway_control.stop(load(ctx), timeout=timeout), json_output)

    @gateway.command("restart", help="Restart the gateway, then wait until it is healthy.")
    def restart(
        ctx: typer.Context,
        wait: bool = typer.Option(True, "--wait/--no-wait", help="Wait until healthy (default) or return at once."),
        timeout: float = typer.Option(60.0, "--timeout", min=0.1, help="Seconds to wait for health."),
        json_output: bool = JSON,
    ) -> None:
        _start_or_restart(ctx, "restart", wait, timeout, json_output)

    @gateway.command("logs", help="The gateway's last log lines; --follow keeps printing new ones.")
    def logs(
        ctx: typer.Context,
        follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing lines as they come (Ctrl-C ends)."),
        tail: int = typer.Option(100, "--tail", "-n", min=0, help="How many of the last lines."),
        json_output: bool = JSON,
    ) -> None:
        from ... import gateway_control
        from ...errors import InputError
        from ..app import load

        if not follow:
            render(gateway_control.logs(load(ctx), tail=tail), json_output)
        if json_output:
            raise InputError("--follow and --json exclude each other; drop one")
        for line in gateway_control.follow_logs(load(ctx), tail=tail):
            typer.echo(line)

    @gateway.command("wait", help="Wait until the gateway is healthy; exit 4 with its last log lines on timeout.")
    def wait(
        ctx: typer.Context,
        timeout: float = typer.Option(60.0, "--timeout", min=0.1, help="Seconds to wait."),
        json_output: bool = JSON,
    ) -> None:
        from ... import gateway_control
        from ..app import load
        from ..views.gateway import wait_display

        with wait_display(json_output) as progress:
            result = gateway_control.wait(load(ctx), timeout=timeout, progress=progress)
        render(result, json_output)


def _start_or_restart(ctx: typer.Context, action: str, wait: bool, timeout: float, json_output: bool) -> None:
    from ... import gateway_control
    from ..app import load
    from ..views.gateway import wait_display

    with wait_display(json_output) as progress:
        result = getattr(gateway_control, action)(load(ctx), wait=wait, timeout=timeout, progress=progress)
    render(result, json_output)
