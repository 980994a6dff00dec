"""Faults the simulator injects per model, and the deterministic choice of which request fails.

Failure is chosen by a counter, never by chance, so that a test or a drill that
says "fail half the requests" sees exactly every second request fail.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from fractions import Fraction
from typing import Any

from rollout_cli.errors import InputError
from rollout_cli.simulator.catalog import known_names, resolve_model

FAULT_MODES = ("hang", "malformed", "empty", "stream-error")
ALL_MODELS = "*"  # the global fault: latency added to every model
# Who sends a request, told by its OpenRouter key: the gateway, or the app calling OpenRouter directly.
CALLERS = ("gateway", "direct")
VIA = (*CALLERS, "both")  # the callers a fault is for
MAX_LATENCY_MS = 600_000


@dataclass(frozen=True)
class Fault:
    """What goes wrong for one model.

    `status` or `mode` is the failure, applied to the share `rate` of requests;
    `latency_ms` delays every request of the model, failed or not, because slow
    but healthy is a case the gates must see too. The catalog faults answer
    every request (the rate does not apply): `retired` (404 no endpoints, gone
    from /models), `price` (no longer free: the `:free` id answers 404, /models
    prices it) and `no_tools` (a request with `tools` gets 404; /models lacks
    `tools`). `upstream` makes a 429 the provider's throttling, not OpenRouter's.
    `via` names the caller the fault is for (its requests alone count for the
    rate): `both` is a provider-wide failure, `gateway` one only the gateway's
    key meets (its key throttled, a request LiteLLM sends differently).
    """

    status: int | None = None
    rate: float = 1.0
    latency_ms: int = 0
    mode: str | None = None
    retry_after: int | None = None
    retired: bool = False
    price: str | None = None
    no_tools: bool = False
    upstream: bool = False
    via: str = "both"

    @property
    def fails(self) -> bool:
        return self.status is not None or self.mode is not None

    @property
    def catalog(self) -> bool:
        """Whether the fault changes what /models says (and so what every request gets)."""
        return self.retired or self.price is not None or self.no_tools

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, model: str = "") -> Fault:
        """Validate a fault as the admin API or `Simulator.set_fault` receives it."""
        where = f" for {model}" if model else ""
        _known_fields(cls, data, f"a fault{where}", f"fault field {{key!r}}{where}")

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

        flags = {}
        for key in ("retired", "no_tools", "upstream"):
            value = data.get(key, False)
            if not isinstance(value, bool):
                raise InputError(f"fault {key}{where} must be true or false, got {value!r}")
            flags[key] = value
        price = _price(data.get("price"), where)
        via = data.get("via", "both")
        if via not in VIA:
            raise InputError(f"fault via{where} must be one of {', '.join(VIA)}, got {via!r}")
        if via != "both" and (flags["retired"] or flags["no_tools"] or price):
            raise InputError(f"a catalog fault{where} (retired, price, no_tools) is the same for every caller; "
                             f"drop via {via!r}")

        if status is not None and mode is not None:
            raise InputError(f"a fault{where} sets status {status} and mode {mode!r}; choose one")
        if flags["upstream"] and status != 429:
            raise InputError(f"upstream{where} is the provider's 429: it needs status 429, got {status!r}")
        if flags["upstream"] and retry_after is not None:
            raise InputError(f"an upstream 429{where} carries no Retry-After (OpenRouter passes none); drop it")
        if status is None and mode is None and not latency_ms and not (flags["retired"] or flags["no_tools"] or price):
            raise InputError(f"a fault{where} needs status, mode, latency_ms, retired, price or no_tools")
        if retry_after is None and status == 429 and not flags["upstream"]:
            retry_after = 1  # OpenRouter always tells a throttled client when to come back
        return cls(status=status, rate=float(rate), latency_ms=int(latency_ms), mode=mode, retry_after=retry_after,
                   price=price, via=via, **flags)

    def applies_to(self, caller: str | None) -> bool:
        """Whether a request from `caller` (None: a key of no named caller) meets this fault."""
        return self.via == "both" or self.via == caller


@dataclass(frozen=True)
class Decision:
    """What the server does with one chat request."""

    latency_s: float = 0.0
    status: int | None = None
    mode: str | None = None
    retry_after: int | None = None
    reason: str | None = None  # why a status: retired | not-free | no-tools | upstream | quota | rpm
    headers: dict[str, str] | None = None


@dataclass(frozen=True)
class AccountLimits:
    """OpenRouter's account-wide limits on `:free` models, across every free model.

    `quota_left`: requests left today (None: no daily limit in force);
    `rpm`: requests per minute (None: none). Over either, a free model answers
    429 with `X-RateLimit-*` headers (reset in ms since the epoch) and no Retry-After.
    """

    quota_left: int | None = None
    rpm: int | None = None
    daily_limit: int = 50  # what X-RateLimit-Limit says for the daily quota

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> AccountLimits:
        allowed = _known_fields(cls, data, "account limits", "account field {key!r}")
        values = {}
        for key in allowed:
            value = data.get(key)
            if value is None:
                continue
            if not _is_int(value) or value < (1 if key != "quota_left" else 0):
                least = "0" if key == "quota_left" else "1"
                raise InputError(f"account {key} must be a whole number >= {least}, got {value!r}")
            values[key] = value
        return cls(**values)


class FaultBook:
    """The faults in force, keyed by OpenRouter id (or `*`), shared by the server threads."""

    def __init__(self, clock: Any = time.time) -> None:
        self._lock = threading.Lock()
        self._faults: dict[str, Fault] = {}
        self._counters: dict[str, int] = {}
        self._account = AccountLimits()
        self._minute: deque[float] = deque()  # accepted free-model requests of the last 60 s
        self._clock = clock

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
        if key == ALL_MODELS and (fault.fails or fault.catalog or fault.retry_after is not None):
            raise InputError("the global fault * takes only latency_ms; set status or mode per model "
                             "(account-wide limits: quota_left and rpm)")
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
                self._account = AccountLimits()
                self._minute.clear()
                return
        key = self.canonical(name)
        with self._lock:
            self._faults.pop(key, None)
            self._counters.pop(key, None)

    def snapshot(self) -> dict[str, dict[str, Any]]:
        with self._lock:
            return {key: fault.to_dict() for key, fault in self._faults.items()}

    def fault_of(self, model_id: str) -> Fault | None:
        with self._lock:
            return self._faults.get(model_id)

    @property
    def account(self) -> AccountLimits:
        with self._lock:
            return self._account

    def set_account(self, limits: AccountLimits | Mapping[str, Any]) -> AccountLimits:
        """Put account-wide limits in force (replacing the previous ones; the minute window restarts)."""
        if not isinstance(limits, AccountLimits):
            limits = AccountLimits.from_mapping(limits)
        with self._lock:
            self._account = limits
            self._minute.clear()
        return limits

    def _account_decision(self, latency_s: float) -> Decision | None:
        """The account-wide 429 for one free-model request, or None (and the request is counted). Lock held."""
        now = self._clock()
        account = self._account
        while self._minute and self._minute[0] <= now - 60:
            self._minute.popleft()
        if account.rpm is not None and len(self._minute) >= account.rpm:
            reset = (self._minute[0] + 60) * 1000
            return Decision(latency_s, 429, reason="rpm", headers=_rate_headers(account.rpm, 0, reset))
        if account.quota_left is not None:
            if account.quota_left <= 0:
                midnight = (math.floor(now / 86400) + 1) * 86400 * 1000
                return Decision(latency_s, 429, reason="quota",
                                headers=_rate_headers(account.daily_limit, 0, midnight))
            self._account = AccountLimits(account.quota_left - 1, account.rpm, account.daily_limit)
        self._minute.append(now)
        return None

    def decide(self, model_id: str, *, tools: bool = False, caller: str | None = None) -> Decision:
        """Count one request for `model_id` from `caller` and say how to answer it.

        Account-wide limits come first (they apply to every `:free` model),
        then the catalog faults (every request), then status or mode: request n
        of those the fault applies to fails iff floor(n*rate) > floor((n-1)*rate):
        rate 0.5 fails every second request, 1.0 every one, 0 none. A fault for
        another caller is no fault for this request.
        """
        with self._lock:
            fault = self._faults.get(model_id)
            everyone = self._faults.get(ALL_MODELS)
            fault = fault if fault is not None and fault.applies_to(caller) else None
            everyone = everyone if everyone is not None and everyone.applies_to(caller) else None
            latency_ms = (fault.latency_ms if fault else 0) + (everyone.latency_ms if everyone else 0)
            latency_s = latency_ms / 1000
            if model_id.endswith(":free"):
                limited = self._account_decision(latency_s)
                if limited is not None:
                    return limited
            if fault is not None and fault.retired:
                return Decision(latency_s, 404, reason="retired")
            if fault is not None and fault.price is not None:
                return Decision(latency_s, 404, reason="not-free")
            if fault is not None and fault.no_tools and tools:
                return Decision(latency_s, 404, reason="no-tools")
            if fault is None or not fault.fails:
                return Decision(latency_s=latency_s)
            n = self._counters.get(model_id, 0) + 1
            self._counters[model_id] = n
        rate = Fraction(repr(fault.rate))  # exact decimal, so 0.3 fails on the 10th request, not the 11th
        if math.floor(n * rate) <= math.floor((n - 1) * rate):
            return Decision(latency_s=latency_ms / 1000)
        return Decision(latency_s=latency_ms / 1000, status=fault.status, mode=fault.mode, retry_after=fault.retry_after,
                        reason="upstream" if fault.upstream else None)


def _known_fields(cls: Any, data: Any, what: str, unknown: str) -> list[str]:
    """The dataclass's field names, after checking `data` is a mapping of only those."""
    if not isinstance(data, Mapping):
        raise InputError(f"{what} must be a JSON object, got {type(data).__name__}")
    allowed = [f.name for f in fields(cls)]
    for key in data:
        if key not in allowed:
            raise InputError(f"unknown {unknown.format(key=key)}; expected: {', '.join(allowed)}")
    return allowed


def _rate_headers(limit: int, remaining: int, reset_ms: float) -> dict[str, str]:
    return {"X-RateLimit-Limit": str(limit), "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(int(reset_ms))}


def _price(value: Any, where: str) -> str | None:
    """A price fault as OpenRouter writes prices: a decimal string of USD per token, above zero."""
    if value is None:
        return None
    try:
        amount = float(value) if isinstance(value, (str, int, float)) and not isinstance(value, bool) else None
    except ValueError:
        amount = None
    if amount is None or not math.isfinite(amount) or amount <= 0:
        raise InputError(f"fault price{where} must be a USD-per-token price above 0, e.g. 0.000002, got {value!r}")
    return f"{amount:.12f}".rstrip("0").rstrip(".")  # "0.000002", never "2e-06"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
