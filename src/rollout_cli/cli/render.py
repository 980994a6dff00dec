"""Renderers over Result: JSON, or human text with rich. The only place that prints.

Human views are chosen by the payload's type: each module of cli/views/ registers
its renderers with `@human(PayloadType)` (and `@live(PayloadType)` for what a
display refreshes in place), or with `@text(PayloadType)` for plain lines
without rich (start-up time: `rollback`, `gateway ...`). JSON needs no view:
`Result.to_json()` is the published shape (`rollout_cli/schemas/`).
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer

from rollout_cli.cli import views
from rollout_cli.core.result import SCHEMA_VERSION, Result, error_json
from rollout_cli.core.text import printable

if TYPE_CHECKING:  # rich itself is imported lazily, where it is used (start-up time)
    from rich.console import Console
    from rich.table import Table

HumanRenderer = Callable[[Any, Result[Any]], None]
LiveRenderer = Callable[[Result[Any]], Any]
R = TypeVar("R")  # a renderer type: what a registrar stores is what it returns

_HUMAN: dict[type, HumanRenderer] = {}
_LIVE: dict[type, LiveRenderer] = {}
_TEXT: dict[type, HumanRenderer] = {}

# One colour per status word, whichever command shows it.
STATUS_STYLE = {
    "ok": "green", "pass": "green", "healthy": "green",
    "unchanged": "dim", "would-verify": "dim", "not-checked": "dim", "unknown": "dim",
    "would-change": "cyan",
    "skipped": "yellow", "warn": "yellow", "inconclusive": "yellow", "rate-limited": "yellow",
    "not-verifiable": "yellow",
    "failed": "bold red", "fail": "bold red", "failing": "bold red", "down": "bold red", "broken": "bold red",
    "auth-error": "bold red", "unreachable": "bold red",
    "quota-exhausted": "yellow", "upstream-throttled": "yellow", "retired": "bold red", "not-free": "bold red",
    "unsupported": "bold red",
}


def _registrar(table: dict[type, R], payload_types: tuple[type, ...]) -> Callable[[R], R]:
    def register(fn: R) -> R:
        for payload_type in payload_types:
            table[payload_type] = fn
        return fn

    return register


def human(*payload_types: type) -> Callable[[HumanRenderer], HumanRenderer]:
    """Register the human renderer of results whose payload is one of `payload_types`."""
    return _registrar(_HUMAN, payload_types)


def text(*payload_types: type) -> Callable[[HumanRenderer], HumanRenderer]:
    """Register a human renderer that writes plain lines to a `TextOut`: no rich behind it.

    For the results an operator needs fastest (`rollback`, `gateway ...`): importing
    rich costs more than a level-1 rollback itself.
    """
    return _registrar(_TEXT, payload_types)


def live(*payload_types: type) -> Callable[[LiveRenderer], LiveRenderer]:
    """Register the renderable a live display shows for results of these payload types."""
    return _registrar(_LIVE, payload_types)


def _find(registry: dict[type, Any], payload: object) -> Any:
    return next((registry[cls] for cls in type(payload).__mro__ if cls in registry), None)


def console(stderr: bool = False) -> Console:
    from rich.console import Console  # lazy: start-up time

    return Console(stderr=stderr, highlight=False, soft_wrap=False, emoji=False)  # ":free:" in model ids is not an emoji


def print_json(data: dict[str, Any], *, line: bool = False) -> None:
    """One JSON object on stdout: indented, or on one line for a stream of them.

    Always valid JSON: a NaN or an infinity (which json.dumps writes bare, and
    JSON parsers reject) is written as null, whatever produced it.
    """
    text = json.dumps(_finite(data), indent=None if line else 2, default=str, allow_nan=False)
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def json_line(command: str, data: dict[str, Any]) -> None:
    """One item of a JSON-lines stream (a `watch` sample), with the envelope's schema_version and command."""
    print_json({"schema_version": SCHEMA_VERSION, "command": command, **data}, line=True)


def print_error_json(command: str | None, exit_code: int, message: str, *, line: bool = False) -> None:
    """The `--json` error envelope (schemas/error.schema.json); on one line where the command streams lines."""
    print_json(error_json(command, exit_code, message), line=line)


def render(result: Result[Any], json_output: bool = False) -> NoReturn:
    """Print the result and exit with its code."""
    from rollout_cli.io.inplace import take_recovery_notes  # lazy: start-up time (`--help` never needs it)

    # What this run recovered of an interrupted in-place write is said first, whatever the command.
    notes = take_recovery_notes()
    if json_output:
        print_json(replace(result, messages=[*notes, *result.messages]).to_json())
    else:
        _load_views(result.payload)
        text_renderer = _find(_TEXT, result.payload)
        out: Any = TextOut() if text_renderer is not None else console()
        renderer = text_renderer or _find(_HUMAN, result.payload)
        for note in notes:
            out.print(plain(note), markup=False)
        if renderer is not None:
            renderer(out, result)
        for message in result.messages:
            out.print(plain(message), markup=False)
    exit_with(result)


# The rich styles of STATUS_STYLE as terminal codes, for TextOut.
_SGR = {"green": "32", "dim": "2", "cyan": "36", "yellow": "33", "bold red": "1;31", "bold": "1"}


class TextOut:
    """Plain lines and aligned tables on stdout, coloured only on a terminal (and never with NO_COLOR).

    What a `@text` view writes to. Every cell of `table()` passes through plain();
    a view passes the rest of its user- or upstream-supplied text through plain() itself.
    """

    def __init__(self) -> None:
        self.colour = sys.stdout.isatty() and "NO_COLOR" not in os.environ and os.environ.get("TERM") != "dumb"

    def print(self, line: str = "", *, markup: bool = False) -> None:  # same call as rich's for messages
        sys.stdout.write(line + "\n")

    def style(self, text: str, style: str) -> str:
        code = _SGR.get(style)
        return f"\x1b[{code}m{text}\x1b[0m" if self.colour and code else text

    def status(self, word: str) -> str:
        return self.style(word, STATUS_STYLE.get(word, ""))

    def table(self, columns: list[str], rows: list[list[str]], *, title: str | None = None,
              status_column: int | None = None) -> None:
        """Columns two spaces apart; the cells of `status_column` coloured like status_text()."""
        cells = [[plain(cell) for cell in row] for row in rows]
        widths = [max([len(column)] + [len(row[i]) for row in cells]) for i, column in enumerate(columns)]
        if title:
            self.print(self.style(plain(title), "bold"))
        self.print(self.style(_aligned(columns, widths), "bold"))
        for row in cells:
            line = _aligned(row, widths)
            if status_column is not None and row[status_column] in STATUS_STYLE:
                start = sum(widths[:status_column]) + 2 * status_column
                word = row[status_column]
                line = line[:start] + self.status(word) + line[start + len(word):]
            self.print(line)


def _aligned(cells: list[str], widths: list[int]) -> str:
    return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()


def exit_with(result: Result[Any]) -> NoReturn:
    """Exit with the result's code, printing nothing (its output was streamed)."""
    raise typer.Exit(int(result.exit_code))


def render_rounds(rounds: Iterable[Result[Any]], json_output: bool) -> NoReturn:
    """Each round as it comes: one JSON line, or a live display refreshed in place.

    Ctrl-C is how an endless stream ends; the exit code is the last round's (130 if none finished).
    """
    last: Result[Any] | None = None
    try:
        if json_output:
            for last in rounds:
                print_json(last.to_json(), line=True)
        else:
            from rich.live import Live  # lazy: start-up time

            _load_views()
            with Live(console=console(), auto_refresh=False, transient=False) as display:
                for last in rounds:
                    display.update(_find(_LIVE, last.payload)(last), refresh=True)
    except KeyboardInterrupt:
        pass
    raise typer.Exit(int(last.exit_code) if last is not None else 130)


def render_lines(lines: Iterable[str]) -> None:
    """A stream of plain lines (`gateway logs --follow`), printed as they come, unstyled."""
    for line in lines:
        typer.echo(plain(line))


# Which views module renders the payloads of which core module: only that one is
# imported, so a rollback does not pay for loading the report, health and sandbox views.
VIEWS_OF = {
    "rollout_cli.checks.health": "checks", "rollout_cli.checks.smoke": "checks",
    "rollout_cli.gateway.control": "gateway", "rollout_cli.sandbox.commands": "sandbox",
    "rollout_cli.playbook.levels": "rollback", "rollout_cli.rollout.status": "status",
    "rollout_cli.rollout.advance": "rollout", "rollout_cli.rollout.report": "rollout",
    "rollout_cli.autopilot.controls": "autopilot",
}


def _load_views(payload: object = None) -> None:
    """Import the views module of `payload` (all of cli/views/ when unknown): each registers with @human."""
    import importlib  # lazy: start-up time
    import pkgutil  # lazy: start-up time


    name = VIEWS_OF.get(type(payload).__module__) if payload is not None else None
    modules = [name] if name else [m.name for m in pkgutil.iter_modules(views.__path__)]
    for module in modules:
        importlib.import_module(f"{views.__name__}.{module}")


def plain(text: object) -> str:
    """Text from a user, a file or an upstream, fit for the terminal: every view passes such text through here.

    One line, no control characters: a `--reason` or a gateway error holding ANSI or OSC
    escapes, a carriage return or a newline can neither restyle nor clear the screen,
    nor forge an output line.
    """
    return printable(text)


def esc(text: object) -> str:
    """plain(text), with rich markup escaped: for text inside a string rich renders as markup."""
    from rich.markup import escape  # lazy: start-up time

    return escape(plain(text))


def new_table(*columns: str, title: str | None = None) -> Table:
    """A borderless table with these columns: the one table style of every view."""
    from rich.table import Table  # lazy: start-up time

    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for column in columns:
        table.add_column(column)
    return table


# What `gateway.runtime` runs the gateway as, in the words an operator uses for it.
RUNTIME_NOUN = {"docker": "container", "process": "process", "swarm": "service"}


def status_text(status: str) -> str:
    style = STATUS_STYLE.get(status, "")
    return f"[{style}]{esc(status)}[/]" if style else esc(status)
