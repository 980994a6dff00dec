"""The app's rollout percentage as stored in its flags file: env, json, yaml or flagd.

Level-1 rollback has a 30 s budget and runs against files the operator owns,
so every write is a targeted text edit of the one value (everything else stays
byte for byte), checked by re-parsing before the write and by reading the file
back after it.
"""

from __future__ import annotations

import copy
import json
import math
import re
from abc import ABC, abstractmethod
from json.decoder import scanstring  # type: ignore[attr-defined]  # the C scanner json itself uses; typeshed omits it
from json.scanner import NUMBER_RE
from pathlib import Path
from typing import Any

import yaml

from rollout_cli.errors import InputError, StateFileError
from rollout_cli.io.atomic import recover_interrupted, write_app_file
from rollout_cli.io.dotenv import EnvFile
from rollout_cli.io.textfile import STATE_FILE_LIMIT, read_text
from rollout_cli.io.yamlfile import load_yaml

FORMATS = ("env", "json", "yaml", "flagd")
MAX_FLAGD_WEIGHT = 1_000_000  # flagd weights are relative; beyond this, percentages stop being exact arithmetic


def validate_percentage(value: object) -> int:
    """A rollout percentage from an option or a file: a whole number 0..100."""
    number: int | None = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif (isinstance(value, float) and value.is_integer()) or (isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value)):
        number = int(value)
    if number is None:
        raise InputError(f"percentage {value!r} is not a whole number; use 0..100")
    if not 0 <= number <= 100:
        raise InputError(f"percentage {number} is outside 0..100")
    return number


def open_flags(path: Path, fmt: str, key: str) -> FlagStore:
    """Open the flags file at `path` in format `fmt`; `key` is the variable, dotted path or flag key."""
    store_class = _STORES.get(fmt)
    if store_class is None:
        raise InputError(f"unknown flags format {fmt!r}; use one of: {', '.join(FORMATS)} (app.flags_format)")
    if not key:
        raise InputError(f"no flag key given for {path}; set app.flag_key in rollout.yaml")
    try:
        recover_interrupted(path)  # a killed in-place rewrite is finished before the read
        text = read_text(path, limit=STATE_FILE_LIMIT, error=StateFileError, label="flags file ")
    except FileNotFoundError:
        raise StateFileError(f"flags file {path} not found; check app.flags_file in rollout.yaml") from None
    return store_class(Path(path), key, text)


class FlagStore(ABC):
    """One flags file and the one value in it that holds the rollout percentage."""

    fmt: str = ""

    def __init__(self, path: Path, key: str, text: str) -> None:
        self.path = path
        self.key = key
        self._text = text
        try:
            self._load(text)
        except RecursionError:  # json.loads and our span scanner recurse once per level
            raise StateFileError(f"{path} is nested too deeply to read; flatten it") from None

    @abstractmethod
    def _load(self, text: str) -> None:
        """Parse `text` and locate the value; raise StateFileError when it is not there."""

    @abstractmethod
    def percentage(self) -> int:
        """The share of requests that go through the gateway, 0..100."""

    @abstractmethod
    def _with_percentage(self, percentage: int) -> str:
        """The file's text with only the value changed, verified by re-parsing."""

    def enabled(self) -> bool | None:
        """Whether the flag is on at all; None for formats that have no such switch."""
        return None

    def set_percentage(self, percentage: int) -> bool:
        """Change the percentage in memory (call save() to write). Returns whether it changed."""
        percentage = validate_percentage(percentage)
        if percentage == self._current():
            return False
        new_text = self._with_percentage(percentage)
        self._text = new_text
        self._load(new_text)
        if self.percentage() != percentage:
            raise StateFileError(f"{self.path}: could not set {self.key} to {percentage} safely; edit the file by hand")
        return True

    def text(self) -> str:
        return self._text

    def _current(self) -> int | None:
        return self.percentage()

    def save(self) -> str:
        """Write so the app sees it, then read the file back and check it holds what we wrote; returns how."""
        expected = self.percentage()
        how = write_app_file(self.path, self._text)
        reread = open_flags(self.path, self.fmt, self.key)
        got = reread.percentage()
        if got != expected:
            raise StateFileError(
                f"{self.path}: after writing, {self.key} reads back as {got}, not {expected};"
                " check whether another process edits this file"
            )
        if reread.text() != self._text:
            raise StateFileError(
                f"{self.path}: after writing, the file differs from what was written;"
                " check whether another process edits this file"
            )
        return how

    def _stored(self, value: object, where: str) -> int:
        try:
            return validate_percentage(value)
        except InputError:
            raise StateFileError(
                f"{self.path}: {where} holds {value!r}, not a whole percentage 0..100; fix the file"
            ) from None


class EnvFlagStore(FlagStore):
    """A dotenv file; `key` names the variable holding the percentage."""

    fmt = "env"

    def _load(self, text: str) -> None:
        self._env = EnvFile(self.path, text)

    def percentage(self) -> int:
        value = self._env.get(self.key)
        if value is None:
            raise StateFileError(f"{self.path} has no {self.key}; add {self.key}=0 or check app.flag_key")
        return self._stored(value, self.key)

    def _current(self) -> int | None:
        # A missing variable is appended by set_percentage (e.g. a rollback to 0 on a fresh .env).
        return None if self._env.get(self.key) is None else self.percentage()

    def _with_percentage(self, percentage: int) -> str:
        self._env.set(self.key, str(percentage))
        return self._env.text()


class JsonFlagStore(FlagStore):
    """A JSON file; `key` is a dotted path to a number, e.g. features.litellm.rollout."""

    fmt = "json"

    def _load(self, text: str) -> None:
        self._doc = _parse_json(text, self.path)
        self._value = _dotted_get(self._doc, self.key, self.path)
        self._span = _json_span(text, self.key.split("."))

    def percentage(self) -> int:
        return self._stored(self._value, self.key)

    def _with_percentage(self, percentage: int) -> str:
        token = json.dumps(str(percentage)) if isinstance(self._value, str) else str(percentage)
        new_value: Any = str(percentage) if isinstance(self._value, str) else percentage
        new_text = _splice(self._text, [(self._span, token)])
        expected = copy.deepcopy(self._doc)
        _dotted_set(expected, self.key, new_value)
        if _parse_json(new_text, self.path) != expected:
            raise StateFileError(f"{self.path}: cannot edit {self.key} without touching other values; edit the file by hand")
        return new_text


class YamlFlagStore(FlagStore):
    """Block- or flow-style YAML; `key` is a dotted path to a scalar. Comments survive untouched."""

    fmt = "yaml"

    def _load(self, text: str) -> None:
        self._doc = _parse_yaml(text, self.path)
        self._value = _dotted_get(self._doc, self.key, self.path)
        if isinstance(self._value, (dict, list)):
            raise StateFileError(f"{self.path}: {self.key} is a {type(self._value).__name__}, not a number; check app.flag_key")
        self._span, self._quote = _yaml_scalar_span(text, self.key, self.path)

    def percentage(self) -> int:
        return self._stored(self._value, self.key)

    def _with_percentage(self, percentage: int) -> str:
        start, end = self._span
        if self._quote:
            token = f"{self._quote}{percentage}{self._quote}"
            new_value: Any = str(percentage)
        else:
            token = str(percentage)
            new_value = percentage
        new_text = _splice(self._text, [((start, end), token)])
        expected = copy.deepcopy(self._doc)
        _dotted_set(expected, self.key, new_value)
        if _parse_yaml(new_text, self.path) != expected:
            raise StateFileError(
                f"{self.path}: cannot edit {self.key} safely (an anchor, alias or merge shares it); edit the file by hand"
            )
        return new_text


class FlagdFlagStore(FlagStore):
    """OpenFeature flagd JSON: the percentage is the weight of the on-variant in `targeting.fractional`."""

    fmt = "flagd"

    def _load(self, text: str) -> None:
        doc = _parse_json(text, self.path)
        flags = doc.get("flags") if isinstance(doc, dict) else None
        if not isinstance(flags, dict):
            raise StateFileError(f"{self.path} has no \"flags\" object, so it is not a flagd file; check app.flags_format")
        flag = flags.get(self.key)
        if not isinstance(flag, dict):
            known = ", ".join(flags) or "none"
            raise StateFileError(f"flag {self.key!r} not found in {self.path} (flags: {known}); check app.flag_key")
        where = f"flag {self.key!r} in {self.path}"
        targeting = flag.get("targeting")
        fractional = targeting.get("fractional") if isinstance(targeting, dict) else None
        if not isinstance(fractional, list):
            raise StateFileError(
                f"{where} has no top-level targeting.fractional rule, so it has no rollout percentage;"
                ' use "targeting": {"fractional": [["on", 0], ["off", 100]]}'
            )
        variants = flag.get("variants")
        variants = variants if isinstance(variants, dict) else {}
        on_name = next((name for name, value in variants.items() if value is True), "on")
        off_name = next((name for name, value in variants.items() if value is False), "off")
        fractional_path = ["flags", self.key, "targeting", "fractional"]
        items = _json_array_items(text, _json_span(text, fractional_path)[0])
        weights: dict[str, tuple[float, tuple[int, int]]] = {}
        for element, (start, _end) in zip(fractional, items, strict=False):
            if not isinstance(element, list):
                continue  # the bucketing expression, e.g. {"var": "targetingKey"}: kept as is
            if (
                len(element) != 2
                or element[0] not in (on_name, off_name)
                or element[0] in weights
                or isinstance(element[1], bool)
                or not isinstance(element[1], (int, float))
            ):
                raise StateFileError(
                    f"{where}: fractional buckets must be exactly [{on_name!r}, weight] and [{off_name!r}, weight],"
                    f" found {json.dumps(element)}; fix the file"
                )
            weight_span = _json_array_items(text, start)[1]
            weights[element[0]] = (element[1], weight_span)
        if set(weights) != {on_name, off_name}:
            raise StateFileError(
                f"{where}: fractional must list both {on_name!r} and {off_name!r}; add the missing one with weight 0"
            )
        for name, (weight, _span) in weights.items():
            # json.loads accepts NaN, Infinity and 1e400 (= inf); none is a share of traffic.
            if not math.isfinite(weight) or not 0 <= weight <= MAX_FLAGD_WEIGHT:
                raise StateFileError(
                    f"{where}: fractional weight of {name!r} is {json.dumps(weight)}, not a number"
                    f" from 0 to {MAX_FLAGD_WEIGHT}; fix the file"
                )
        total = weights[on_name][0] + weights[off_name][0]
        if total <= 0:
            raise StateFileError(f"{where}: fractional weights add up to {total}; give them a positive total")
        self._doc = doc
        self._flag = flag
        self._on, self._off = on_name, off_name
        self._weights = weights
        self._total = total

    def percentage(self) -> int:
        return int(self._weights[self._on][0] * 100 // self._total)

    def enabled(self) -> bool | None:
        return self._flag.get("state") == "ENABLED"

    def _with_percentage(self, percentage: int) -> str:
        new_weights = {self._on: percentage, self._off: 100 - percentage}
        edits = [(self._weights[name][1], str(weight)) for name, weight in new_weights.items()]
        new_text = _splice(self._text, edits)
        expected = copy.deepcopy(self._doc)
        for element in expected["flags"][self.key]["targeting"]["fractional"]:
            if isinstance(element, list):
                element[1] = new_weights[element[0]]
        if _parse_json(new_text, self.path) != expected:
            raise StateFileError(f"{self.path}: cannot edit flag {self.key!r} without touching other values; edit it by hand")
        return new_text


_STORES: dict[str, type[FlagStore]] = {
    "env": EnvFlagStore,
    "json": JsonFlagStore,
    "yaml": YamlFlagStore,
    "flagd": FlagdFlagStore,
}


# --- parsing helpers -------------------------------------------------------


def _parse_json(text: str, path: Path) -> Any:
    # A BOM is legal in a file but not for json.loads; positions below count it, so we only skip it here.
    try:
        return json.loads(text[1:] if text.startswith("\ufeff") else text)
    except json.JSONDecodeError as exc:
        line, column = exc.lineno, exc.colno
        raise StateFileError(f"{path} is not valid JSON (line {line}, column {column}: {exc.msg}); fix the file") from None


def _parse_yaml(text: str, path: Path) -> Any:
    try:
        return load_yaml(text, str(path), error=StateFileError)
    except yaml.YAMLError as exc:
        raise StateFileError(f"{path} is not valid YAML ({_yaml_where(exc)}); fix the file") from None


def _yaml_where(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None) or str(exc).splitlines()[0]
    if mark is None:
        return str(problem)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


def _dotted_get(doc: Any, dotted: str, path: Path) -> Any:
    node = doc
    walked: list[str] = []
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            at = ".".join(walked) or "the top level"
            raise StateFileError(f"{path} has no key {dotted!r} (no {part!r} under {at}); check app.flag_key")
        node = node[part]
        walked.append(part)
    return node


def _dotted_set(doc: Any, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = doc
    for part in parts[:-1]:
        node = node[part]
    node[parts[-1]] = value


def _splice(text: str, edits: list[tuple[tuple[int, int], str]]) -> str:
    for (start, end), token in sorted(edits, key=lambda edit: edit[0][0], reverse=True):
        text = text[:start] + token + text[end:]
    return text


# JSON positions. The text has already passed json.loads, so the scanner can trust its structure.

_JSON_WS = re.compile(r"[ \t\n\r]*")


def _skip_ws(text: str, index: int) -> int:
    return _JSON_WS.match(text, index).end()  # type: ignore[union-attr]  # [ \t\n\r]* matches anywhere, if only ""


def _json_value_end(text: str, index: int) -> int:
    char = text[index]
    if char == '"':
        return scanstring(text, index + 1)[1]
    if char == "{":
        members = _json_object_members(text, index)
        return _skip_ws(text, members[-1][2]) + 1 if members else _skip_ws(text, index + 1) + 1
    if char == "[":
        items = _json_array_items(text, index)
        return _skip_ws(text, items[-1][1]) + 1 if items else _skip_ws(text, index + 1) + 1
    for literal in ("true", "false", "null", "NaN", "Infinity", "-Infinity"):
        if text.startswith(literal, index):
            return index + len(literal)
    match = NUMBER_RE.match(text, index)
    if match is None:
        raise ValueError(f"no JSON value at offset {index}")
    return match.end()


def _json_object_members(text: str, index: int) -> list[tuple[str, int, int]]:
    """(key, value start, value end) for each member of the object starting at `index`."""
    members: list[tuple[str, int, int]] = []
    index = _skip_ws(text, index + 1)
    if text[index] == "}":
        return members
    while True:
        key, index = scanstring(text, index + 1)
        index = _skip_ws(text, _skip_ws(text, index) + 1)  # past ':'
        end = _json_value_end(text, index)
        members.append((key, index, end))
        index = _skip_ws(text, end)
        if text[index] != ",":
            return members
        index = _skip_ws(text, index + 1)


def _json_array_items(text: str, index: int) -> list[tuple[int, int]]:
    items: list[tuple[int, int]] = []
    index = _skip_ws(text, index + 1)
    if text[index] == "]":
        return items
    while True:
        end = _json_value_end(text, index)
        items.append((index, end))
        index = _skip_ws(text, end)
        if text[index] != ",":
            return items
        index = _skip_ws(text, index + 1)


def _json_span(text: str, parts: list[str]) -> tuple[int, int]:
    """Where the value at `parts` sits in `text`; the last duplicate key wins, as in json.loads."""
    start = _skip_ws(text, 1 if text.startswith("\ufeff") else 0)
    end = _json_value_end(text, start)
    for part in parts:
        matches = [(s, e) for key, s, e in _json_object_members(text, start) if key == part]
        start, end = matches[-1]
    return start, end


# YAML positions come from PyYAML's composer, which marks where each node starts and ends.

_YAML_NUMBER = re.compile(r"[-+]?[0-9][0-9_]*(?:\.[0-9]*)?\Z")


def _yaml_scalar_span(text: str, dotted: str, path: Path) -> tuple[tuple[int, int], str]:
    unsafe = f"{path}: cannot edit {dotted} safely"
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    for part in dotted.split("."):
        if not isinstance(node, yaml.MappingNode):
            raise StateFileError(f"{unsafe} (not a plain mapping); edit the file by hand")
        matches = [value for key, value in node.value if isinstance(key, yaml.ScalarNode) and key.value == part]
        if not matches:
            raise StateFileError(f"{unsafe} (it comes from a merge key or alias); edit the file by hand")
        node = matches[-1]
    if not isinstance(node, yaml.ScalarNode):
        raise StateFileError(f"{unsafe} (not a scalar); edit the file by hand")
    start, end = node.start_mark.index, node.end_mark.index
    token = text[start:end]
    if node.style in ("'", '"') and token[:1] == token[-1:] == node.style and _YAML_NUMBER.match(token[1:-1]):
        return (start, end), node.style
    if node.style is None and _YAML_NUMBER.match(token):
        return (start, end), ""
    # Anchors, tags, block or multi-line scalars: a text edit there could change more than the value.
    raise StateFileError(f"{unsafe} (its value is written as {token!r}); write it as a plain number, e.g. 10")
