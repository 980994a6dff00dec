"""Reading a YAML file the operator wrote: one message shape for every syntax error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rollout_cli.errors import InputError


def read_yaml(path: Path, *, label: str = "", error: type[InputError] = InputError) -> Any:
    """The parsed document; `error` names the file, line, column and problem otherwise.

    `label` says what the file is ("playbook ", "gateway config ") in front of its path.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise error(f"cannot read {label}{path}: {exc.strerror}") from None
    return parse_yaml_text(text, path, label=label, error=error)


def parse_yaml_text(text: str, path: Path, *, label: str = "", error: type[InputError] = InputError) -> Any:
    """`read_yaml` for text already read (an edit checked before it is written)."""
    import yaml  # lazy: start-up time

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise error(f"{label}{path} is not valid YAML{where}: {problem}; fix the file") from None
