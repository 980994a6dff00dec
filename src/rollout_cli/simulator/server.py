"""A local stand-in for OpenRouter, with faults that can be changed while it runs.

OpenRouter cannot be reached from these machines, so the gateway's openrouter
deployments point here (`api_base: http://127.0.0.1:PORT/api/v1`). Stdlib only,
so it starts in milliseconds and needs nothing installed. Answers are a pure
function of model and prompt, so smoke checks can assert on them.
"""

from __future__ import annotations

import argparse
import errno
import hashlib
import hmac
import itertools
import json
import re
import select
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

from rollout_cli.errors import InputError, RolloutError, UnavailableError
from rollout_cli.simulator.catalog import MODELS, CatalogModel, find_model
from rollout_cli.simulator.faults import CALLERS, AccountLimits, Decision, Fault, FaultBook

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 4010
DEFAULT_API_KEY = "sk-sim-rollout-local"
OTHER_CALLER = "other"  # stats of requests with the default key, which names no caller
HANG_CAP_S = 300.0
API_PREFIX = "/api/v1"
ADMIN_PREFIX = "/_sim"

_PING = re.compile(r"\bping\b", re.IGNORECASE)
_JSON = re.compile(r"\bjson\b", re.IGNORECASE)
_ERROR_MESSAGES = {
    400: "Bad request",
    401: "No auth credentials found",
    402: "Insufficient credits (simulated)",
    404: "Not found",
    408: "Request timed out upstream (simulated)",
    429: "Rate limit exceeded: free-models-per-min (simulated)",
    500: "Internal server error (simulated)",
    502: "Provider returned error (simulated)",
    503: "No instances available for this model (simulated)",
    504: "Upstream timed out (simulated)",
}
# OpenRouter's own words for the free tier's failures (public docs and trackers).
_QUOTA_MESSAGE = "Rate limit exceeded: free-models-per-day. Add 10 credits to unlock 1000 free model requests per day"
_RPM_MESSAGE = "Rate limit exceeded: free-models-per-min. "
_NO_TOOLS_MESSAGE = ("No endpoints found that support tool use. To learn more about provider routing, "
                     "visit: https://openrouter.ai/docs/provider-routing")
_STREAM_ERROR = {"code": 502, "message": "Provider disconnected mid-generation (simulated)"}


def reason_message(reason: str, model: CatalogModel) -> str:
    """The error message OpenRouter sends for a catalog or account fault."""
    slug = model.id.removesuffix(":free")
    return {
        "retired": f"No endpoints found for {model.id}.",
        "not-free": f"The free period for {model.id} has ended. Use the paid model {slug} instead.",
        "no-tools": _NO_TOOLS_MESSAGE,
        "upstream": "Provider returned error",
        "quota": _QUOTA_MESSAGE,
        "rpm": _RPM_MESSAGE,
    }[reason]


# --- answers -----------------------------------------------------------------


def message_text(message: Any) -> str:
    """The text of one chat message, whether `content` is a string or a list of parts."""
    if not isinstance(message, dict):
        return ""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return ""


def prompt_of(messages: Sequence[Any]) -> str:
    """The last user message: what smoke checks phrase their question in."""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return message_text(message)
    return message_text(messages[-1]) if messages else ""


def compose_reply(model_id: str, prompt: str) -> str:
    """The deterministic answer: "pong" to ping, a JSON object when asked for JSON, else an echo."""
    if _JSON.search(prompt):
        answer: dict[str, Any] = {"ok": True, "model": model_id}
        if _PING.search(prompt):
            answer["reply"] = "pong"
        return json.dumps(answer)
    if _PING.search(prompt):
        return "pong"
    digest = hashlib.sha256(prompt.encode()).hexdigest()[:8]
    echo = " ".join(prompt.split()[:12])
    return f"Simulated reply from {model_id} to prompt {digest}: {echo}".rstrip(": ")


def count_tokens(text: str) -> int:
    """Tokens as words: crude, but deterministic and close enough for budgets."""
    return len(text.split())


# --- state shared by the request threads ---------------------------------------


class RequestStats:
    """Chat requests counted per model, per status and per caller, for tests and drills to assert on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        with self._lock:
            self._total = 0
            self._by_status: dict[str, int] = {}
            self._models: dict[str, dict[str, Any]] = {}
            self._callers: dict[str, dict[str, Any]] = {}

    def record(self, model_id: str | None, status: int | None, mode: str | None = None,
               caller: str | None = None) -> None:
        """Count one chat request; `status` None means no answer was sent (hang)."""
        with self._lock:
            self._total += 1
            if status is not None:
                self._by_status[str(status)] = self._by_status.get(str(status), 0) + 1
            seen = self._callers.setdefault(caller or OTHER_CALLER, {"requests": 0, "by_status": {}})
            seen["requests"] += 1
            if status is not None:
                seen["by_status"][str(status)] = seen["by_status"].get(str(status), 0) + 1
            if model_id is None:
                return
            entry = self._models.setdefault(model_id, {"requests": 0, "by_status": {}, "by_mode": {}})
            entry["requests"] += 1
            if status is not None:
                entry["by_status"][str(status)] = entry["by_status"].get(str(status), 0) + 1
            if mode is not None:
                entry["by_mode"][mode] = entry["by_mode"].get(mode, 0) + 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return json.loads(
                json.dumps({"total": self._total, "by_status": self._by_status, "models": self._models,
                            "by_caller": self._callers})
            )


class _SimServer(ThreadingHTTPServer):
    daemon_threads = True
    # Hung requests must not make stop() wait for them.
    block_on_close = False

    def __init__(self, address: tuple[str, int], api_key: str, hang_cap_s: float,
                 callers: dict[str, str] | None = None) -> None:
        self.api_key = api_key
        # key -> caller: the key a request carries says who sent it (faults by caller, stats per caller)
        self.keys: dict[str, str | None] = {api_key: None, **{key: name for name, key in (callers or {}).items()}}
        self.hang_cap_s = hang_cap_s
        self.faults = FaultBook()
        self.request_stats = RequestStats()
        self.stopping = threading.Event()
        self.started_at = time.monotonic()
        self.ids = itertools.count(1)
        super().__init__(address, _Handler)


class _Handler(BaseHTTPRequestHandler):
    server: _SimServer
    protocol_version = "HTTP/1.1"
    server_version = "rollout-openrouter-sim/1"
    timeout = 120  # idle keep-alive connections end instead of holding a thread forever
    # Headers and body go out as two writes; with Nagle on, a keep-alive client's
    # delayed ACK holds the body back ~40 ms, which would swamp any latency we measure.
    disable_nagle_algorithm = True

    caller: str | None = None  # who sent the chat request being answered, from its key

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the gateway and the tests report what matters; access logs would be noise

    # -- routing --

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        path = urllib.parse.urlsplit(self.path).path.rstrip("/") or "/"
        body = self._read_body()
        try:
            if path.startswith(ADMIN_PREFIX + "/") or path == ADMIN_PREFIX:
                self._admin(method, path[len(ADMIN_PREFIX) :], body)
            elif method == "POST" and path == API_PREFIX + "/chat/completions":
                self._chat(body)
            elif method == "GET" and path == API_PREFIX + "/models":
                self._send_json(200, {"data": catalog_entries(self.server.faults)})
            else:
                self._send_error(404, f"no route for {method} {path}")
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up; nothing left to tell it

    def _admin(self, method: str, route: str, body: bytes) -> None:
        # The admin API has no key, so only this machine may use it.
        if not _is_loopback(self.client_address[0]):
            self._send_error(403, "the simulator admin API answers only on loopback")
            return
        sim = self.server
        try:
            if method == "GET" and route == "/health":
                faults = sim.faults.snapshot()
                self._send_json(
                    200,
                    {
                        "status": "ok",
                        "models": len(MODELS),
                        "faults": len(faults),
                        "uptime_s": round(time.monotonic() - sim.started_at, 3),
                    },
                )
            elif method == "GET" and route == "/faults":
                self._send_json(200, {"faults": sim.faults.snapshot(), "account": sim.faults.account.to_dict()})
            elif method == "DELETE" and route == "/faults":
                sim.faults.clear()
                self._send_json(200, {"cleared": "all"})
            elif route.startswith("/faults/") and method in ("PUT", "DELETE"):
                name = urllib.parse.unquote(route[len("/faults/") :])
                if method == "DELETE":
                    sim.faults.clear(name)
                    self._send_json(200, {"cleared": sim.faults.canonical(name)})
                else:
                    key, fault = sim.faults.set(name, _parse_json(body, what="fault"))
                    self._send_json(200, {"model": key, "fault": fault.to_dict()})
            elif method == "GET" and route == "/account":
                self._send_json(200, {"account": sim.faults.account.to_dict()})
            elif method == "PUT" and route == "/account":
                limits = sim.faults.set_account(_parse_json(body, what="account limits"))
                self._send_json(200, {"account": limits.to_dict()})
            elif method == "GET" and route == "/stats":
                self._send_json(200, sim.request_stats.snapshot())
            elif method == "POST" and route == "/stats/reset":
                sim.request_stats.reset()
                self._send_json(200, {"reset": True})
            else:
                self._send_error(404, f"no admin route for {method} {ADMIN_PREFIX}{route}")
        except InputError as exc:
            self._send_error(400, exc.message)

    # -- chat completions --

    def _chat(self, raw: bytes) -> None:
        sim = self.server
        try:
            body = _parse_json(raw, what="request body")
        except InputError as exc:
            self._reject(None, 400, exc.message)
            return
        requested = body.get("model") if isinstance(body, dict) else None
        model = find_model(requested, aliases=False) if isinstance(requested, str) else None

        auth = self.headers.get("Authorization", "")
        self.caller = None
        if not auth.startswith("Bearer "):
            self._reject(model, 401, "No auth credentials found")
            return
        sent = auth[len("Bearer ") :].strip().encode()
        known = [key for key in sim.keys if hmac.compare_digest(sent, key.encode())]
        if not known:
            self._reject(model, 401, "User not found.")
            return
        self.caller = sim.keys[known[0]]
        if not isinstance(body, dict):
            self._reject(None, 400, "request body must be a JSON object")
            return
        if model is None:
            self._reject(None, 400, f"{requested} is not a valid model ID")
            return
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            self._reject(model, 400, "messages must be a non-empty array")
            return

        decision = sim.faults.decide(model.id, tools=bool(body.get("tools")), caller=self.caller)
        if decision.latency_s and sim.stopping.wait(decision.latency_s):
            self.close_connection = True
            return
        if decision.status is not None:
            message = (reason_message(decision.reason, model) if decision.reason
                       else _ERROR_MESSAGES.get(decision.status, "Simulated error"))
            self._reject(model, decision.status, message, decision)
            return
        if decision.mode == "hang":
            sim.request_stats.record(model.id, None, "hang", self.caller)
            self._hang()
            return

        content = "" if decision.mode == "empty" else compose_reply(model.id, prompt_of(messages))
        finish_reason = "stop"
        limit = body.get("max_tokens", body.get("max_completion_tokens"))
        if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0 and count_tokens(content) > limit:
            content = " ".join(content.split()[:limit])
            finish_reason = "length"
        prompt_tokens = max(1, sum(count_tokens(message_text(m)) for m in messages))
        completion_tokens = count_tokens(content)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "cost": 0 if model.is_free else model.cost(prompt_tokens, completion_tokens),
            "is_byok": False,
        }
        gen_id = f"gen-{int(time.time())}-{next(sim.ids):06d}"
        created = int(time.time())
        sim.request_stats.record(model.id, 200, decision.mode, self.caller)
        if body.get("stream") is True:
            self._stream(model, gen_id, created, content, finish_reason, usage, mode=decision.mode)
        elif decision.mode == "stream-error":
            # The answer had started when the provider failed: OpenRouter still says 200, with an error object.
            self._send_json(200, {
                "id": gen_id, "provider": model.provider, "model": model.id, "object": "chat.completion",
                "created": created,
                "choices": [{"index": 0, "logprobs": None, "finish_reason": "error", "native_finish_reason": "error",
                             "message": {"role": "assistant", "content": "", "refusal": None}}],
                "error": _STREAM_ERROR,
            })
        elif decision.mode == "malformed":
            # Cut mid-object: a proxy must treat this as a broken answer, not a slow one.
            self._send_raw(200, f'{{"id": "{gen_id}", "object": "chat.completion", "choices": [{{"mes'.encode())
        else:
            self._send_json(
                200,
                {
                    "id": gen_id,
                    "provider": model.provider,
                    "model": model.id,
                    "object": "chat.completion",
                    "created": created,
                    "choices": [
                        {
                            "index": 0,
                            "logprobs": None,
                            "finish_reason": finish_reason,
                            "native_finish_reason": finish_reason,
                            "message": {"role": "assistant", "content": content, "refusal": None, "reasoning": None},
                        }
                    ],
                    "usage": usage,
                },
            )

    def _stream(
        self,
        model: CatalogModel,
        gen_id: str,
        created: int,
        content: str,
        finish_reason: str,
        usage: dict[str, Any],
        *,
        mode: str | None,
    ) -> None:
        """SSE as OpenRouter sends it: role, content pieces, finish reason, usage with no choices, [DONE].

        `stream-error`: the first piece, then an error event with finish_reason
        "error" and the end of the stream, as OpenRouter does when a provider fails mid-generation.
        """
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")  # no length is known up front, so the end of the body is EOF
        self.end_headers()
        self.close_connection = True

        def chunk(choices: list[dict[str, Any]], **extra: Any) -> None:
            payload = {
                "id": gen_id,
                "provider": model.provider,
                "model": model.id,
                "object": "chat.completion.chunk",
                "created": created,
                "choices": choices,
                **extra,
            }
            self._send_event(json.dumps(payload))

        def choice(delta: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
            return [{"index": 0, "delta": delta, "finish_reason": finish, "native_finish_reason": finish, "logprobs": None}]

        chunk(choice({"role": "assistant", "content": ""}))
        if mode == "malformed":
            self._send_event('{"id": "' + gen_id + '", "choices": [{"delta": {"cont')
        elif mode == "stream-error":
            pieces = re.findall(r"\S+\s*", content)
            if pieces:
                chunk(choice({"content": pieces[0]}))
            chunk(choice({"content": ""}, "error"), error=_STREAM_ERROR)
            return
        else:
            for piece in re.findall(r"\S+\s*", content):
                chunk(choice({"content": piece}))
            chunk(choice({}, finish_reason))
            chunk([], usage=usage)
        self._send_event("[DONE]")

    def _send_event(self, data: str) -> None:
        self.wfile.write(f"data: {data}\n\n".encode())
        self.wfile.flush()

    def _hang(self) -> None:
        """Answer nothing until the client hangs up, the simulator stops, or the cap passes.

        Watches the socket instead of sleeping blindly, so a client's timeout
        frees this thread at once; other requests have their own threads.
        """
        sim = self.server
        self.close_connection = True
        deadline = time.monotonic() + sim.hang_cap_s
        while not sim.stopping.is_set() and time.monotonic() < deadline:
            readable, _, _ = select.select([self.connection], [], [], 0.2)
            if not readable:
                continue
            try:
                if not self.connection.recv(1, socket.MSG_PEEK):
                    return  # the client closed its end
            except OSError:
                return
            sim.stopping.wait(0.2)  # the client sent more bytes but is still there: keep hanging

    # -- replies --

    def _reject(self, model: CatalogModel | None, status: int, message: str, decision: Decision | None = None) -> None:
        self.server.request_stats.record(model.id if model else None, status, caller=self.caller)
        headers = dict(decision.headers or {}) if decision is not None else {}
        if decision is not None and decision.retry_after is not None:
            headers["Retry-After"] = str(decision.retry_after)
        metadata: dict[str, Any] | None = {"provider_name": model.provider} if model and decision else None
        if metadata is not None and decision is not None and decision.reason == "upstream":
            assert model is not None
            metadata["raw"] = (f"{model.id} is temporarily rate-limited upstream. Please retry shortly, or add "
                               "your own key to accumulate your rate limits: https://openrouter.ai/settings/integrations")
        elif metadata is not None and decision is not None and decision.headers:
            metadata = {"headers": decision.headers, "provider_name": None}  # the account's limit, no provider
        self._send_error(status, message, headers, metadata)

    def _send_error(
        self, status: int, message: str, headers: dict[str, str] | None = None, metadata: dict[str, Any] | None = None
    ) -> None:
        error: dict[str, Any] = {"code": status, "message": message}
        if metadata:
            error["metadata"] = metadata
        self._send_json(status, {"error": error}, headers)

    def _send_json(self, status: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        self._send_raw(status, json.dumps(payload).encode(), headers)

    def _send_raw(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _read_body(self) -> bytes:
        length = self.headers.get("Content-Length")
        if not length or not length.isdigit():
            return b""
        return self.rfile.read(int(length))


def catalog_entries(faults: FaultBook) -> list[dict[str, Any]]:
    """`/api/v1/models` as the faults in force make it: retired models gone, priced ones priced."""
    out = []
    for model in MODELS:
        fault = faults.fault_of(model.id)
        if fault is not None and fault.retired:
            continue
        out.append(model.to_openrouter(price=fault.price if fault else None, no_tools=bool(fault and fault.no_tools)))
    return out


def _parse_json(raw: bytes, *, what: str) -> Any:
    try:
        return json.loads(raw or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{what} is not valid JSON: {exc}") from None


def _is_loopback(address: str) -> bool:
    return address.startswith("127.") or address in ("::1", "::ffff:127.0.0.1")


# --- the Python API ----------------------------------------------------------------


class Simulator:
    """The simulator in a background thread: for tests, `rollout sandbox up` and drills.

    >>> with Simulator() as sim:
    ...     sim.set_fault("glm-4.5-air", status=429)
    """

    def __init__(
        self,
        host: str = DEFAULT_HOST,
        port: int = 0,
        api_key: str = DEFAULT_API_KEY,
        *,
        hang_cap_s: float = HANG_CAP_S,
        callers: dict[str, str] | None = None,
    ) -> None:
        """`callers`: caller (gateway | direct) -> the OpenRouter key it sends, besides `api_key` (no caller)."""
        for name, key in (callers or {}).items():
            if name not in CALLERS:
                raise InputError(f"unknown caller {name!r}; callers are {', '.join(CALLERS)}")
            if not key or key == api_key:
                raise InputError(f"caller {name}'s key must be set and differ from the default key")
        if callers and len(set(callers.values())) < len(callers):
            raise InputError("each caller needs a key of its own: the key tells the callers apart")
        self.host = host
        self.requested_port = port
        self.api_key = api_key
        self.hang_cap_s = hang_cap_s
        self.callers = dict(callers or {})
        self._server: _SimServer | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> Simulator:
        """Bind and serve in a daemon thread; a busy port is an InputError, not a traceback."""
        if self._server is not None:
            return self
        try:
            self._server = _SimServer((self.host, self.requested_port), self.api_key, self.hang_cap_s, self.callers)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise InputError(
                    f"port {self.requested_port} on {self.host} is in use; choose another with --port"
                ) from None
            raise InputError(
                f"cannot listen on {self.host}:{self.requested_port}: {exc.strerror or exc}; "
                "choose another --host or --port"
            ) from None
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name="openrouter-sim", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and release the port; hung requests are let go, not waited for."""
        server, self._server = self._server, None
        if server is None:
            return
        server.stopping.set()
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def port(self) -> int:
        return int(self._require().server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_base(self) -> str:
        """What a LiteLLM openrouter deployment takes as `api_base`."""
        return self.url + API_PREFIX

    def set_fault(self, model: str, **fault: Any) -> Fault:
        """Put a fault in force for a model id, `openrouter/` id, gateway alias, or `*` (latency only)."""
        return self._require().faults.set(model, fault)[1]

    def faults(self) -> dict[str, dict[str, Any]]:
        return self._require().faults.snapshot()

    def set_account(self, **limits: Any) -> AccountLimits:
        """Account-wide limits on `:free` models: `quota_left` (today), `rpm` (per minute)."""
        return self._require().faults.set_account(limits)

    def stats(self) -> dict[str, Any]:
        return self._require().request_stats.snapshot()

    def reset_stats(self) -> None:
        self._require().request_stats.reset()

    def _require(self) -> _SimServer:
        if self._server is None:
            raise UnavailableError("the simulator is not running; call Simulator.start() first")
        return self._server


class SimulatorAdmin:
    """Client of a running simulator's admin API, for `rollout sandbox fault` and drills.

    urllib keeps it importable without httpx and fast to load.
    """

    def __init__(self, url: str, *, timeout: float = 5.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout

    def health(self) -> dict[str, Any]:
        return self._request("GET", "/health")

    def faults(self) -> dict[str, dict[str, Any]]:
        return self._request("GET", "/faults")["faults"]

    def account(self) -> dict[str, Any]:
        return self._request("GET", "/account")["account"]

    def set_account(self, **limits: Any) -> dict[str, Any]:
        """Put account-wide limits in force (quota_left, rpm); the others are lifted."""
        return self._request("PUT", "/account", limits)["account"]

    def set_fault(self, model: str, **fault: Any) -> dict[str, Any]:
        """Put a fault in force; returns the stored fault with defaults filled in."""
        return self._request("PUT", "/faults/" + urllib.parse.quote(model, safe="/:*"), fault)["fault"]

    def clear(self, model: str | None = None) -> None:
        """Clear one model's fault, or all of them."""
        path = "/faults" if model is None else "/faults/" + urllib.parse.quote(model, safe="/:*")
        self._request("DELETE", path)

    def stats(self) -> dict[str, Any]:
        return self._request("GET", "/stats")

    def reset_stats(self) -> None:
        self._request("POST", "/stats/reset", {})

    def _request(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + ADMIN_PREFIX + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as exc:
            message = _error_message(exc.read()) or exc.reason
            if 400 <= exc.code < 500:
                raise InputError(f"simulator at {self.url} refused {method} {path}: {message}") from None
            raise UnavailableError(f"simulator at {self.url} failed {method} {path}: {message}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise UnavailableError(
                f"simulator at {self.url} does not answer ({reason}); start it with `rollout sandbox up`"
            ) from None


def _caller(text: str) -> tuple[str, str]:
    name, sep, key = text.partition("=")
    if not sep:
        raise InputError(f"--caller {text!r} is not NAME=KEY; e.g. --caller gateway=sk-or-sandbox-gateway")
    return name, key


def _error_message(raw: bytes) -> str:
    try:
        return str(json.loads(raw)["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return raw.decode(errors="replace").strip()


# --- the foreground entry point ------------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Serve in the foreground until SIGTERM or Ctrl-C; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m rollout_cli.simulator", description="Local OpenRouter simulator with fault injection."
    )
    parser.add_argument("--host", default=DEFAULT_HOST, help="address to bind (default %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to bind, 0 for any (default %(default)s)")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY, help="the key clients must send as Bearer")
    parser.add_argument("--hang-cap", type=float, default=HANG_CAP_S, help="seconds a hang fault lasts at most")
    parser.add_argument("--caller", action="append", default=[], metavar="NAME=KEY",
                        help=f"a caller ({', '.join(CALLERS)}) and the key it sends, so faults can pick it "
                             "(repeatable)")
    args = parser.parse_args(argv)

    try:
        callers = dict(_caller(text) for text in args.caller)
        sim = Simulator(args.host, args.port, args.api_key, hang_cap_s=args.hang_cap, callers=callers)
    except InputError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return int(exc.exit_code)
    done = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: done.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        sim.start()
        print(f"simulator listening on {sim.url}", flush=True)
        while not done.wait(0.5):
            pass
    except RolloutError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return int(exc.exit_code)
    finally:
        sim.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
