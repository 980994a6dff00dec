"""Text from users and upstreams (reasons, file contents, gateway answers) made safe to show.

A reason given with `--reason`, a value read from an env file or an error body
from the gateway may hold terminal escapes (ANSI CSI, OSC 8 links, a screen
clear), carriage returns or newlines that forge extra output lines. Every
renderer (terminal, Markdown, JUnit XML) passes such text through
`printable()` first, then applies its own format's escaping.
"""

from __future__ import annotations

import re

# C0 controls and DEL, C1 controls, and the Unicode bidi overrides/isolates that
# reorder what a terminal or a browser shows ("Trojan Source").
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]")
_LINE_BREAKS = re.compile(r"[\t\n\v\f\r\x1c-\x1e\x85\u2028\u2029]+")


def printable(text: object) -> str:
    """`text` on one line without control characters: line breaks and tabs become one space, the rest go."""
    return _CONTROLS.sub("", _LINE_BREAKS.sub(" ", str(text)))
