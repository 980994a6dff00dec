"""Text from users and upstreams (reasons, file contents, gateway answers) made safe to show.

A reason given with `--reason`, a value read from an env file or an error body
from the gateway may hold terminal escapes (ANSI CSI, OSC 8 links, a screen
clear), carriage returns or newlines that forge extra output lines. Every
renderer (terminal, Markdown, JUnit XML) passes such text through
`printable()` first, then applies its own format's escaping.

What a person writes that others read later (a `--reason` in the audit trail)
may quote a secret by mistake: `blank_secrets()` takes out the values this
process knows are secret and anything that reads as an API key.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Any

# C0 controls and DEL, C1 controls, and the Unicode bidi overrides/isolates that
# reorder what a terminal or a browser shows ("Trojan Source").
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_LINE_BREAKS = re.compile(r"[\t\n\v\f\r\x1c-\x1e\x85\u2028\u2029]+")


def printable(text: object) -> str:
    """`text` on one line without control characters: line breaks and tabs become one space, the rest go."""
    return _CONTROLS.sub("", _LINE_BREAKS.sub(" ", str(text)))


# --- secrets quoted by a person -----------------------------------------------------------------------

# An OpenRouter or LiteLLM key pasted into a --reason ("sk-or-v1-...", "sk-..."): blanked even when this process
# does not hold it.
_KEY_TEXT = re.compile(r"\bsk-[A-Za-z0-9_\-]{8,}")
_sources: list[Callable[[], Iterable[str]]] = []
_values: list[str] = []


def remember_secrets(values: Callable[[], Iterable[str]]) -> None:
    """Register where this process's secret values come from (read when a record is first written)."""
    _sources.append(values)


def blank_secrets(value: Any) -> Any:
    """`value` (a string, or a list or dict holding strings) with every known secret value, and anything
    that reads as an API key, replaced by [secret]."""
    while _sources:
        _values.extend(v for v in _sources.pop()() if len(v) >= 8)
        _values.sort(key=len, reverse=True)  # a longer secret first: it may hold a shorter one
    if isinstance(value, str):
        for secret in _values:
            value = value.replace(secret, "[secret]")
        return _KEY_TEXT.sub("[secret]", value)
    if isinstance(value, list):
        return [blank_secrets(v) for v in value]
    if isinstance(value, dict):
        return {k: blank_secrets(v) for k, v in value.items()}
    return value
