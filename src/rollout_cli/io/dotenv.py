"""Round-trip editor for the app's dotenv file.

The `.env` belongs to the operator: comments, ordering, quoting and secrets
must come out exactly as they went in. So we keep every line's raw text and
rewrite only the value part of the keys we set. A line we cannot parse is an
error, never skipped: silently dropping or misreading a line of a production
`.env` is worse than stopping.

Syntax accepted (the common ground of python-dotenv, Node dotenv and
docker compose): `[export ]KEY=value`, spaces around `=`, values unquoted,
'single', "double" (backslash escapes) or `backtick` quoted, quoted values
spanning lines, `# comments` on their own line or after a value (after an
unquoted value the `#` must follow whitespace), LF, CRLF or lone CR line
endings (a lone CR ends a line, as python-dotenv and Node's dotenv read it;
every line keeps its own ending when the file is rewritten).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from rollout_cli.errors import InputError, StateFileError
from rollout_cli.io.atomic import recover_interrupted, write_app_file
from rollout_cli.io.textfile import STATE_FILE_LIMIT, read_text

KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")
_ASSIGN_RE = re.compile(
    r"(?P<lead>\ufeff?[ \t]*)(?P<export>export[ \t]+)?(?P<key>[A-Za-z_][A-Za-z0-9_.\-]*)[ \t]*="
)
_TAIL_RE = re.compile(r"[ \t]*(#.*)?\Z")
_PHYSICAL_LINE_RE = re.compile(r"[^\r\n]*(?:\r\n|\n|\r)|[^\r\n]+\Z")
_DOUBLE_ESCAPES = {"n": "\n", "r": "\r", "t": "\t", '"': '"', "\\": "\\", "'": "'", "$": "$"}
_NEEDS_QUOTES_RE = re.compile(r"[\s#'\"`\\]")


@dataclass
class _Entry:
    """One logical line: raw text with its line ending(s); assignments also know their value span."""

    raw: str
    lineno: int
    key: str | None = None
    value: str | None = None  # as the app sees it: unquoted, unescaped
    start: int = 0  # value span in `raw`; inside the quotes for quoted values
    end: int = 0
    quote: str = ""


class EnvFile:
    """A dotenv file held as its exact text, editable one value at a time."""

    def __init__(self, path: Path, text: str) -> None:
        self.path = Path(path)
        self._entries = _parse(text, self.path)
        self._set: dict[str, str] = {}

    @classmethod
    def load(cls, path: Path) -> EnvFile:
        """Read and parse `path`; a missing file names the rollout.yaml key that points at it."""
        try:
            recover_interrupted(path)  # a killed in-place rewrite is finished before the read
            text = read_text(path, limit=STATE_FILE_LIMIT, error=StateFileError, label="env file ")
        except FileNotFoundError:
            raise StateFileError(f"env file {path} not found; check app.env_file in rollout.yaml") from None
        return cls(path, text)

    def get(self, key: str) -> str | None:
        """The value the app would read (last one wins for duplicate keys), or None if absent."""
        entry = self._last(key)
        return entry.value if entry is not None else None

    def keys(self) -> list[str]:
        """Keys in file order, each once."""
        return list(dict.fromkeys(e.key for e in self._entries if e.key is not None))

    def as_dict(self) -> dict[str, str]:
        return {key: value for key, value in ((k, self.get(k)) for k in self.keys()) if value is not None}

    def set(self, key: str, value: str) -> bool:
        """Set `key`, keeping its quoting and `export`; append it when missing. Returns whether it changed."""
        if not KEY_RE.match(key):
            raise InputError(f"cannot set {key!r} in {self.path}: not a valid variable name; use letters, digits and _")
        if not isinstance(value, str):
            raise InputError(f"cannot set {key} in {self.path}: value {value!r} is not text")
        entry = self._last(key)
        if entry is not None and entry.value == value:
            return False
        if entry is not None:
            entry.raw = _rewrite_value(entry, value)
            new_text = self.text()
        else:
            new_text = self._appended(key, value)
        self._entries = _parse(new_text, self.path)
        if self.get(key) != value:
            # Our own encoder produced something the parser reads differently: never write that.
            raise StateFileError(f"{self.path}: cannot write {key}={value!r} so that it reads back the same; set it by hand")
        self._set[key] = value
        return True

    def text(self) -> str:
        return "".join(entry.raw for entry in self._entries)

    def save(self) -> str:
        """Write so the app sees it (atomic_write_text or in place), then check every value reads back as set.

        Returns how it was written (write_app_file's strategy)."""
        how = write_app_file(self.path, self.text())
        reread = EnvFile.load(self.path)
        for key, value in self._set.items():
            got = reread.get(key)
            if got != value:
                raise StateFileError(
                    f"{self.path}: after writing, {key} reads back as {got!r}, not {value!r};"
                    " check whether another process edits this file"
                )
        self._set.clear()
        return how

    def _last(self, key: str) -> _Entry | None:
        for entry in reversed(self._entries):
            if entry.key == key:
                return entry
        return None

    def _appended(self, key: str, value: str) -> str:
        text = self.text()
        first = re.search(r"\r\n|\n|\r", text)
        newline = first.group() if first else "\n"  # the file's own line ending
        if text and not text.endswith(("\n", "\r")):
            text += newline
        encoded = f'"{_escape_double(value)}"' if _NEEDS_QUOTES_RE.search(value) else value
        return f"{text}{key}={encoded}{newline}"


def _parse(text: str, path: Path) -> list[_Entry]:
    physical = _PHYSICAL_LINE_RE.findall(text)
    entries: list[_Entry] = []
    index = 0
    while index < len(physical):
        raw = physical[index]
        lineno = index + 1
        content = _strip_ending(raw)
        bare = content.lstrip("\ufeff \t")
        if not bare or bare.startswith("#"):
            entries.append(_Entry(raw=raw, lineno=lineno))
            index += 1
            continue
        match = _ASSIGN_RE.match(content)
        if match is None:
            raise _parse_error(path, lineno, content)
        key = match.group("key")
        after_eq = match.end()
        rest = content[after_eq:]
        stripped = rest.lstrip(" \t")
        quote = stripped[:1] if stripped[:1] in ("'", '"', "`") else ""
        if not quote:
            value_start = after_eq + (len(rest) - len(stripped))
            comment = re.search(r"(?:^|[ \t])#", rest)
            value_end = after_eq + comment.start() if comment else len(content)
            value = content[value_start:value_end].rstrip(" \t") if value_start < value_end else ""
            if not value:
                value_start = value_end = after_eq  # an empty value is written right after '='
            else:
                value_end = value_start + len(value)
            entries.append(_Entry(raw, lineno, key, value, value_start, value_end, ""))
            index += 1
            continue
        # Quoted value: may continue over the following physical lines until the quote closes.
        open_at = after_eq + (len(rest) - len(stripped)) + 1
        joined = raw
        close = _find_close(joined, open_at, quote)
        last = index
        while close is None and last + 1 < len(physical):
            last += 1
            joined += physical[last]
            close = _find_close(joined, open_at, quote)
        if close is None:
            raise _parse_error(path, lineno, content, f"the {quote} quote never closes")
        tail = _strip_ending(joined[close + 1 :])
        if "\n" in tail or not _TAIL_RE.match(tail):
            raise _parse_error(path, last + 1, _strip_ending(physical[last]), f"text after the closing {quote}")
        inner = joined[open_at:close].replace("\r\n", "\n").replace("\r", "\n")
        value = _unescape_double(inner) if quote == '"' else inner
        entries.append(_Entry(joined, lineno, key, value, open_at, close, quote))
        index = last + 1
    return entries


def _find_close(text: str, start: int, quote: str) -> int | None:
    i = start
    while i < len(text):
        char = text[i]
        if char == "\\" and quote == '"':
            i += 2
            continue
        if char == quote:
            return i
        i += 1
    return None


def _rewrite_value(entry: _Entry, value: str) -> str:
    raw, quote = entry.raw, entry.quote
    if quote == '"':
        return raw[: entry.start] + _escape_double(value) + raw[entry.end :]
    if quote and quote not in value and "\n" not in value and "\r" not in value:
        return raw[: entry.start] + value + raw[entry.end :]
    if not quote and not _NEEDS_QUOTES_RE.search(value):
        return raw[: entry.start] + value + raw[entry.end :]
    # The value cannot be written in the line's style: fall back to double quotes.
    outer_start, outer_end = (entry.start - 1, entry.end + 1) if quote else (entry.start, entry.end)
    return raw[:outer_start] + f'"{_escape_double(value)}"' + raw[outer_end:]


def _escape_double(value: str) -> str:
    return (
        value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    )


def _unescape_double(inner: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(inner):
        char = inner[i]
        if char == "\\" and i + 1 < len(inner) and inner[i + 1] in _DOUBLE_ESCAPES:
            out.append(_DOUBLE_ESCAPES[inner[i + 1]])
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out)


def _strip_ending(raw: str) -> str:
    if raw.endswith("\r\n"):
        return raw[:-2]
    if raw.endswith(("\n", "\r")):
        return raw[:-1]
    return raw


def _parse_error(path: Path, lineno: int, content: str, why: str = "") -> StateFileError:
    # .env files hold secrets and this message may land in CI logs: show the key, never a value.
    content = content.lstrip("\ufeff")
    name, eq, _ = content.partition("=")
    shown = f"{name.strip()[:40]}=..." if eq else content if len(content) <= 12 else content[:12] + "..."
    reason = f" ({why})" if why else ""
    return StateFileError(f"{path} line {lineno}: cannot parse {shown!r}{reason}; fix or remove the line")
