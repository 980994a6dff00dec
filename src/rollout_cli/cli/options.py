"""Options shared by several commands, declared once.

`--json` also tells the error handler of `cli/app.py` that this command's
failure must still print one JSON object (the error envelope) on stdout.
"""

from __future__ import annotations

from typing import Any

import typer

JSON_COMMAND = "rollout.json_command"  # ctx.meta key: the command path whose --json was given


def command_path(ctx: typer.Context) -> str:
    """`gateway status` for `rollout -w DIR gateway status`: the path without the program name."""
    names: list[str] = []
    node: Any = ctx  # the parents are click contexts
    while node.parent is not None:
        names.append(node.info_name or "")
        node = node.parent
    return " ".join(reversed(names))


def _json_given(ctx: typer.Context, value: bool) -> bool:
    if value:
        ctx.meta[JSON_COMMAND] = command_path(ctx)  # meta is shared by every context of the invocation
    return value


def json_option(help: str = "Print JSON.") -> Any:
    return typer.Option(False, "--json", help=help, callback=_json_given)


def yes_option(help: str = "Do not ask for confirmation.") -> Any:
    return typer.Option(False, "--yes", "-y", help=help)


def reason_option() -> Any:
    return typer.Option(None, "--reason", help="Why; recorded in the audit trail.")


def reason_required() -> Any:
    return typer.Option(None, "--reason", help="Why; recorded in the audit trail (required).")


def dry_run_option(help: str) -> Any:
    return typer.Option(False, "--dry-run", help=help)


def timeout_option(default: float, help: str, *, min: float | None = 0.1) -> Any:
    return typer.Option(default, "--timeout", min=min, help=help)


def interval_option(default: float, help: str, *, min: float = 0.1) -> Any:
    return typer.Option(default, "--interval", min=min, help=help)


def count_option(help: str) -> Any:
    return typer.Option(None, "--count", min=1, help=help)


def models_option(help: str) -> Any:
    return typer.Option(None, "--model", "-m", help=help)


def markdown_option(help: str) -> Any:
    return typer.Option(None, "--markdown", help=help)


def wait_option() -> Any:
    return typer.Option(True, "--wait/--no-wait", help="Wait until healthy (default) or return at once.")


SANDBOX_DIR_HELP = "Sandbox folder (default: -w, $ROLLOUT_WORKSPACE, else ./sandbox)."


def sandbox_dir_argument() -> Any:
    return typer.Argument(None, help=SANDBOX_DIR_HELP)

