"""Faults the simulator injects per model, and the deterministic choice of which request fails.

Failure is chosen by a counter, never by chance, so that a test or a drill that
says "fail half the requests" sees exactly every second request fail.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from fractions import Fraction
from typing import Any

from rollout_cli.errors import InputError
from rollout_cli.simulator.catalog import known_names, resolve_model

FAULT_MODES = ("hang", "malformed", "empty")
ALL_MODELS = "*"  # the global fault: latency added to every model
MAX_LATENCY_MS = 600_000


@dataclass(frozen=True)
class Fault:
    """What goes wrong for one model.

    `status` or `mode` is the failure, applied to the share `rate` of requests;
    `latency_ms` delays every request of the model, failed or not, because slow
    but healthy is a case the gates must see too.
    """

    status: int | None = None
    rate: float = 1.0
    latency_ms: int = 0
    mode: str | None = None
    retry_after: int | None = None

    @property
    def fails(self) -> bool:
        return self.status is not None or self.mode is not None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, model: str = "") -> Fault:
        """Validate a fault as the admin API or `Simulator.set_fault` receives it."""
        where = f" for {model}" if model else ""
        if not isinstance(data, Mapping):
            raise InputError(f"a fault{where} must be a JSON object, got {type(data).__name__}")
        allowed = [f.name for f in fields(cls)]
        for key in data:
            if key not in allowed:
                raise InputError(f"unknown fault field {key!r}{where}; expected: {', '.join(allowed)}")

        status = data.get("status")
        if status is not None and (not _is_int(status) or not 400 <= status <= 599):
            raise InputError(f"fault status{where} must be an HTTP error code 400..599, got {status!r}")
        rate = data.get("rate", 1.0)
        if not _is_number(rate) or not 0 <= rate <= 1:
            raise InputError(f"fault rate{where} must be a number from 0 to 1, got {rate!r}")
        latency_ms = data.get("latency_ms", 0)
        if not _is_number(latency_ms) or not 0 <= latency_ms <= MAX_LATENCY_MS:
            raise InputError(f"fault latency_ms{where} must be 0..{MAX_LATENCY_MS}, got {latency_ms!r}")
        mode = data.get("mode")
        if mode is not None and mode not in FAULT_MODES:
            raise InputError(f"fault mode{where} must be one of {', '.join(FAULT_MODES)}, got {mode!r}")
        retry_after = data.get("retry_after")
        if retry_after is not None and (not _is_int(retry_after) or retry_after < 0):
            raise InputError(f"fault retry_after{where} must be whole seconds >= 0, got {retry_after!r}")

        if status is not None and mode is not None:
            raise InputError(f"a fault{where} sets status {status} and mode {mode!r}; choose one")
        if status is None and mode is None and not latency_ms:
            raise InputError(f"a fault{where} needs status, mode or latency_ms")
        if retry_after is None and status == 429:
            retry_after = 1  # OpenRouter always tells a throttled client when to come back
        return cls(status=status, rate=float(rate), latency_ms=int(latency_ms), mode=mode, retry_after=retry_after)


@dataclass(frozen=True)
class Decision:
    """What the server does with one chat request."""

    latency_s: float = 0.0
    status: int | None = None
    mode: str | None = None
    retry_after: int | None = None


class FaultBook:
    """The faults in force, keyed by OpenRouter id (or `*`), shared by the server threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._faults: dict[str, Fault] = {}
        self._counters: dict[str, int] = {}

    @staticmethod
    def canonical(name: str) -> str:
        """The key a model name (id, `openrouter/` id or alias) is stored under; unknown names are input errors."""
        if name == ALL_MODELS:
            return ALL_MODELS
        try:
            return resolve_model(name).id
        except InputError:
            raise InputError(
                f"unknown model {name!r} for a fault; known models: {', '.join(known_names())}, or * for all"
            ) from None

    def set(self, name: str, fault: Fault | Mapping[str, Any]) -> tuple[str, Fault]:
        """Put a fault in force, replacing the model's previous one and restarting its rate counter."""
        key = self.canonical(name)
        if not isinstance(fault, Fault):
            fault = Fault.from_mapping(fault, model=key)
        if key == ALL_MODELS and (fault.fails or fault.retry_after is not None):
            raise InputError("the global fault * takes only latency_ms; set status or mode per model")
        with self._lock:
            self._faults[key] = fault
            self._counters[key] = 0
        return key, fault

    def clear(self, name: str | None = None) -> None:
        """Remove one model's fault, or every fault when `name` is None."""
        with self._lock:
            if name is None:
                self._faults.clear()
                self._counters.clear()
                return
        key = self.canonical(name)
        with self._lock:
            self._faults.pop(key, None)
            self._counters.pop(key, None)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {key: fault.to_dict() for key, fault in self._faults.items()}

    def decide(self, model_id: str) -> Decision:
        """Count one request for `model_id` and say how to answer it.

        Request n fails iff floor(n*rate) > floor((n-1)*rate): rate 0.5 fails
        every second request, 1.0 every one, 0 none.
        """
        with self._lock:
            fault = self._faults.get(model_id)
            everyone = self._faults.get(ALL_MODELS)
            latency_ms = (fault.latency_ms if fault else 0) + (everyone.latency_ms if everyone else 0)
            if fault is None or not fault.fails:
                return Decision(latency_s=latency_ms / 1000)
            n = self._counters.get(model_id, 0) + 1
            self._counters[model_id] = n
        rate = Fraction(repr(fault.rate))  # exact decimal, so 0.3 fails on the 10th request, not the 11th
        if math.floor(n * rate) <= math.floor((n - 1) * rate):
            return Decision(latency_s=latency_ms / 1000)
        return Decision(latency_s=latency_ms / 1000, status=fault.status, mode=fault.mode, retry_after=fault.retry_after)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
