"""`rollout gateway status|start|stop|restart|logs|wait`."""

from __future__ import annotations

import typer

from rollout_cli.cli.context import load
from rollout_cli.cli.options import json_option, timeout_option, wait_option
from rollout_cli.cli.render import render, render_lines
from rollout_cli.errors import InputError

HELP = ("Control the gateway: its container (gateway.container), its swarm service (gateway.service), "
        "or the sandbox's litellm process.")


def register(app: typer.Typer) -> None:
    gateway = typer.Typer(help=HELP, no_args_is_help=True)
    app.add_typer(gateway, name="gateway")

    @gateway.command("status", help="Runtime state (status, health, uptime, restarts, image, exit code, "
                     "OOM kill) and the proxy's liveliness and readiness. Exit 4 when not healthy.")
    def status(ctx: typer.Context, json_output: bool = json_option()) -> None:
        from rollout_cli.gateway import control  # lazy: start-up time (httpx, docker)

        render(control.status(load(ctx)), json_output)

    @gateway.command("start", help="Start the gateway, then wait until it is healthy.")
    def start(
        ctx: typer.Context,
        wait: bool = wait_option(),
        timeout: float = timeout_option(60.0, "Seconds to wait for health."),
        json_output: bool = json_option(),
    ) -> None:
        from rollout_cli.cli.views.gateway import wait_display  # lazy: start-up time (rich)
        from rollout_cli.gateway import control  # lazy: start-up time (httpx, docker)

        with wait_display(json_output) as progress:
            result = control.start(load(ctx), wait=wait, timeout=timeout, progress=progress)
        render(result, json_output)

    @gateway.command("stop", help="Stop the gateway (SIGTERM, then SIGKILL after --timeout).")
    def stop(
        ctx: typer.Context,
        timeout: int = timeout_option(10, "Seconds of grace before SIGKILL.", min=0),
        json_output: bool = json_option(),
    ) -> None:
        from rollout_cli.gateway import control  # lazy: start-up time (httpx, docker)

        render(control.stop(load(ctx), timeout=timeout), json_output)

    @gateway.command("restart", help="Restart the gateway, then wait until it is healthy.")
    def restart(
        ctx: typer.Context,
        wait: bool = wait_option(),
        timeout: float = timeout_option(60.0, "Seconds to wait for health."),
        json_output: bool = json_option(),
    ) -> None:
        from rollout_cli.cli.views.gateway import wait_display  # lazy: start-up time (rich)
        from rollout_cli.gateway import control  # lazy: start-up time (httpx, docker)

        with wait_display(json_output) as progress:
            result = control.restart(load(ctx), wait=wait, timeout=timeout, progress=progress)
        render(result, json_output)

    @gateway.command("logs", help="The gateway's last log lines; --follow keeps printing new ones.")
    def logs(
        ctx: typer.Context,
        follow: bool = typer.Option(False, "--follow", "-f", help="Keep printing lines as they come (Ctrl-C ends)."),
        tail: int = typer.Option(100, "--tail", "-n", min=0, help="How many of the last lines."),
        json_output: bool = json_option("Print JSON. Not with --follow."),
    ) -> None:
        from rollout_cli.gateway import control  # lazy: start-up time (httpx, docker)

        if follow:
            if json_output:
                raise InputError("--follow and --json exclude each other; drop one")
            render_lines(control.follow_logs(load(ctx), tail=tail))
        else:
            render(control.logs(load(ctx), tail=tail), json_output)

    @gateway.command("wait", help="Wait until the gateway is healthy; exit 4 with its last log lines on timeout.")
    def wait(
        ctx: typer.Context,
        timeout: float = timeout_option(60.0, "Seconds to wait."),
        json_output: bool = json_option(),
    ) -> None:
        from rollout_cli.cli.views.gateway import wait_display  # lazy: start-up time (rich)
        from rollout_cli.gateway import control  # lazy: start-up time (httpx, docker)

        with wait_display(json_output) as progress:
            result = control.wait(load(ctx), timeout=timeout, progress=progress)
        render(result, json_output)
