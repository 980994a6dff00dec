"""The published JSON Schemas (draft 2020-12) of every command's `--json` output.

One file per command, `<command path with dashes>.schema.json` (`gateway-status`),
plus `error.schema.json`: what any command prints with `--json` when it fails
before it has a result, and `notification.schema.json`: the JSON body a webhook
notification carries (not a command's output). They ship in the wheel; see docs/API.md.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

ERROR = "error"
NOTIFICATION = "notification"  # a document rollout sends, not a command's output


def schema_name(command: str) -> str:
    """`gateway status` -> `gateway-status.schema.json`."""
    return command.replace(" ", "-") + ".schema.json"


def load_schema(command: str) -> dict[str, Any]:
    """The schema of `command`'s `--json` output (`error` for the error envelope)."""
    text = resources.files(__package__).joinpath(schema_name(command)).read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    return data


def published() -> list[str]:
    """Every command with a schema, `error` included (`notification` is a body rollout sends, not listed)."""
    return sorted(
        entry.name.removesuffix(".schema.json").replace("-", " ")
        for entry in resources.files(__package__).iterdir()
        if entry.name.endswith(".schema.json") and entry.name != schema_name(NOTIFICATION)
    )
