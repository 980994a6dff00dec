"""One result type for every command; renderers decide between JSON and human text.

No command prints on its own: the core returns a `Result`, the CLI renders it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import ExitCode


@dataclass
class Result:
    command: str
    data: dict[str, Any]
    messages: list[str] = field(default_factory=list)
    exit_code: ExitCode = ExitCode.OK

    def to_json(self) -> dict[str, Any]:
        return {
            "command": self.command,
            "exit_code": int(self.exit_code),
            "messages": self.messages,
            **self.data,
        }
