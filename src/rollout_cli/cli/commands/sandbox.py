"""`rollout sandbox up|down|status|fault|traffic|notifications`: the whole world locally, no key and no network needed."""

from __future__ import annotations

from pathlib import Path

import typer

from rollout_cli.cli.context import workspace_option
from rollout_cli.cli.options import json_option, models_option, sandbox_dir_argument, timeout_option
from rollout_cli.cli.render import render

HELP = "Run the whole world locally: OpenRouter simulator, LiteLLM gateway, sample app and workspace."


def _dir(ctx: typer.Context, directory: Path | None) -> Path:
    """DIR, else -w, else $ROLLOUT_WORKSPACE, else ./sandbox: the same for every verb."""
    from rollout_cli.sandbox.world import resolve_dir  # lazy: start-up time

    return resolve_dir(directory, workspace_option(ctx))


def register(app: typer.Typer) -> None:
    sandbox = typer.Typer(help=HELP, no_args_is_help=True)
    app.add_typer(sandbox, name="sandbox")

    @sandbox.command("up", help="Start the simulator, the gateway, the sample app and Prometheus and write a "
                     "complete workspace in DIR (default: -w, $ROLLOUT_WORKSPACE, else ./sandbox). Already up and "
                     "healthy: nothing changes; partly up: restarted cleanly.")
    def up(
        ctx: typer.Context,
        directory: Path = sandbox_dir_argument(),
        runtime: str = typer.Option("auto", "--runtime", help="docker, process, swarm (the gateway as a replicated "
                                    "Swarm service in a network namespace of its own; root), or auto: docker when "
                                    "an engine answers and the image exists, else process."),
        gateway_port: int = typer.Option(None, "--gateway-port", help="Gateway port on 127.0.0.1 (default 4000, "
                                         "or the port this DIR used before; 0: any free)."),
        simulator_port: int = typer.Option(None, "--simulator-port", help="Simulator port (default 4010, or the "
                                           "port this DIR used before; 0: any free)."),
        image: str = typer.Option(None, "--image", help="Gateway image (default $ROLLOUT_GATEWAY_IMAGE, "
                                  "else rollout/litellm:local)."),
        gateway_config: Path = typer.Option(None, "--gateway-config", help="LiteLLM config to start from "
                                            "(default: the shipped deploy/litellm-config.yaml)."),
        timeout: float = timeout_option(60.0, "Seconds to wait for a healthy gateway.", min=None),
        app_runtime: str = typer.Option("auto", "--app-runtime", help="Where the sample app runs: process, "
                                        "docker (bind-mounting .env and flags.json), auto (as the gateway), none."),
        prometheus_port: int = typer.Option(None, "--prometheus-port", help="Prometheus port on 127.0.0.1 "
                                            "(default: the port this DIR used before, else any free one)."),
        replicas: int = typer.Option(None, "--replicas", help="--runtime swarm: the gateway's replicas (default 2, "
                                     "or the count this DIR used before)."),
        json_output: bool = json_option(),
    ) -> None:
        from rollout_cli.cli.views.gateway import wait_display  # lazy: start-up time (rich)
        from rollout_cli.sandbox import commands  # lazy: start-up time

        root = _dir(ctx, directory)
        with wait_display(json_output, steps=True) as progress:
            result = commands.up(
                root, runtime=runtime, gateway_port=gateway_port, simulator_port=simulator_port, image=image,
                gateway_config=gateway_config.absolute() if gateway_config else None, timeout=timeout,
                progress=progress, step=progress.step, app_runtime=app_runtime, prometheus_port=prometheus_port,
                replicas=replicas,
            )
        render(result, json_output)

    @sandbox.command("down", help="Write the run's HTML report to DIR/report.html, then stop exactly what "
                     "`sandbox up` started; harmless when nothing is up.")
    def down(
        ctx: typer.Context,
        directory: Path = sandbox_dir_argument(),
        report: bool = typer.Option(True, "--report/--no-report", help="Write DIR/report.html first (default), "
                                    "or only stop."),
        json_output: bool = json_option(),
    ) -> None:
        from rollout_cli.sandbox import commands  # lazy: start-up time

        render(commands.down(_dir(ctx, directory), report=report), json_output)

    @sandbox.command("status", help="The simulator and the gateway of a sandbox: state, ports, runtime, faults.")
    def status(ctx: typer.Context, directory: Path = sandbox_dir_argument(), json_output: bool = json_option()) -> None:
        from rollout_cli.sandbox import commands  # lazy: start-up time

        render(commands.status(_dir(ctx, directory)), json_output)

    @sandbox.command("fault", help="Inject a fault into the simulated OpenRouter for MODEL (alias or id), "
                     "set account-wide free-tier limits (--quota-left, --rpm; no MODEL), "
                     "clear faults with --clear [MODEL], or list them (no MODEL). Sandbox from -w, else ./sandbox.")
    def fault(
        ctx: typer.Context,
        model: str = typer.Argument(None, help="Gateway alias (glm-4.5-air) or OpenRouter id."),
        clear: bool = typer.Option(False, "--clear", help="Clear MODEL's fault, or every fault."),
        status: int = typer.Option(None, "--status", help="HTTP status to answer: 429, 500, 502, 503, ..."),
        rate: float = typer.Option(None, "--rate", help="Share of requests that fail, 0..1 (default 1)."),
        latency_ms: int = typer.Option(None, "--latency-ms", help="Latency added to every request of MODEL."),
        retry_after: int = typer.Option(None, "--retry-after", help="Retry-After seconds (429; default 1)."),
        mode: str = typer.Option(None, "--mode", help="hang, malformed, empty or stream-error (200, then an "
                                 "error mid-stream; an error object without streaming) instead of a status."),
        retired: bool = typer.Option(False, "--retired", help="MODEL is retired: 404 no endpoints, gone from /models."),
        price: str = typer.Option(None, "--price", help="MODEL is no longer free: priced at USD/token in /models "
                                  "(e.g. 0.000002); its :free id answers 404."),
        no_tools: bool = typer.Option(False, "--no-tools", help="MODEL loses tool calls: requests with tools get "
                                      "404; /models lacks tools."),
        upstream: bool = typer.Option(False, "--upstream", help="With --status 429: the provider's throttling "
                                      "(\"Provider returned error\"), not OpenRouter's."),
        quota_left: int = typer.Option(None, "--quota-left", help="Account-wide: after N more requests every "
                                       ":free model answers 429 free-models-per-day (no MODEL)."),
        rpm: int = typer.Option(None, "--rpm", help="Account-wide: at most N requests a minute to :free models "
                                "(no MODEL)."),
        via: str = typer.Option(None, "--via", help="Whose requests meet the fault: gateway (the gateway's "
                                "OpenRouter key), direct (the app's own key), or both (default: a provider-wide "
                                "failure)."),
        json_output: bool = json_option(),
    ) -> None:
        from rollout_cli.sandbox import commands  # lazy: start-up time

        render(commands.fault(_dir(ctx, None), model, clear=clear, status=status, rate=rate,
                              latency_ms=latency_ms, retry_after=retry_after, mode=mode, retired=retired,
                              price=price, no_tools=no_tools, upstream=upstream, quota_left=quota_left,
                              rpm=rpm, via=via), json_output)

    @sandbox.command("traffic", help="Put load on the running sample app for DURATION and report the split it "
                     "observed: the app sends each user through the gateway or direct, as its flags file says.")
    def traffic(
        ctx: typer.Context,
        rps: float = typer.Option(5.0, "--rps", help="Requests per second (at most 50)."),
        duration: float = typer.Option(10.0, "--duration", help="Seconds to send for (at most 3600)."),
        model: str = models_option("Gateway alias the app asks for (default: the primary)."),
        json_output: bool = json_option(),
    ) -> None:
        from rollout_cli.sandbox.traffic import traffic as core_traffic  # lazy: start-up time

        render(core_traffic(_dir(ctx, None), rps=rps, duration=duration, model=model), json_output)

    @sandbox.command("notifications", help="What the sandbox's notification receiver got from rollout (the "
                     "`sandbox` webhook sink of its rollout.yaml), oldest first; --answer makes it fail on purpose.")
    def notifications(
        ctx: typer.Context,
        directory: Path = sandbox_dir_argument(),
        answer: str = typer.Option(None, "--answer", help="From now on answer ok (200), hang (no answer), or an "
                                   "HTTP status such as 500."),
        json_output: bool = json_option(),
    ) -> None:
        from rollout_cli.sandbox.notifications import notifications as core_notifications  # lazy: start-up time

        render(core_notifications(_dir(ctx, directory), answer=answer), json_output)

    app_cli = typer.Typer(help="The sandbox's sample app: an OpenAI-compatible client on OpenFeature (flagd, file "
                          "mode) that sends each user through the gateway or direct, as its flags file says.",
                          no_args_is_help=True)
    sandbox.add_typer(app_cli, name="app")

    @app_cli.command("start", help="Start (or restart) the sample app of the sandbox in -w DIR.")
    def app_start(
        ctx: typer.Context,
        runtime: str = typer.Option("process", "--runtime", help="process, or docker: a container that "
                                    "bind-mounts .env and flags.json one by one (the compose pattern)."),
        reads_files_once: bool = typer.Option(False, "--reads-files-once", help="An app that ignores changes "
                                              "to its files: it re-reads them only on SIGHUP."),
        json_output: bool = json_option(),
    ) -> None:
        from rollout_cli.sandbox.app import app_command  # lazy: start-up time

        render(app_command(_dir(ctx, None), "start", runtime=runtime, reads_files_once=reads_files_once),
               json_output)

    @app_cli.command("stop", help="Stop the sample app; harmless when it is not running.")
    def app_stop(ctx: typer.Context, json_output: bool = json_option()) -> None:
        from rollout_cli.sandbox.app import app_command  # lazy: start-up time

        render(app_command(_dir(ctx, None), "stop"), json_output)

    @app_cli.command("status", help="Whether the sample app runs, where, and what it has sent down each path.")
    def app_status(ctx: typer.Context, json_output: bool = json_option()) -> None:
        from rollout_cli.sandbox.app import app_command  # lazy: start-up time

        render(app_command(_dir(ctx, None), "status"), json_output)
