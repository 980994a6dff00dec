"""The stage plan (`playbooks/rollout.yaml`): stages, soak time and gate thresholds, as data."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollout_cli.core.playbooks import find_playbook, parse_duration, read_yaml
from rollout_cli.errors import PlaybookError

PLAN_FILE = "rollout.yaml"


@dataclass(frozen=True)
class Gates:
    gateway_healthy: bool = True
    primary_healthy: bool = True
    min_healthy_models: int = 4
    smoke: bool = True
    cost_free_only: bool = True
    max_error_rate: float = 0.01
    max_added_latency_p95_ms: float = 10.0
    min_requests: int = 20
    env_flags_agree: bool = True
    catalog: bool = True  # every model listed, free and capable in OpenRouter's /models
    max_fallback_rate: float = 0.05  # share of app requests served by a fallback over the window
    # The gateway path's error rate against the app's direct path over the same window (Newcombe's
    # interval for the difference); decides the error rate where the app's metrics exist.
    error_rate_vs_direct_margin: float | None = None
    # How many of a swarm service's replicas must be ready (gateway.runtime: swarm); None: all it desires.
    min_ready_replicas: int | None = None


OPERATORS = ("<=", ">=", "==", "!=", "<", ">")


@dataclass(frozen=True)
class Condition:
    """`< 0.05`: a comparison a custom gate's scalar result is held to."""

    op: str
    bound: float

    def holds(self, value: float) -> bool:
        return {
            "<=": value <= self.bound, ">=": value >= self.bound, "==": value == self.bound,
            "!=": value != self.bound, "<": value < self.bound, ">": value > self.bound,
        }[self.op]

    def __str__(self) -> str:
        return f"{self.op} {self.bound:g}"


@dataclass(frozen=True)
class CustomGate:
    """A team's own gate: a PromQL query over the window (`{window}`), judged on its scalar result."""

    name: str
    query: str
    pass_if: Condition | None = None
    fail_if: Condition | None = None

    def expression(self, window_s: int) -> str:
        return self.query.replace("{window}", f"{window_s}s")


@dataclass(frozen=True)
class AutopilotSettings:
    """`autopilot:` of the plan: how `rollout autopilot` runs the stages unattended (docs/PLAYBOOKS.md)."""

    interval_s: float = 30.0  # between ticks
    failure_threshold: int = 2  # consecutive breached ticks before `on_breach` runs (Flagger's threshold)
    on_breach: int = 1  # the rollback level run on a breach
    approve_before: tuple[int, ...] = ()  # stages entered only after `rollout approve`


@dataclass(frozen=True)
class StagePlan:
    stages: tuple[int, ...] = (10, 50, 100)
    soak_s: float = 48 * 3600
    soak_overrides: dict[int, float] = field(default_factory=dict)
    gates: Gates = field(default_factory=Gates)
    on_post_check_failure: int | None = 1  # rollback level, or None to only report
    source: Path | None = None
    custom_gates: tuple[CustomGate, ...] = ()
    autopilot: AutopilotSettings = field(default_factory=AutopilotSettings)

    def soak_for(self, stage: int) -> float:
        return self.soak_overrides.get(stage, self.soak_s)

    def next_stage(self, current: int) -> int | None:
        """The first stage above `current`, or None at 100%."""
        return next((s for s in self.stages if s > current), None)


_GATE_TYPES: dict[str, type] = {
    "gateway_healthy": bool, "primary_healthy": bool, "min_healthy_models": int, "smoke": bool,
    "cost_free_only": bool, "max_error_rate": float, "max_added_latency_p95_ms": float,
    "min_requests": int, "env_flags_agree": bool, "catalog": bool, "max_fallback_rate": float,
}
_TOP = {"kind", "stages", "soak", "soak_overrides", "gates", "on_post_check_failure", "description", "custom_gates",
        "autopilot"}
_AUTOPILOT_KEYS = ("interval", "failure_threshold", "on_breach", "approve_before")


def load_plan(override_dir: Path | None) -> StagePlan:
    path = find_playbook(PLAN_FILE, override_dir)
    return parse_plan(read_yaml(path), path)


def parse_plan(raw: Any, path: Path) -> StagePlan:
    def bad(message: str) -> PlaybookError:
        return PlaybookError(f"{path}: {message}")

    if not isinstance(raw, dict):
        raise bad("expected a mapping with stages, soak and gates")
    unknown = sorted(set(raw) - _TOP)
    if unknown:
        raise bad(f"unknown key '{unknown[0]}' (known: {', '.join(sorted(_TOP))})")
    if raw.get("kind", "rollout") != "rollout":
        raise bad(f"kind is {raw.get('kind')!r}, expected 'rollout'")
    stages = raw.get("stages", [10, 50, 100])
    if not isinstance(stages, list) or not stages or not all(
        isinstance(s, int) and not isinstance(s, bool) for s in stages
    ):
        raise bad(f"'stages' must be a list of whole percentages, got {stages!r}")
    for s in stages:
        if not 1 <= s <= 100:
            raise bad(f"stage {s}% is outside 1..100")
    if any(b <= a for a, b in itertools.pairwise(stages)):
        raise bad(f"stages {stages} are not in increasing order")
    if stages[-1] != 100:
        raise bad(f"the last stage is {stages[-1]}%; a rollout ends at 100")
    soak = parse_duration(raw.get("soak", "48h"), f"{path}: soak")
    overrides_raw = raw.get("soak_overrides") or {}
    if not isinstance(overrides_raw, dict):
        raise bad("'soak_overrides' must map a stage to a duration, e.g. {50: 24h}")
    overrides = {}
    for stage, value in overrides_raw.items():
        if stage not in stages:
            raise bad(f"soak_overrides names stage {stage!r}, which is not in stages {stages}")
        overrides[stage] = parse_duration(value, f"{path}: soak_overrides.{stage}")
    gates_raw = raw.get("gates") or {}
    if not isinstance(gates_raw, dict):
        raise bad("'gates' must be a mapping of gate names to thresholds")
    gates: dict[str, Any] = {}
    for key, value in gates_raw.items():
        if key == "error_rate_vs_direct":
            if value is None:
                continue
            if not isinstance(value, dict) or set(value) - {"margin"}:
                raise bad(f"'gates.error_rate_vs_direct' must be a mapping like {{margin: 0.005}}, got {value!r}")
            margin = value.get("margin", 0.005)
            if isinstance(margin, bool) or not isinstance(margin, (int, float)) or not 0 <= margin < 1:
                raise bad(f"'gates.error_rate_vs_direct.margin' is a fraction 0..1 (0.005 = 0.5 points), got {margin!r}")
            gates["error_rate_vs_direct_margin"] = float(margin)
            continue
        if key == "min_ready_replicas":
            if value == "all":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise bad(f"'gates.min_ready_replicas' must be all or a whole number >= 1, got {value!r}")
            gates[key] = value
            continue
        if key not in _GATE_TYPES:
            raise bad(f"unknown gate 'gates.{key}' (known: "
                      f"{', '.join([*_GATE_TYPES, 'error_rate_vs_direct', 'min_ready_replicas'])})")
        kind = _GATE_TYPES[key]
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise bad(f"'gates.{key}' must be {_KIND_NAME[kind]}, got {value!r}")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value < 0:
            raise bad(f"'gates.{key}' must not be negative, got {value!r}")
        gates[key] = value
    for key in ("max_error_rate", "max_fallback_rate"):
        if gates.get(key, 0) > 1:
            raise bad(f"'gates.{key}' is a fraction 0..1 (0.01 = 1%), got {gates[key]}")
    if gates.get("min_healthy_models", 0) > 5:
        raise bad(f"'gates.min_healthy_models' is {gates['min_healthy_models']}, more than the 5 models")
    on_failure = raw.get("on_post_check_failure", "rollback-1")
    level = None if on_failure in ("none", None) else _rollback_level(on_failure, "on_post_check_failure", bad, "or none")
    customs = _custom_gates(raw.get("custom_gates"), bad)
    autopilot = _autopilot(raw.get("autopilot"), stages, path, bad)
    return StagePlan(tuple(stages), soak, overrides, Gates(**gates), level, path, customs, autopilot)


def _rollback_level(value: Any, where: str, bad: Any, also: str = "") -> int:
    if isinstance(value, str) and value.startswith("rollback-") and value[9:] in ("1", "2", "3", "4"):
        return int(value[9:])
    raise bad(f"'{where}' must be rollback-1..rollback-4{' ' + also if also else ''}, got {value!r}")


def _autopilot(raw: Any, stages: list[int], path: Path, bad: Any) -> AutopilotSettings:
    """`autopilot: {interval, failure_threshold, on_breach, approve_before}`, every value checked."""
    if raw is None:
        return AutopilotSettings()
    if not isinstance(raw, dict):
        raise bad("'autopilot' must be a mapping like {interval: 30s, failure_threshold: 2}")
    unknown = sorted(set(raw) - set(_AUTOPILOT_KEYS), key=str)
    if unknown:
        raise bad(f"unknown key 'autopilot.{unknown[0]}' (known: {', '.join(_AUTOPILOT_KEYS)})")
    interval = parse_duration(raw.get("interval", "30s"), f"{path}: autopilot.interval")
    if interval < 1:
        raise bad(f"'autopilot.interval' must be at least 1s, got {raw.get('interval')!r}")
    threshold = raw.get("failure_threshold", 2)
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
        raise bad(f"'autopilot.failure_threshold' must be a whole number >= 1, got {threshold!r}")
    on_breach = _rollback_level(raw.get("on_breach", "rollback-1"), "autopilot.on_breach", bad)
    approve = raw.get("approve_before") or []
    if not isinstance(approve, list) or not all(isinstance(s, int) and not isinstance(s, bool) for s in approve):
        raise bad(f"'autopilot.approve_before' must be a list of stages, e.g. [100], got {approve!r}")
    for stage in approve:
        if stage not in stages:
            raise bad(f"'autopilot.approve_before' names stage {stage}, which is not in stages {stages}")
    return AutopilotSettings(interval, threshold, on_breach, tuple(approve))


def _custom_gates(raw: Any, bad: Any) -> tuple[CustomGate, ...]:
    """`custom_gates: [{name, query, pass: "< 0.05", fail: ">= 0.2"}]`."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise bad("'custom_gates' must be a list of {name, query, pass, fail}")
    out: list[CustomGate] = []
    for i, item in enumerate(raw):
        where = f"custom_gates[{i}]"
        if not isinstance(item, dict):
            raise bad(f"'{where}' must be a mapping with name, query, pass and/or fail")
        unknown = sorted(set(item) - {"name", "query", "pass", "fail", "description"}, key=str)
        if unknown:
            raise bad(f"unknown key '{where}.{unknown[0]}' (known: name, query, pass, fail, description)")
        name, query = item.get("name"), item.get("query")
        if not isinstance(name, str) or not name.strip():
            raise bad(f"'{where}.name' must be a non-empty string")
        if not isinstance(query, str) or not query.strip():
            raise bad(f"'{where}.query' must be a PromQL query, e.g. sum(increase(x[{{window}}]))")
        if "pass" not in item and "fail" not in item:
            raise bad(f"'{where}' ({name}) needs a pass or a fail condition, e.g. pass: \"< 0.05\"")
        if any(c.name == name for c in out):
            raise bad(f"'{where}.name' {name!r} is used twice; gate names must differ")
        conditions = [_condition(item[k], f"{where}.{k}", bad) if k in item else None for k in ("pass", "fail")]
        out.append(CustomGate(name, query, conditions[0], conditions[1]))
    return tuple(out)


def _condition(raw: Any, where: str, bad: Any) -> Condition:
    text = str(raw).strip()
    op = next((o for o in OPERATORS if text.startswith(o)), None)
    try:
        bound = float(text[len(op):]) if op else None
    except ValueError:
        bound = None
    if op is None or bound is None or bound != bound:
        raise bad(f"'{where}' is {raw!r}; write an operator and a number, e.g. \"< 0.05\" "
                  f"(operators: {' '.join(OPERATORS)})")
    return Condition(op, bound)


_KIND_NAME = {bool: "true or false", int: "a whole number", float: "a number"}
