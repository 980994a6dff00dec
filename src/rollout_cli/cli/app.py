"""The `rollout` command: parses options, calls one core function, renders its Result.

Errors from the core (`RolloutError`) become one line on stderr and their exit
code; a traceback reaches the user only with `--debug`.
"""

from __future__ import annotations

import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from ..errors import ExitCode, RolloutError


@dataclass
class Globals:
    workspace: str | None = None
    debug: bool = False


class RolloutGroup(TyperGroup):
    """Maps RolloutError to its exit code for every command, CliRunner included."""

    def invoke(self, ctx: typer.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RolloutError as exc:
            _report(ctx, exc, exc.message, exc.exit_code)
        except KeyboardInterrupt:
            typer.echo("rollout: interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:
            if type(exc).__name__ == "Abort":  # a declined confirmation (typer's or its click's)
                _report(ctx, exc, "not confirmed; nothing changed", ExitCode.BAD_INPUT)
            if _is_cli_flow(exc):
                raise
            # a bug: still one line unless --debug
            _report(ctx, exc, f"internal error: {exc!r}; rerun with --debug and report it", ExitCode.FAILED)


def _is_cli_flow(exc: Exception) -> bool:
    """Exit, Abort and usage errors of typer (and the click inside it) pass through."""
    if isinstance(exc, typer.TyperException):
        return True
    return type(exc).__module__.startswith(("typer.", "click.")) and hasattr(exc, "exit_code")


def _report(ctx: typer.Context, exc: BaseException, message: str, code: int) -> None:
    debug = isinstance(ctx.obj, Globals) and ctx.obj.debug or os.environ.get("ROLLOUT_DEBUG") == "1"
    if debug:
        traceback.print_exception(exc, file=sys.stderr)
    typer.echo(f"rollout: error: {message}", err=True)
    ctx.exit(int(code))


app = typer.Typer(
    cls=RolloutGroup,
    name="rollout",
    help="Move an app's LLM traffic behind a LiteLLM gateway in stages, and roll it back fast.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def _globals(
    ctx: typer.Context,
    workspace: str = typer.Option(
        None, "--workspace", "-w", metavar="DIR", help="Workspace folder (default: $ROLLOUT_WORKSPACE or .)."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    ctx.obj = Globals(workspace=workspace, debug=debug)


def workspace_root(ctx: typer.Context) -> Path:
    from ..workspace import resolve_root

    return resolve_root(ctx.obj.workspace if isinstance(ctx.obj, Globals) else None)


def load(ctx: typer.Context):  # type: ignore[no-untyped-def]
    from ..workspace import load_workspace

    return load_workspace(workspace_root(ctx))


def _register() -> None:
    """Every module in cli/commands/ registers its command(s); order is the help order."""
    import importlib
    import pkgutil

    from . import commands

    names = sorted(m.name for m in pkgutil.iter_modules(commands.__path__))
    for name in sorted(names, key=lambda n: (COMMAND_ORDER.index(n) if n in COMMAND_ORDER else 99, n)):
        importlib.import_module(f"{commands.__name__}.{name}").register(app)


COMMAND_ORDER = ["init", "status", "advance", "report", "watch", "health", "smoke",
                 "rollback", "history", "gateway", "sandbox"]


_register()


def main() -> None:
    app(prog_name="rollout")
