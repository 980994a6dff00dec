"""`rollout sandbox up|down|status|fault`: the whole world locally, no key and no network needed."""

from __future__ import annotations

from pathlib import Path

import typer

from ..render import render

HELP = "Run the whole world locally: OpenRouter simulator, LiteLLM gateway, sample app and workspace."
JSON = typer.Option(False, "--json", help="Print JSON.")
DIR_HELP = "Sandbox folder (default: -w, $ROLLOUT_WORKSPACE, else ./sandbox)."


def _dir(ctx: typer.Context, directory: Path | None) -> Path:
    from ...sandbox.world import resolve_dir
    from ..app import Globals

    workspace = ctx.obj.workspace if isinstance(ctx.obj, Globals) else None
    return resolve_dir(directory, workspace)


def register(app: typer.Typer) -> None:
    sandbox = typer.Typer(help=HELP, no_args_is_help=True)
    app.add_typer(sandbox, name="sandbox")

    @sandbox.command("up", help="Start the simulator and the gateway and write a complete workspace in DIR "
                     "(default ./sandbox). Already up and healthy: nothing changes; partly up: restarted cleanly.")
    def up(
        directory: Path = typer.Argument(None, help="Sandbox folder (default ./sandbox)."),
        runtime: str = typer.Option("auto", "--runtime", help="docker, process, or auto: docker when an "
                                    "engine answers and the image exists, else process."),
        gateway_port: int = typer.Option(None, "--gateway-port", help="Gateway port on 127.0.0.1 (default 4000, "
                                         "or the port this DIR used before; 0: any free)."),
        simulator_port: int = typer.Option(None, "--simulator-port", help="Simulator port (default 4010, or the "
                                           "port this DIR used before; 0: any free)."),
        image: str = typer.Option(None, "--image", help="Gateway image (default $ROLLOUT_GATEWAY_IMAGE, "
                                  "else rollout/litellm:local)."),
        gateway_config: Path = typer.Option(None, "--gateway-config", help="LiteLLM config to start from "
                                            "(default: the shipped deploy/litellm-config.yaml)."),
        timeout: float = typer.Option(60.0, "--timeout", help="Seconds to wait for a healthy gateway."),
        json_output: bool = JSON,
    ) -> None:
        from ...sandbox import commands
        from ...sandbox.world import DEFAULT_DIR
        from ..views.gateway import wait_display

        root = (directory or Path(DEFAULT_DIR)).expanduser().absolute()
        with wait_display(json_output, steps=True) as progress:
            result = commands.up(
                root, runtime=runtime, gateway_port=gateway_port, simulator_port=simulator_port, image=image,
                gateway_config=gateway_config.absolute() if gateway_config else None, timeout=timeout,
                progress=progress, step=progress.step,
            )
        render(result, json_output)

    @sandbox.command("down", help="Stop exactly what `sandbox up` started; harmless when nothing is up.")
    def down(
        ctx: typer.Context,
        directory: Path = typer.Argument(None, help=DIR_HELP),
        json_output: bool = JSON,
    ) -> None:
        from ...sandbox import commands

        render(commands.down(_dir(ctx, directory)), json_output)

    @sandbox.command("status", help="The simulator and the gateway of a sandbox: state, ports, runtime, faults.")
    def status(
        ctx: typer.Context,
        directory: Path = typer.Argument(None, help=DIR_HELP),
        json_output: bool = JSON,
    ) -> None:
        from ...sandbox import commands

        render(commands.status(_dir(ctx, directory)), json_output)

    @sandbox.command("fault", help="Inject a fault into the simulated OpenRouter for MODEL (alias or id), "
                     "clear faults with --clear [MODEL], or list them (no MODEL). Sandbox from -w, else ./sandbox.")
    def fault(
        ctx: typer.Context,
        model: str = typer.Argument(None, help="Gateway alias (glm-4.5-air) or OpenRouter id."),
        clear: bool = typer.Option(False, "--clear", help="Clear MODEL's fault, or every fault."),
        status: int = typer.Option(None, "--status", help="HTTP status to answer: 429, 500, 502, 503, ..."),
        rate: float = typer.Option(None, "--rate", help="Share of requests that fail, 0..1 (default 1)."),
        latency_ms: int = typer.Option(None, "--latency-ms", help="Latency added to every request of MODEL."),
        retry_after: int = typer.Option(None, "--retry-after", help="Retry-After seconds (429; default 1)."),
        mode: str = typer.Option(None, "--mode", help="hang, malformed or empty instead of a status."),
        json_output: bool = JSON,
    ) -> None:
        from ...sandbox import commands

        render(commands.fault(_dir(ctx, None), model, clear=clear, status=status, rate=rate,
                              latency_ms=latency_ms, retry_after=retry_after, mode=mode), json_output)

    @sandbox.command("traffic", help="Send app-like traffic, split by the current rollout percentage: users "
                     "below it go through the gateway, the others direct to the simulated OpenRouter.")
    def traffic(
        ctx: typer.Context,
        rps: float = typer.Option(5.0, "--rps", help="Requests per second (at most 50)."),
        duration: float = typer.Option(10.0, "--duration", help="Seconds to send for (at most 3600)."),
        model: str = typer.Option(None, "--model", "-m", help="Gateway alias the app asks for (default: the primary)."),
        json_output: bool = JSON,
    ) -> None:
        from ...sandbox.traffic import traffic as core_traffic

        render(core_traffic(_dir(ctx, None), rps=rps, duration=duration, model=model), json_output)
