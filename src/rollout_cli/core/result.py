"""One result type for every command; renderers decide between JSON and human text.

No command prints on its own: the core returns a `Result` carrying the command's
typed payload (a dataclass living next to the function that builds it), the CLI
renders it. `--json` prints `Result.to_json()`: the envelope (`schema_version`,
`command`, `exit_code`, `messages`) and the payload's own keys, as published in
`rollout_cli/schemas/<command>.schema.json`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from rollout_cli.errors import ExitCode

SCHEMA_VERSION = 1  # bump when a published key changes meaning or disappears; adding keys does not


class Payload(Protocol):
    """What a command found or did; `to_json()` gives the keys of its `--json` output."""

    def to_json(self) -> dict[str, Any]: ...


P = TypeVar("P", bound=Payload, covariant=True)


@dataclass(frozen=True)
class Result(Generic[P]):
    command: str
    payload: P
    messages: list[str] = field(default_factory=list)
    exit_code: ExitCode = ExitCode.OK

    @property
    def data(self) -> dict[str, Any]:
        """The payload as JSON-ready data (what `--json` prints beside the envelope)."""
        return self.payload.to_json()

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION,
            "command": self.command,
            "exit_code": int(self.exit_code),
            "messages": self.messages,
            **self.payload.to_json(),
        }


def error_json(command: str | None, exit_code: int, message: str) -> dict[str, Any]:
    """The `--json` output of a command that failed before it had a result (schemas/error.schema.json)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "command": command,
        "error": {"exit_code": int(exit_code), "message": message},
    }
