"""The `rollout` command: parses options, calls one core function, renders its Result.

Errors from the core (`RolloutError`) become one line on stderr and their exit
code; a traceback reaches the user only with `--debug`. With `--json`, stdout
also gets the error envelope.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any, NoReturn

import typer
from typer.core import TyperGroup

from rollout_cli.cli import commands
from rollout_cli.cli.context import Globals, load, workspace_root
from rollout_cli.cli.options import JSON_COMMAND
from rollout_cli.cli.render import plain, print_error_json
from rollout_cli.errors import ExitCode, RolloutError


class RolloutGroup(TyperGroup):
    """Maps RolloutError to its exit code for every command, CliRunner included.

    With `--json` a failure still prints one JSON object on stdout (the error
    envelope, schemas/error.schema.json) besides the one line on stderr, so a
    CI job parsing stdout never reads nothing.
    """

    # typer.Context is what click hands every command; the base classes name click's own Context
    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:  # type: ignore[override]
        # --debug is global but welcome anywhere on the line: `rollout health --debug`.
        end = args.index("--") if "--" in args else len(args)
        if "--debug" in args[:end]:
            ctx.meta[DEBUG] = True
            args = [a for a in args[:end] if a != "--debug"] + args[end:]
        rest = super().parse_args(ctx, args)
        ctx.meta[REST] = [*ctx._protected_args, *rest]  # for an error before the command's own options parse
        return rest

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except RolloutError as exc:
            _report(ctx, exc, exc.message, exc.exit_code)
        except KeyboardInterrupt:
            _report(ctx, None, "interrupted", 130, prefix="rollout: ")
        except Exception as exc:
            if type(exc).__name__ == "Abort":  # a declined confirmation (typer's or its click's)
                _report(ctx, exc, "not confirmed; nothing changed", ExitCode.BAD_INPUT)
            if _is_cli_flow(exc):
                if isinstance(exc, typer.TyperException):  # a usage error: the parser prints it on stderr
                    json_command = _json_command(self, ctx)
                    if json_command is not None:
                        print_error_json(json_command, exc.exit_code, exc.format_message(),
                                         line=_streams_lines(ctx, json_command))
                raise
            # a bug: still one line unless --debug
            # the type only: an exception's text may quote data (a header, a file's bytes)
            _report(ctx, exc, f"internal error: {type(exc).__name__}; rerun with --debug and report it", ExitCode.FAILED)


DEBUG = "rollout.debug"  # ctx.meta keys
REST = "rollout.rest"


def _is_cli_flow(exc: Exception) -> bool:
    """Exit, Abort and usage errors of typer (and the click inside it) pass through."""
    if isinstance(exc, typer.TyperException):
        return True
    return type(exc).__module__.startswith(("typer.", "click.")) and hasattr(exc, "exit_code")


def _json_command(group: TyperGroup, ctx: typer.Context) -> str | None:
    """The failing command's path when it was given --json, else None.

    The --json option records itself when parsed; an error raised before that
    (a usage error) is judged from the words left after the global options.
    """
    if JSON_COMMAND in ctx.meta:
        return str(ctx.meta[JSON_COMMAND])
    rest: list[str] = ctx.meta.get(REST, [])
    words = rest[: rest.index("--")] if "--" in rest else rest
    if "--json" not in words:
        return None
    path: list[str] = []
    command: Any = group
    for word in words:
        sub = (getattr(command, "commands", None) or {}).get(word)
        if sub is None:
            break
        path.append(word)
        command = sub
    return " ".join(path)


def _streams_lines(ctx: typer.Context, command: str) -> bool:
    """Whether the command prints one JSON document per line (`watch`, `health --watch`): its error too.

    A reader of such a stream parses line by line; an indented envelope would be eight broken documents.
    """
    words: list[str] = ctx.meta.get(REST, [])
    return command == "watch" or (command == "health" and "--watch" in words[: words.index("--")
                                                                             if "--" in words else len(words)])


def _report(ctx: typer.Context, exc: BaseException | None, message: str, code: int, *,
            prefix: str = "rollout: error: ") -> NoReturn:
    debug = (isinstance(ctx.obj, Globals) and ctx.obj.debug) or ctx.meta.get(DEBUG) \
        or os.environ.get("ROLLOUT_DEBUG") == "1"
    if debug and exc is not None:
        import traceback  # lazy: start-up time (only --debug needs it)

        traceback.print_exception(exc, file=sys.stderr)
    from rollout_cli.io.inplace import take_recovery_notes  # lazy: start-up time

    for note in take_recovery_notes():  # recovered before the failure: still said
        typer.echo(f"rollout: {plain(note)}", err=True)
    json_command = _json_command(ctx.command, ctx) if isinstance(ctx.command, TyperGroup) else None
    if json_command is not None:
        print_error_json(json_command, code, message, line=_streams_lines(ctx, json_command))
    typer.echo(f"{prefix}{plain(message)}", err=True)
    ctx.exit(int(code))
    raise AssertionError("unreachable")  # ctx.exit raises


def _globals(
    ctx: typer.Context,
    workspace: str = typer.Option(
        None, "--workspace", "-w", metavar="DIR", help="Workspace folder (default: $ROLLOUT_WORKSPACE or .)."
    ),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
) -> None:
    ctx.obj = Globals(workspace=workspace, debug=debug or bool(ctx.meta.get(DEBUG)))


COMMANDS = ["init", "status", "advance", "report", "watch", "health", "smoke", "models", "quota",
            "rollback", "recover", "history", "gateway", "sandbox", "autopilot", "approve"]


def build_app(names: list[str] = COMMANDS) -> typer.Typer:
    """The `rollout` app with the commands of these cli/commands/ modules, in the help's order.

    A list, not a scan of the package: pkgutil's scan costs start-up time on every command.
    """
    built = typer.Typer(
        cls=RolloutGroup,
        name="rollout",
        help="Move an app's LLM traffic behind a LiteLLM gateway in stages, and roll it back fast.",
        no_args_is_help=True,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        add_completion=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    built.callback()(_globals)
    for name in names:
        importlib.import_module(f"{commands.__name__}.{name}").register(built)
    return built


app = build_app()  # every command: what the tests drive, and what `rollout --help` lists

__all__ = ["Globals", "app", "build_app", "load", "main", "workspace_root"]


def command_word(args: list[str]) -> str | None:
    """The command `rollout [-w DIR] [--debug] COMMAND ...` names; None before any other option (-h, a typo)."""
    value_next = False
    for arg in args:
        if value_next:
            value_next = False
        elif arg in ("-w", "--workspace"):
            value_next = True
        elif arg == "--debug" or arg.startswith("--workspace=") or (arg.startswith("-w") and len(arg) > 2):
            continue
        else:
            return None if arg.startswith("-") else arg
    return None


def main() -> None:
    # Only the named command is built: typer turns every registered command's signature
    # into a parser at each start, and a level-1 rollback should not pay for the other twenty.
    # Anything else (--help, no command, a typo) gets the whole app and its help or error.
    name = command_word(sys.argv[1:])
    # Optional parts that httpx and httpcore import whenever their packages are installed (as they are
    # here, with LiteLLM) and rollout never uses: httpx's command-line client (rich.console, pygments,
    # click) and HTTP/2 (h2). Together a quarter of `gateway status`. A None entry makes that import
    # fail, and both libraries then carry on as when the extra is not installed.
    for unused in ("httpx._main", "h2"):
        sys.modules.setdefault(unused, None)  # type: ignore[arg-type]

    (build_app([name]) if name in COMMANDS else app)(prog_name="rollout")
