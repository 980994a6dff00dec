"""Playbooks as data: YAML validated whole into typed steps before any step runs.

Adding a step type means one `Step` subclass and one line in `STEP_TYPES`
(see `steps.py`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rollout_cli.core.playbooks import parse_duration, read_yaml
from rollout_cli.errors import PlaybookError, RolloutError

if TYPE_CHECKING:
    from rollout_cli.playbook.context import StepContext

@dataclass
class Check:
    """One precondition, as `--drill` reports it."""

    name: str
    ok: bool
    detail: str
    exit_code: int = 0


@dataclass
class Preview:
    """What a step would do, as `--dry-run` reports it."""

    detail: str
    diff: str | None = None
    changes: bool = True  # False: already as the step wants it


@dataclass
class Outcome:
    """What a step did."""

    status: str  # ok | unchanged | skipped
    detail: str
    changes: list[dict[str, Any]] = field(default_factory=list)


def unexpected(exc: Exception) -> str:
    """One line for an error rollout did not expect: its kind only, never its text (it may quote a secret)."""
    return f"unexpected error ({type(exc).__name__}): a bug in rollout; please report it"


def checked(name: str, probe: Callable[[], object]) -> Check:
    """Run one precondition probe; its RolloutError becomes a failed check, a string it returns the detail."""
    try:
        detail = probe()
    except RolloutError as exc:
        return Check(name, False, str(exc), int(exc.exit_code))
    except Exception as exc:  # a bug in a probe fails its check, not the whole drill
        return Check(name, False, unexpected(exc), 1)
    return Check(name, True, detail if isinstance(detail, str) and detail else "ok")


class PartialFailure(RolloutError):
    """A step that failed part-way: what it changed before the failure took effect and is reported.

    Raised by a step with the error that stopped it (its message and exit
    code) and the changes already made, e.g. the commits a level-4 revert
    reverted before the next one conflicted.
    """

    def __init__(self, cause: RolloutError, changes: list[dict[str, Any]], done: str) -> None:
        super().__init__(cause.message)
        self.exit_code = cause.exit_code
        self.changes = changes
        self.done = done


@dataclass
class Step:
    """Base of every step type; subclasses are dataclasses whose fields are the YAML keys."""

    type: ClassVar[str] = ""
    stops_by_default: ClassVar[bool] = False

    name: str | None = field(default=None, kw_only=True)
    stop_on_failure: bool | None = field(default=None, kw_only=True)

    @property
    def stops_on_failure(self) -> bool:
        """A failure here makes going on unsafe: later steps and levels are skipped."""
        return self.stops_by_default if self.stop_on_failure is None else self.stop_on_failure

    def validate(self, where: str) -> None:
        """Checks across fields; types are checked by the loader."""

    def describe(self, ctx: StepContext) -> str:
        raise NotImplementedError

    def preview(self, ctx: StepContext) -> Preview:
        return Preview(self.describe(ctx))

    def preconditions(self, ctx: StepContext) -> list[Check]:
        return []

    def read_inputs(self, ctx: StepContext) -> None:
        """Read and parse the files run() will edit; InputError when one is missing or malformed."""

    def run(self, ctx: StepContext) -> Outcome:
        raise NotImplementedError


@dataclass
class Playbook:
    name: str
    level: int
    budget_s: float
    steps: list[Step]
    source: Path


# --- loading ----------------------------------------------------------------


def load_rollback_playbook(path: Path, level: int, registry: dict[str, type[Step]]) -> Playbook:
    raw = read_yaml(path)
    if not isinstance(raw, dict):
        raise PlaybookError(f"{path}: expected a mapping with level, name, budget and steps")
    known = {"kind", "level", "name", "budget", "steps", "description"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise PlaybookError(f"{path}: unknown key '{unknown[0]}' (known: {', '.join(sorted(known))})")
    if raw.get("kind", "rollback") != "rollback":
        raise PlaybookError(f"{path}: kind is {raw.get('kind')!r}, expected 'rollback'")
    if raw.get("level") != level:
        raise PlaybookError(f"{path}: level is {raw.get('level')!r}, expected {level}")
    if "budget" not in raw:
        raise PlaybookError(f"{path}: missing required key 'budget' (e.g. budget: 30s)")
    budget = parse_duration(raw["budget"], f"{path}: budget")
    steps_raw = raw.get("steps")
    if not isinstance(steps_raw, list) or not steps_raw:
        raise PlaybookError(f"{path}: 'steps' must be a non-empty list")
    steps = [load_step(s, f"{path}: step {i}", registry) for i, s in enumerate(steps_raw, 1)]
    return Playbook(
        name=str(raw.get("name") or f"level {level}"),
        level=level,
        budget_s=budget,
        steps=steps,
        source=path,
    )


def load_step(raw: Any, where: str, registry: dict[str, type[Step]]) -> Step:
    if not isinstance(raw, dict):
        raise PlaybookError(f"{where}: expected a mapping with 'type', got {raw!r}")
    kind = raw.get("type")
    if kind not in registry:
        raise PlaybookError(
            f"{where}: unknown step type {kind!r} (known: {', '.join(sorted(registry))})"
        )
    cls = registry[kind]
    where = f"{where} ({kind})"
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(raw) - set(fields) - {"type"})
    if unknown:
        raise PlaybookError(
            f"{where}: unknown field '{unknown[0]}' (known: {', '.join(sorted(fields))})"
        )
    values: dict[str, Any] = {}
    for name, fdef in fields.items():
        required = fdef.default is dataclasses.MISSING and fdef.default_factory is dataclasses.MISSING
        if name not in raw or raw[name] is None:
            if required:
                raise PlaybookError(f"{where}: missing required field '{name}'")
            continue
        values[name] = _coerce(raw[name], str(fdef.type), f"{where}: field '{name}'")
    step = cls(**values)
    step.validate(where)
    return step


def _coerce(value: Any, annotation: str, where: str) -> Any:
    kinds = [part.strip() for part in annotation.split("|") if part.strip() != "None"]
    kind = kinds[0] if kinds else "Any"
    if kind == "bool":
        if isinstance(value, bool):
            return value
        raise PlaybookError(f"{where} must be true or false, got {value!r}")
    if kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise PlaybookError(f"{where} must be a whole number, got {value!r}")
    if kind == "float":  # durations
        return parse_duration(value, where)
    if kind == "str":
        if isinstance(value, str) and value:
            return value
        raise PlaybookError(f"{where} must be a non-empty string, got {value!r}")
    if kind in ("list[str]", "tuple[str, ...]"):
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return tuple(value) if kind.startswith("tuple") else list(value)
        raise PlaybookError(f"{where} must be a list of strings, got {value!r}")
    if kind == "dict[str, str]":
        if isinstance(value, dict) and all(
            isinstance(v, (str, int, bool)) and isinstance(k, str) for k, v in value.items()
        ):
            return {k: _scalar(v) for k, v in value.items()}
        raise PlaybookError(f"{where} must be a mapping of names to strings or numbers, got {value!r}")
    return value


def _scalar(value: str | int | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
