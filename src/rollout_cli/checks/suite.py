"""The smoke suite: prompts with assertions, YAML validated whole before anything is sent.

Adding an assertion type means one function in `ASSERTIONS` and one validator
in `_VALIDATORS`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollout_cli.core.playbooks import find_playbook, parse_duration, read_yaml
from rollout_cli.errors import PlaybookError
from rollout_cli.gateway.api import Completion

SUITE_FILE = "smoke.yaml"
DEFAULT_MAX_TOKENS = 64
DEFAULT_TIMEOUT_S = 30.0

_TOP_KEYS = ("kind", "description", "defaults", "cases", "drill")
_DEFAULT_KEYS = ("max_tokens", "timeout")
_CASE_KEYS = ("name", "prompt", "max_tokens", "timeout", "assert", "stream")
_DRILL_KEYS = ("enabled", "prompt", "max_tokens", "timeout")


@dataclass(frozen=True)
class Case:
    name: str
    prompt: str
    max_tokens: int
    timeout_s: float
    assertions: dict[str, Any] = field(default_factory=dict)
    stream: bool = False  # ask for SSE: an error event mid-stream (HTTP 200) is then seen as broken


@dataclass(frozen=True)
class Drill:
    """The fallback drill: the primary made to fail, the next model in the chain must answer."""

    enabled: bool = True
    prompt: str = "ping: reply with the single word pong"
    max_tokens: int = 16
    timeout_s: float = DEFAULT_TIMEOUT_S


@dataclass(frozen=True)
class Suite:
    cases: tuple[Case, ...]
    drill: Drill = field(default_factory=Drill)
    description: str = ""
    source: Path | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "source": str(self.source) if self.source else None,
            "cases": [c.name for c in self.cases],
            "drill": self.drill.enabled,
        }


# --- assertions: (completion, argument) -> failure reason, or None when it holds -----------


def _contains(seen: Completion, wanted: Any) -> str | None:
    content = (seen.content or "").lower()
    missing = [w for w in ([wanted] if isinstance(wanted, str) else wanted) if w.lower() not in content]
    return f"answer lacks {', '.join(repr(m) for m in missing)}" if missing else None


def _regex(seen: Completion, pattern: str) -> str | None:
    return None if re.search(pattern, seen.content or "") else f"answer does not match /{pattern}/"


def _json(seen: Completion, spec: Any) -> str | None:
    text = _strip_fence(seen.content or "")
    try:
        value = json.loads(text)
    except ValueError:
        return f"answer is not valid JSON: {text[:60]!r}"
    required = spec.get("required", []) if isinstance(spec, dict) else []
    if required and not isinstance(value, dict):
        return f"answer is JSON {type(value).__name__}, not an object with {', '.join(required)}"
    missing = [key for key in required if key not in value]
    return f"JSON answer lacks key(s) {', '.join(missing)}" if missing else None


def _max_latency_ms(seen: Completion, limit: float) -> str | None:
    return f"latency {seen.latency_ms:.0f} ms > {limit:g} ms" if seen.latency_ms > limit else None


def _min_tokens(seen: Completion, minimum: int) -> str | None:
    tokens = seen.usage.get("completion_tokens")
    if not isinstance(tokens, int):
        tokens = len((seen.content or "").split())  # no usage reported: words are a floor
    return f"{tokens} completion token(s) < {minimum}" if tokens < minimum else None


def _strip_fence(text: str) -> str:
    """Models often wrap JSON in a ```json fence; the JSON inside is what counts."""
    match = re.fullmatch(r"\s*```(?:json)?\s*(.*?)\s*```\s*", text, re.DOTALL)
    return match.group(1) if match else text.strip()


ASSERTIONS: dict[str, Callable[[Completion, Any], str | None]] = {
    "contains": _contains,
    "regex": _regex,
    "json": _json,
    "max_latency_ms": _max_latency_ms,
    "min_tokens": _min_tokens,
}


def evaluate(case: Case, seen: Completion) -> list[str]:
    """Every failed assertion's reason; empty when all hold."""
    return [reason for name, arg in case.assertions.items() if (reason := ASSERTIONS[name](seen, arg))]


# --- loading -------------------------------------------------------------------------------


def suite_path(override: Path | None, playbooks_dir: Path | None) -> Path:
    """--suite FILE, else the workspace's playbooks/smoke.yaml, else the packaged one."""
    if override is not None:
        if not override.is_file():
            raise PlaybookError(f"smoke suite {override} does not exist; pass an existing --suite FILE")
        return override
    return find_playbook(SUITE_FILE, playbooks_dir)


def load_suite(path: Path) -> Suite:
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise PlaybookError(f"{path}: expected a mapping with 'cases:' at the top")
    _no_unknown(path, "", raw, _TOP_KEYS)
    if raw.get("kind", "smoke") != "smoke":
        raise PlaybookError(f"{path}: 'kind' is {raw.get('kind')!r}; a smoke suite has kind: smoke")
    defaults = raw.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise PlaybookError(f"{path}: 'defaults' must be a mapping")
    _no_unknown(path, "defaults", defaults, _DEFAULT_KEYS)
    max_tokens = _positive_int(path, "defaults.max_tokens", defaults.get("max_tokens", DEFAULT_MAX_TOKENS))
    timeout = _duration(path, "defaults.timeout", defaults.get("timeout", DEFAULT_TIMEOUT_S))
    cases_raw = raw.get("cases")
    if not isinstance(cases_raw, list) or not cases_raw:
        raise PlaybookError(f"{path}: 'cases' must be a non-empty list of cases")
    cases: list[Case] = []
    for index, item in enumerate(cases_raw):
        cases.append(_case(path, index, item, max_tokens, timeout))
    names = [c.name for c in cases]
    duplicate = next((n for n in names if names.count(n) > 1), None)
    if duplicate:
        raise PlaybookError(f"{path}: case name '{duplicate}' is used twice; names must be unique")
    return Suite(tuple(cases), _drill(path, raw.get("drill")), str(raw.get("description") or ""), path)


def _case(path: Path, index: int, item: Any, max_tokens: int, timeout: float) -> Case:
    where = f"cases[{index}]"
    if not isinstance(item, dict):
        raise PlaybookError(f"{path}: {where} must be a mapping with name, prompt and assert")
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise PlaybookError(f"{path}: {where} needs a non-empty string 'name'")
    where = f"case '{name}' ({where})"
    _no_unknown(path, where, item, _CASE_KEYS)
    prompt = item.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise PlaybookError(f"{path}: {where}: 'prompt' must be a non-empty string")
    assertions = item.get("assert")
    if not isinstance(assertions, dict) or not assertions:
        raise PlaybookError(
            f"{path}: {where}: 'assert' must be a mapping of at least one of {', '.join(ASSERTIONS)}"
        )
    checked = {}
    for kind, arg in assertions.items():
        if kind not in ASSERTIONS:
            raise PlaybookError(
                f"{path}: {where}: unknown assertion '{kind}' (known: {', '.join(ASSERTIONS)})"
            )
        checked[kind] = _VALIDATORS[kind](f"{path}: {where}: assert.{kind}", arg)
    return Case(
        name=name,
        prompt=prompt,
        max_tokens=_positive_int(path, f"{where}: max_tokens", item.get("max_tokens", max_tokens)),
        timeout_s=_duration(path, f"{where}: timeout", item.get("timeout", timeout)),
        assertions=checked,
        stream=_flag(path, f"{where}: stream", item.get("stream", False)),
    )


def _flag(path: Path, where: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise PlaybookError(f"{path}: {where} must be true or false, got {value!r}")
    return value


def _drill(path: Path, raw: Any) -> Drill:
    if raw is None:
        return Drill()
    if isinstance(raw, bool):
        return Drill(enabled=raw)
    if not isinstance(raw, dict):
        raise PlaybookError(f"{path}: 'drill' must be a mapping (enabled, prompt, max_tokens, timeout) or a boolean")
    _no_unknown(path, "drill", raw, _DRILL_KEYS)
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise PlaybookError(f"{path}: drill.enabled must be true or false, got {enabled!r}")
    prompt = raw.get("prompt", Drill.prompt)
    if not isinstance(prompt, str) or not prompt.strip():
        raise PlaybookError(f"{path}: drill.prompt must be a non-empty string")
    return Drill(
        enabled=enabled,
        prompt=prompt,
        max_tokens=_positive_int(path, "drill.max_tokens", raw.get("max_tokens", Drill.max_tokens)),
        timeout_s=_duration(path, "drill.timeout", raw.get("timeout", Drill.timeout_s)),
    )


def _no_unknown(path: Path, where: str, raw: dict[str, Any], known: tuple[str, ...]) -> None:
    unknown = sorted(str(k) for k in set(raw) - set(known))
    if unknown:
        prefix = f"{where}: " if where else ""
        raise PlaybookError(f"{path}: {prefix}unknown key '{unknown[0]}' (known: {', '.join(known)})")


def _positive_int(path: Path, where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise PlaybookError(f"{path}: {where} must be a whole number >= 1, got {value!r}")
    return value


def _duration(path: Path, where: str, value: Any) -> float:
    seconds = parse_duration(value, f"{path}: {where}")
    if seconds <= 0:
        raise PlaybookError(f"{path}: {where} must be more than 0 s, got {value!r}")
    return seconds


def _strings(where: str, value: Any) -> list[str] | str:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, list) and value and all(isinstance(v, str) and v for v in value):
        return list(value)
    raise PlaybookError(f"{where} must be a non-empty string or list of strings, got {value!r}")


def _pattern(where: str, value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise PlaybookError(f"{where} must be a regular expression string, got {value!r}")
    try:
        re.compile(value)
    except re.error as exc:
        raise PlaybookError(f"{where}: /{value}/ is not a valid regular expression ({exc})") from None
    return value


def _json_spec(where: str, value: Any) -> Any:
    if value is True:
        return {}
    if isinstance(value, dict):
        unknown = sorted(set(value) - {"required"})
        if unknown:
            raise PlaybookError(f"{where}: unknown key '{unknown[0]}' (known: required)")
        required = value.get("required", [])
        if not isinstance(required, list) or not all(isinstance(k, str) for k in required):
            raise PlaybookError(f"{where}.required must be a list of key names, got {required!r}")
        return {"required": list(required)}
    raise PlaybookError(f"{where} must be true or {{required: [keys]}}, got {value!r}")


def _number(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise PlaybookError(f"{where} must be a number > 0, got {value!r}")
    return float(value)


def _count(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise PlaybookError(f"{where} must be a whole number >= 0, got {value!r}")
    return value


_VALIDATORS: dict[str, Callable[[str, Any], Any]] = {
    "contains": _strings,
    "regex": _pattern,
    "json": _json_spec,
    "max_latency_ms": _number,
    "min_tokens": _count,
}
