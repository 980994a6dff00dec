from __future__ import annotations

import typer

from rollout_cli.cli.context import load
from rollout_cli.cli.options import dry_run_option, json_option, reason_option
from rollout_cli.cli.render import render
from rollout_cli.errors import InputError

HELP = (
    "The catalog watchdog: every model of the gateway config against OpenRouter's /api/v1/models (listed, "
    "free, context, supported parameters vs app.requires), with ranked free replacements for a failing one. "
    "--replace OLD NEW swaps a model in the gateway config (comments kept, atomic, locked, audited). "
    "Exit 0 all fit, 1 a model retired / not free / lacking a required capability, 4 catalog unreadable."
)


def register(app: typer.Typer) -> None:
    @app.command("models", help=HELP)
    def models(
        ctx: typer.Context,
        replace: tuple[str, str] = typer.Option(None, "--replace", metavar="OLD NEW",
                                                help="Swap alias OLD for the OpenRouter model NEW "
                                                "(e.g. --replace kimi-k2 openai/gpt-oss-20b:free)."),
        alias: str = typer.Option(None, "--alias", help="With --replace: the new alias (default: NEW's name "
                                  "without vendor and :free)."),
        dry_run: bool = dry_run_option("With --replace: show the diff; write nothing."),
        force: bool = typer.Option(False, "--force", help="With --replace: skip the catalog check of NEW."),
        reason: str = reason_option(),
        json_output: bool = json_option(),
    ) -> None:
        from rollout_cli.checks import models as core  # lazy: start-up time

        ws = load(ctx)
        old, new = replace or (None, None)
        if old is None or new is None:
            if alias or dry_run or force:
                raise InputError("--alias, --dry-run and --force go with --replace OLD NEW")
            render(core.models(ws), json_output)
        render(core.replace(ws, old, new, alias=alias, dry_run=dry_run, reason=reason, force=force), json_output)
