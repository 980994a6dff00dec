"""Turn what one completion through the gateway looked like into a per-model status.

The point is to tell a throttled free model (inconclusive: HOLD) from a broken
one (failing: NO-GO). Rules, first match wins:

- no HTTP answer, or 408: down (timeout / connect)
- the gateway's own cooldown answer (429 "No deployments available for
  selected model, Try again in N seconds. ... cooldown_list=[...]", LiteLLM's
  RouterRateLimitError) is not a rate limit: it is judged by its cause, the
  status of the deployment's recent failures (`explain_cooldown`, from the
  gateway's `litellm_deployment_failure_responses`); with no cause known it
  is down, error class `cooldown`
- 429 "free-models-per-day": quota-exhausted (the account's daily quota);
  429 "Provider returned error" / "rate-limited upstream": upstream-throttled
  (the provider); any other 429, or any Retry-After: rate-limited
- 404 "No endpoints found for <id>": retired; 404 "free period ... ended":
  not-free; 404 "No endpoints found that support tool use": unsupported
- 401/403, or 400/500 with an auth-ish message: auth-error. LiteLLM without a
  database answers a wrong master key with 400 "No connected db." and a
  missing key with a bare 500 "Internal Server Error": see ENVIRONMENT.md
- 500 with "Unable to get json response": broken (malformed), because that is
  how LiteLLM reports an upstream 200 whose body was not JSON
- other 5xx: down; other 4xx: broken (the request cannot succeed as configured)
- 200 served by another alias, or after fallbacks: down (a fallback hid it)
- 200 with an `error` object, or an error event mid-stream, or empty or
  malformed content: broken
- 200 with content: healthy
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollout_cli.errors import RolloutError
from rollout_cli.gateway.api import Completion
from rollout_cli.gateway.prometheus import parse
from rollout_cli.io.atomic import atomic_write_text

FAILURE_RESPONSES = "litellm_deployment_failure_responses_total"  # per model_group, exception_status, exception_class
COOLDOWN_MEMORY = "failure-counts.json"  # in .rollout/: the gateway's failure counters when last read
COOLDOWN_READS = 4
COOLDOWN_READ_PAUSE_S = 0.5

HEALTHY = "healthy"
RATE_LIMITED = "rate-limited"
DOWN = "down"
BROKEN = "broken"
AUTH_ERROR = "auth-error"
NOT_CHECKED = "not-checked"  # the gateway did not answer, or the key was refused up front
RETIRED = "retired"  # OpenRouter has no endpoint for the model any more
NOT_FREE = "not-free"  # its free period ended: the :free id answers 404, the paid slug costs money
UNSUPPORTED = "unsupported"  # it lacks a capability the request (the app) needs, e.g. tools
QUOTA_EXHAUSTED = "quota-exhausted"  # the account's free-models-per-day quota: every free model at once
UPSTREAM_THROTTLED = "upstream-throttled"  # the provider behind OpenRouter throttles this model

FAILING = frozenset({DOWN, BROKEN, AUTH_ERROR, RETIRED, NOT_FREE, UNSUPPORTED})
INCONCLUSIVE = frozenset({RATE_LIMITED, QUOTA_EXHAUSTED, UPSTREAM_THROTTLED})

_AUTH_HINTS = (
    "no connected db",
    "authentication error",
    "authenticationerror",
    "invalid proxy server token",
    "no api key",
    "invalid api key",
    "api key not valid",
    "unauthorized",
    "not authorized",
    "user not found",
    "expired key",
)
_UPSTREAM_HINTS = ("exception -", "llm_provider", "openrouter")
_INNER_MESSAGE = re.compile(r'"message":\s*"((?:[^"\\]|\\.)*)"')
_LITELLM_PREFIX = re.compile(r"^(litellm\.\w+:\s*)+(\w+ ?Error:\s*)?")
_MALFORMED_HINTS = ("unable to get json response", "jsondecodeerror", "invalid json")
_ERROR_OBJECT = re.compile(r"OpenrouterException - (?![\s{\[<]|Message: )", re.IGNORECASE)
_COOLDOWN_HINTS = ("no deployments available for selected model", "in cooldown")
# OpenRouter's words, matched in the message the gateway passes on (first match wins).
_429_KINDS = (
    ("free-models-per-day", QUOTA_EXHAUSTED, "free-models-per-day"),
    ("free-models-per-min", RATE_LIMITED, "free-models-per-min"),
    ("rate-limited upstream", UPSTREAM_THROTTLED, "provider-429"),
    ("provider returned error", UPSTREAM_THROTTLED, "provider-429"),
)
_404_KINDS = (
    ("support tool use", UNSUPPORTED, "tools"),
    ("free period", NOT_FREE, "free-period-ended"),
    ("no endpoints found for", RETIRED, "no-endpoints"),
)


@dataclass(frozen=True)
class Classification:
    status: str
    error_class: str | None = None
    message: str | None = None


def is_auth_failure(status: int | None, message: str | None) -> bool:
    """Whether a gateway answer means "your key was refused" (LiteLLM uses 400/401/403/500 for it)."""
    if status in (401, 403):
        return True
    text = (message or "").lower()
    return bool(status in (400, 500) and any(hint in text for hint in _AUTH_HINTS))


def tidy_message(message: str | None) -> str | None:
    """The provider's own words out of LiteLLM's wrapped error text (which nests JSON in prose)."""
    if not message:
        return message
    text = message
    if "Exception - " in text:
        text = text.split("Exception - ", 1)[1]
    inner = _INNER_MESSAGE.search(text)
    if inner:
        return inner.group(1)
    text = _LITELLM_PREFIX.sub("", text)
    text = text.split(" Deployment Info:", 1)[0].split(", Original Response", 1)[0]
    return text.strip() or message


def classify(seen: Completion, alias: str) -> Classification:
    """The status of `alias`, judged from one completion sent with fallbacks off."""
    message = tidy_message(seen.message)
    status = seen.status
    text = (seen.message or "").lower()
    if status is None:
        return Classification(DOWN, seen.error or "connect", message)
    if status == 408:
        return Classification(DOWN, "timeout", message)
    if status == 429 and any(hint in text for hint in _COOLDOWN_HINTS):
        # Not a rate limit: the gateway sat the model out after its own failures. `explain_cooldown` names them.
        return Classification(DOWN, "cooldown", "in the gateway's cooldown after recent failures (cause not read)")
    if status == 429 or (status != 200 and seen.retry_after is not None):
        for hint, kind, error_class in _429_KINDS:
            if hint in text:
                return Classification(kind, error_class, message)
        return Classification(RATE_LIMITED, "rate-limit", message)
    if status == 404:
        for hint, kind, error_class in _404_KINDS:
            if hint in text:
                return Classification(kind, error_class, message)
    if is_auth_failure(status, seen.message):
        upstream = any(hint in text for hint in _UPSTREAM_HINTS)
        return Classification(AUTH_ERROR, "upstream-auth" if upstream else "gateway-auth", message)
    if status >= 500:
        if any(hint in text for hint in _MALFORMED_HINTS):
            return Classification(BROKEN, "malformed", message)
        if _ERROR_OBJECT.search(seen.message or ""):
            # OpenRouter answered 200 with an `error` object; LiteLLM re-raised it with the error's
            # code and bare message, where a real upstream 5xx carries the JSON body it was sent.
            return Classification(BROKEN, "error-object", f"HTTP 200 with an error object: {message}")
        return Classification(DOWN, f"http-{status}", message)
    if status != 200:
        error_class = "unknown-model" if "invalid model name" in text else f"http-{status}"
        return Classification(BROKEN, error_class, message)
    if seen.served_by and seen.served_by != alias:
        return Classification(
            DOWN, "fallback", f"served by {seen.served_by}: {alias} failed and a fallback answered"
        )
    if seen.attempted_fallbacks:
        return Classification(
            DOWN, "fallback", f"{seen.attempted_fallbacks} fallback(s) attempted before the answer"
        )
    if seen.error in ("empty", "malformed", "error-object", "stream-error"):
        return Classification(BROKEN, seen.error, message)
    return Classification(HEALTHY)


def cooldown_cause(status: str | None, exception_class: str | None) -> Classification:
    """What a model in the gateway's cooldown is, from the status of the failures that put it there.

    A 429 means it was throttled (upstream or the account): inconclusive. A 5xx
    whose class says the answer could not be parsed is broken; other 5xx down;
    404 broken (gone, or no longer free: `rollout models` says which); 401/402/403 auth-error.
    """
    cls = exception_class or "?"
    text = f"in the gateway's cooldown after HTTP {status} ({cls}) failures"
    code = int(status) if status and status.isdigit() else None
    if code == 429:
        return Classification(UPSTREAM_THROTTLED, "cooldown-429", text)
    if code == 200:  # LiteLLM got HTTP 200 and could not use it: a malformed answer, or an error in its body
        return Classification(BROKEN, "cooldown-malformed", text)
    if code in (401, 403):
        return Classification(AUTH_ERROR, "cooldown-auth", text)
    if code is not None and 400 <= code < 500 and code != 408:
        return Classification(BROKEN, f"cooldown-{code}", text)
    if any(hint in cls.lower() for hint in ("json", "malformed", "apierror", "apiresponsevalidation")):
        return Classification(BROKEN, "cooldown-malformed", text)
    return Classification(DOWN, f"cooldown-{status or 'unknown'}", text)


def failure_counts(metrics_text: str) -> dict[str, dict[str, list[float]]]:
    """Per model group: "status|class" -> [count, created] of its failures on the gateway (cumulative)."""
    out: dict[str, dict[str, list[float]]] = {}
    created = FAILURE_RESPONSES.removesuffix("_total") + "_created"
    for sample in parse(metrics_text):
        if sample.name not in (FAILURE_RESPONSES, created):
            continue
        if sample.labels.get("exception_class") == "RouterRateLimitError":
            continue  # the cooldown answers themselves: not a cause
        group = sample.labels.get("model_group") or sample.labels.get("requested_model") or "?"
        key = f"{sample.labels.get('exception_status', '')}|{sample.labels.get('exception_class', '')}"
        row = out.setdefault(group, {}).setdefault(key, [0.0, 0.0])
        row[0 if sample.name == FAILURE_RESPONSES else 1] += sample.value
    return out


def recent_cause(now: dict[str, list[float]], before: dict[str, list[float]] | None) -> tuple[str, str] | None:
    """The failure that keeps a model cooled down: the one that grew most since `before` (the counts
    rollout last saw), else the kind that appeared last (counters are cumulative since the proxy started)."""
    grew = {k: v[0] - (before or {}).get(k, [0.0])[0] for k, v in now.items()}
    grew = {k: n for k, n in grew.items() if n > 0}
    if before is not None and grew:
        key = max(grew, key=lambda k: (grew[k], now[k][1], not k.startswith("429|")))  # a tie: the newer kind
    elif now:
        key = max(now, key=lambda k: (now[k][1], now[k][0]))
    else:
        return None
    status, _, cls = key.partition("|")
    return status, cls


def explain_cooldowns(models: Sequence[Any], read_metrics: Callable[[], str], memory: Path | None = None) -> None:
    """Judge each model the gateway answered "in cooldown" for by the failures that put it there.

    `models` have alias, status, error_class and message (ModelHealth). The
    gateway's failure counters are read when a cooldown answer was seen, or
    when `memory` is kept (every health run refreshes it, so the next cooldown
    is judged by what failed since), and compared with the counts in `memory`,
    so the recent cause wins over an old one; read again (up to 1.5 s more)
    while a cooled model shows no new failure yet. Without metrics the model
    stays down (cooldown, cause not read): it is not serving.
    """
    cooled = [m for m in models if m.error_class == "cooldown"]
    if not cooled and memory is None:
        return
    before = _remembered(memory)
    counts: dict[str, dict[str, list[float]]] = {}
    for attempt in range(COOLDOWN_READS):
        if attempt:
            time.sleep(COOLDOWN_READ_PAUSE_S)
        try:
            counts = failure_counts(read_metrics())
        except RolloutError:
            return
        # LiteLLM counts a failure in an async logging callback, after its answer: a failure that
        # just put a model in cooldown may not be in the first read yet.
        if before is None or all(_grew(counts.get(m.alias, {}), before.get(m.alias)) for m in cooled):
            break
    if memory is not None:
        try:
            atomic_write_text(memory, json.dumps(counts))
        except RolloutError:
            pass  # the next cooldown falls back to the newest kind of failure
    for m in cooled:
        cause = recent_cause(counts.get(m.alias, {}), before.get(m.alias) if before is not None else None)
        if cause is not None:
            verdict = cooldown_cause(*cause)
            m.status, m.error_class, m.message = verdict.status, verdict.error_class, verdict.message


def _grew(now: dict[str, list[float]], before: dict[str, list[float]] | None) -> bool:
    return any(v[0] > (before or {}).get(k, [0.0])[0] for k, v in now.items())


def _remembered(memory: Path | None) -> dict[str, Any] | None:
    try:
        data = json.loads(memory.read_text()) if memory is not None and memory.is_file() else None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None
