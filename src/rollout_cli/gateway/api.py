"""The LiteLLM proxy's HTTP API: liveliness, readiness, completions, /health, /metrics.

One real implementation over httpx (imported lazily). Calls that probe the
gateway never raise for an HTTP error: they return what was seen, so a check
can classify it. The master key goes into the Authorization header only; it is
never part of a returned value or an error message.
"""

from __future__ import annotations

import json
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from rollout_cli import __version__
from rollout_cli.core.workspace import GatewayConfig
from rollout_cli.errors import GatewayUnavailable
from rollout_cli.io.net import HttpAnswer, HttpFailure, MiB, bounded_get

MAX_PROBE_BYTES = 1 * MiB  # a health or model-list answer; far more is not the gateway talking
MAX_METRICS_BYTES = 16 * MiB  # LiteLLM's /metrics/ for five models is well under 1 MiB
MAX_COMPLETION_BYTES = 4 * MiB  # a check asks for a few tokens
CHECK_USER_AGENT_PREFIX = "rollout-check/"  # the checks' own requests; the error-rate window leaves them out


@dataclass
class Probe:
    """One GET against a health endpoint."""

    ok: bool
    status: int | None
    latency_ms: float
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Completion:
    """What one chat completion through the gateway looked like."""

    model: str
    status: int | None  # None: no HTTP answer at all
    latency_ms: float
    served_by: str | None = None  # x-litellm-model-group
    attempted_fallbacks: int | None = None
    attempted_retries: int | None = None
    gateway_duration_ms: float | None = None  # x-litellm-response-duration-ms
    retry_after: float | None = None
    content: str | None = None
    usage: dict[str, Any] = field(default_factory=dict)
    error: str | None = None  # timeout | connect | http | malformed | empty | error-object | stream-error
    message: str | None = None  # the gateway's error message, shortened
    ratelimit: dict[str, int] | None = None  # OpenRouter's X-RateLimit-* (limit, remaining, reset ms), when seen

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def check_user_agent() -> str:
    """The checks' own requests carry it, so the window's error rate can leave them
    out: they run with fallbacks off and fail where app traffic would not."""

    return f"{CHECK_USER_AGENT_PREFIX}{__version__}"


Observer = Callable[[dict[str, Any], Completion], None]


class GatewayClient:
    def __init__(
        self, url: str, key: str | None, timeout: float = 10.0, user_agent: str | None = None,
        observer: Observer | None = None,
    ) -> None:
        import httpx  # lazy: start-up time

        self.observer = observer  # told of every completion sent (the quota ledger counts them)
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        headers["User-Agent"] = user_agent or check_user_agent()
        self._headers = dict(headers)  # for the bounded reads (probes, model list, metrics)
        # An http:// gateway (loopback) never does TLS: no CA bundle to load, which alone costs more
        # than the probes of `gateway status`. The bare context trusts no certificate, should one come.
        verify: Any = True if self.url.startswith("https:") else ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        # trust_env=False: a proxy variable must never route loopback traffic elsewhere
        self._http = httpx.Client(
            base_url=self.url, headers=headers, timeout=timeout, trust_env=False, verify=verify,
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
        )

    @classmethod
    def from_config(cls, config: GatewayConfig, timeout: float = 10.0) -> GatewayClient:
        key = config.key.require()
        return cls(config.url, key, timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> GatewayClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _get(self, path: str, timeout: float, max_bytes: int = MAX_PROBE_BYTES) -> HttpAnswer:
        """A whole answer within `timeout` s in all (a slow-dripping gateway cannot hold a check), or HttpFailure."""
        return bounded_get(self.url + path, self._headers, deadline_s=timeout, max_bytes=max_bytes)

    def _probe(self, path: str, timeout: float) -> Probe:
        started = time.perf_counter()
        try:
            response = self._get(path, timeout)
        except HttpFailure as exc:
            return Probe(False, None, _ms(started), exc.reason)
        ok = response.status == 200
        return Probe(ok, response.status, _ms(started), None if ok else _short(response.text()))

    def liveliness(self, timeout: float = 3.0) -> Probe:
        return self._probe("/health/liveliness", timeout)

    def readiness(self, timeout: float = 3.0) -> Probe:
        return self._probe("/health/readiness", timeout)

    def list_models(self, timeout: float = 3.0) -> tuple[Probe, list[str]]:
        """GET /v1/models: the aliases the gateway serves, and a key check that costs no upstream request.

        It needs the master key, so a non-200 here while liveliness answers is the
        gateway refusing the key (LiteLLM answers 400 or 500 for that, not 401).
        """
        started = time.perf_counter()
        try:
            response = self._get("/v1/models", timeout)
        except HttpFailure as exc:
            return Probe(False, None, _ms(started), exc.reason), []
        if response.status != 200:
            try:
                message = _error_message(json.loads(response.body))
            except ValueError:
                message = _short(response.text()) or "empty body"
            return Probe(False, response.status, _ms(started), message), []
        try:
            names = [str(entry["id"]) for entry in json.loads(response.body)["data"]]
        except (ValueError, KeyError, TypeError):
            return Probe(False, 200, _ms(started), "malformed /v1/models answer"), []
        return Probe(True, 200, _ms(started)), names

    def complete(
        self,
        model: str,
        prompt: str,
        *,
        max_tokens: int = 16,
        timeout: float = 15.0,
        disable_fallbacks: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> Completion:
        """One real completion; never raises for an HTTP or transport failure.

        With `"stream": true` in `extra` the answer is read as SSE: the content
        is the deltas joined, and an error event mid-stream is `stream-error`.
        """
        body: dict[str, Any] = {
            "model": model,
            "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens,
        }
        if disable_fallbacks:
            body["disable_fallbacks"] = True
        body.update(extra or {})
        seen = self._complete(model, body, timeout)
        if self.observer is not None:
            self.observer(body, seen)
        return seen

    def _complete(self, model: str, body: dict[str, Any], timeout: float) -> Completion:
        """One completion, whole within `timeout` s in all: per-read timeouts alone let a dripping answer run on."""
        import httpx  # lazy: start-up time

        started = time.perf_counter()
        watchdog = _Watchdog(timeout)
        try:
            with self._http.stream("POST", "/v1/chat/completions", json=body, timeout=timeout) as streamed:
                watchdog.watch(streamed)
                if body.get("stream") is True and streamed.status_code == 200:
                    streamed_answer = self._read_stream(model, streamed, started)
                    if not watchdog.fired:  # cut off, a close-delimited stream just ends: not an answer
                        return streamed_answer
                data = _read_capped(streamed, MAX_COMPLETION_BYTES) if not watchdog.fired else b""
                response = streamed
            if watchdog.fired:
                raise httpx.ReadTimeout("total deadline")
        except httpx.TimeoutException:
            return Completion(model, None, _ms(started), error="timeout", message=f"no answer in {timeout:g} s")
        except httpx.HTTPError as exc:
            if watchdog.fired:  # cut off at the total deadline: the read ended as a broken connection
                return Completion(model, None, _ms(started), error="timeout", message=f"no answer in {timeout:g} s")
            return Completion(model, None, _ms(started), error="connect", message=_transport_error(exc))
        finally:
            watchdog.cancel()
        text = data.decode("utf-8", errors="replace") if data is not None else ""
        if data is None:
            seen = self._seen(model, response, started)
            seen.error = "malformed" if response.status_code == 200 else "http"
            seen.message = f"the answer is larger than the {MAX_COMPLETION_BYTES / MiB:g} MiB rollout reads"
            return seen
        seen = self._seen(model, response, started)
        try:
            payload = json.loads(data)
        except ValueError:
            seen.error = "malformed" if response.status_code == 200 else "http"
            seen.message = _short(text) or "empty body"
            return seen
        if response.status_code != 200:
            seen.error = "http"
            seen.message = _error_message(payload)
            seen.ratelimit = seen.ratelimit or _ratelimit_in(text)
            return seen
        if isinstance(payload, dict) and payload.get("error"):
            # HTTP 200, yet the provider failed after the answer started: OpenRouter says so in the body.
            seen.error, seen.message = "error-object", "HTTP 200 with an error: " + _error_message(payload)
            return seen
        try:
            seen.content = payload["choices"][0]["message"]["content"]
            seen.usage = payload.get("usage") or {}
        except (KeyError, IndexError, TypeError):
            seen.error, seen.message = "malformed", "no choices[0].message.content in the answer"
            return seen
        if not isinstance(seen.content, str) or not seen.content.strip():
            seen.error, seen.message = "empty", "the answer's content is empty"
        return seen

    def _seen(self, model: str, response: Any, started: float) -> Completion:
        headers = response.headers
        return Completion(
            model,
            response.status_code,
            _ms(started),
            served_by=headers.get("x-litellm-model-group"),
            attempted_fallbacks=_int(headers.get("x-litellm-attempted-fallbacks")),
            attempted_retries=_int(headers.get("x-litellm-attempted-retries")),
            gateway_duration_ms=_float(headers.get("x-litellm-response-duration-ms")),
            # LiteLLM passes an upstream Retry-After on as `llm_provider-retry-after`;
            # its own (cooldown) answers use plain `retry-after`.
            retry_after=_float(headers.get("retry-after") or headers.get("llm_provider-retry-after")),
            ratelimit=_ratelimit_headers(headers),
        )

    def _read_stream(self, model: str, response: Any, started: float) -> Completion:
        """An SSE answer: deltas joined; an `error` event (LiteLLM relays a mid-stream failure so) is stream-error."""
        seen = self._seen(model, response, started)
        parts: list[str] = []
        read = 0
        for line in response.iter_lines():
            read += len(line)
            if read > MAX_COMPLETION_BYTES:
                seen.error = "malformed"
                seen.message = f"the streamed answer is larger than the {MAX_COMPLETION_BYTES / MiB:g} MiB rollout reads"
                break
            data = line[len("data:"):].strip() if line.startswith("data:") else None
            if not data or data == "[DONE]":
                continue
            try:
                event = json.loads(data)
            except ValueError:
                seen.error, seen.message = "malformed", "an SSE event is not JSON: " + _short(data, 80)
                break
            if not isinstance(event, dict):
                continue
            if event.get("error"):
                seen.error = "stream-error"
                seen.message = "HTTP 200, then an error mid-stream: " + _error_message(event)
                break
            for choice in event.get("choices") or []:
                piece = (choice.get("delta") or {}).get("content") if isinstance(choice, dict) else None
                if isinstance(piece, str):
                    parts.append(piece)
            if event.get("usage"):
                seen.usage = event["usage"]
        seen.latency_ms = _ms(started)
        seen.content = "".join(parts)
        if seen.error is None and not seen.content.strip():
            seen.error, seen.message = "empty", "the streamed answer's content is empty"
        return seen

    def metrics(self, timeout: float = 5.0) -> str:
        """The Prometheus text from /metrics/, whole within `timeout` s and at most MAX_METRICS_BYTES;
        GatewayUnavailable when it cannot be read."""
        try:
            response = self._get("/metrics/", timeout, MAX_METRICS_BYTES)
        except HttpFailure as exc:
            raise GatewayUnavailable(f"gateway {self.url} /metrics/ does not answer: {exc.reason}") from None
        if response.status != 200:
            raise GatewayUnavailable(
                f"gateway {self.url} /metrics/ answered HTTP {response.status}; "
                "enable the prometheus callback and check the master key"
            )
        return response.text()


class _Watchdog:
    """Shuts a streamed answer's socket down at a total deadline: the read blocked on it ends at once."""

    def __init__(self, seconds: float) -> None:
        self.fired = False
        self._socket: Any = None
        self._timer = threading.Timer(seconds, self._cut)
        self._timer.daemon = True
        self._timer.start()

    def watch(self, response: Any) -> None:
        stream = response.extensions.get("network_stream")
        self._socket = stream.get_extra_info("socket") if stream is not None else None
        if self.fired:
            self._cut()

    def _cut(self) -> None:
        self.fired = True
        if self._socket is not None:
            try:
                self._socket.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cancel(self) -> None:
        self._timer.cancel()


def _read_capped(response: Any, limit: int) -> bytes | None:
    """The whole body, or None past `limit` bytes (the rest is not read)."""
    chunks, size = [], 0
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _float(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _short(value: object, limit: int = 200) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _transport_error(exc: Exception) -> str:
    """What kept a request from being answered, in our words: httpx's text can quote a header (the key)."""
    import httpx  # lazy: start-up time

    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    if isinstance(exc, httpx.ConnectError):
        cause: BaseException | None = exc
        for _ in range(8):  # the OSError underneath says why ("Connection refused"), and nothing else
            if cause is None or isinstance(cause, OSError):
                break
            cause = cause.__cause__ or cause.__context__
        return f"cannot connect: {cause.strerror}" if isinstance(cause, OSError) and cause.strerror else "cannot connect"
    if isinstance(exc, httpx.LocalProtocolError):
        return "the request could not be sent (an invalid header value?)"
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError)):
        return "the connection broke off before an answer"
    return f"request failed ({type(exc).__name__})"


_RATE_KEYS = {"limit": "x-ratelimit-limit", "remaining": "x-ratelimit-remaining", "reset": "x-ratelimit-reset"}


def _ratelimit_headers(headers: Any) -> dict[str, int] | None:
    """OpenRouter's X-RateLimit-* headers, as LiteLLM passes them on (`llm_provider-` prefix) or as they are."""
    found = {}
    for key, name in _RATE_KEYS.items():
        value = _int(headers.get(name) or headers.get("llm_provider-" + name))
        if value is not None:
            found[key] = value
    return found or None


# OpenRouter repeats the figures in `error.metadata.headers`; LiteLLM keeps that body, escaped, in its message.
_RATE_IN_TEXT = re.compile(r"X-RateLimit-(Limit|Remaining|Reset)[\\\"']*\s*[:=]\s*[\\\"']*(\d+)", re.IGNORECASE)


def _ratelimit_in(text: str) -> dict[str, int] | None:
    found = {name.lower(): int(value) for name, value in _RATE_IN_TEXT.findall(text)}
    return found or None


def _error_message(payload: Any) -> str:
    if isinstance(payload, dict):
        error = payload.get("error", payload)
        if isinstance(error, dict):
            return _short(error.get("message") or error)
        return _short(error)
    return _short(payload)
