"""Renderers over Result: JSON, or human text with rich. The only place that prints."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from typing import Any

import typer

from ..result import Result

HumanRenderer = Callable[[Any, Result], None]
_HUMAN: dict[str, HumanRenderer] = {}

STATUS_STYLE = {
    "ok": "green", "pass": "green", "unchanged": "dim", "skipped": "yellow",
    "would-change": "cyan", "would-verify": "dim", "failed": "bold red", "fail": "bold red",
}


def human(command: str) -> Callable[[HumanRenderer], HumanRenderer]:
    """Register the human renderer of one command."""

    def register(fn: HumanRenderer) -> HumanRenderer:
        _HUMAN[command] = fn
        return fn

    return register


def console(stderr: bool = False):  # type: ignore[no-untyped-def]
    from rich.console import Console

    return Console(stderr=stderr, highlight=False, soft_wrap=False, emoji=False)  # ":free:" in model ids is not an emoji


def render(result: Result, json_output: bool = False) -> None:
    """Print the result and exit with its code."""
    if json_output:
        sys.stdout.write(json.dumps(result.to_json(), indent=2, default=str) + "\n")
    else:
        _load_views()
        out = console()
        renderer = _HUMAN.get(result.command)
        if renderer is not None:
            renderer(out, result)
        for message in result.messages:
            out.print(message, markup=False)
    raise typer.Exit(int(result.exit_code))


def _load_views() -> None:
    """Import every module of cli/views/ once: each registers its renderers with @human."""
    import importlib
    import pkgutil

    from . import views

    for module in pkgutil.iter_modules(views.__path__):
        importlib.import_module(f"{views.__name__}.{module.name}")


def esc(text: object) -> str:
    from rich.markup import escape

    return escape(str(text))


def status_text(status: str) -> str:
    style = STATUS_STYLE.get(status, "")
    return f"[{style}]{esc(status)}[/]" if style else esc(status)
