"""Turn what one completion through the gateway looked like into a per-model status.

The point is to tell a throttled free model (inconclusive: HOLD) from a broken
one (failing: NO-GO). Rules, first match wins:

- no HTTP answer, or 408: down (timeout / connect)
- 429, or any Retry-After: rate-limited; the gateway's own cooldown answer
  ("All deployments ... are in cooldown") is rate-limited too, error class
  `cooldown`, because LiteLLM cools a deployment down after upstream 429s as
  well as after failures, and one request cannot tell which
- 401/403, or 400/500 with an auth-ish message: auth-error. LiteLLM without a
  database answers a wrong master key with 400 "No connected db." and a
  missing key with a bare 500 "Internal Server Error": see ENVIRONMENT.md
- 500 with "Unable to get json response": broken (malformed), because that is
  how LiteLLM reports an upstream 200 whose body was not JSON
- other 5xx: down; other 4xx: broken (the request cannot succeed as configured)
- 200 served by another alias, or after fallbacks: down (a fallback hid it)
- 200 with empty or malformed content: broken
- 200 with content: healthy
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rollout_cli.gateway.api import Completion

HEALTHY = "healthy"
RATE_LIMITED = "rate-limited"
DOWN = "down"
BROKEN = "broken"
AUTH_ERROR = "auth-error"
NOT_CHECKED = "not-checked"  # the gateway did not answer, or the key was refused up front

FAILING = frozenset({DOWN, BROKEN, AUTH_ERROR})
INCONCLUSIVE = frozenset({RATE_LIMITED})

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
    if status == 429 or (status != 200 and seen.retry_after is not None):
        error_class = "cooldown" if "cooldown" in text else "rate-limit"
        return Classification(RATE_LIMITED, error_class, message)
    if is_auth_failure(status, seen.message):
        upstream = any(hint in text for hint in _UPSTREAM_HINTS)
        return Classification(AUTH_ERROR, "upstream-auth" if upstream else "gateway-auth", message)
    if status >= 500:
        if any(hint in text for hint in _MALFORMED_HINTS):
            return Classification(BROKEN, "malformed", message)
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
    if seen.error in ("empty", "malformed"):
        return Classification(BROKEN, seen.error, message)
    return Classification(HEALTHY)
