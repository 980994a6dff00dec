"""The sandbox's sample app: a long-running OpenAI-compatible client, as a real app would be.

Standalone on purpose (stdlib, the OpenFeature packages and prometheus_client,
no rollout import): it runs as a local process or inside a container that bind-mounts its
`.env` and `flags.json` one by one, the compose pattern.

Per request it picks a user id, asks the REAL OpenFeature SDK with the flagd
provider in file mode whether that user goes through the gateway (the flag's
fractional targeting on the targeting key), and calls the LiteLLM gateway or the
(simulated) OpenRouter accordingly. It watches its files: the flagd provider
polls flags.json, and the app re-reads `.env` when it changes. With
APP_READS_FILES_ONCE=1 it is the app that ignores its files: it reads both at
start and again only on SIGHUP (what `app.reload: signal` is for).

Driven over a loopback control port: POST /load {"rps", "duration_s", "model",
"direct_model"}; GET /status; GET /requests?since=EPOCH; GET /metrics: the app's
metrics contract (docs/SETUP.md) in the Prometheus format, per path (gateway |
direct): `llm_requests_total`, `llm_request_failures_total{error_type}` and the
OpenTelemetry GenAI duration histogram `gen_ai_client_operation_duration_seconds`.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
)

USER_AGENT = "sample-app/1.0 (rollout sandbox app)"  # not rollout-check/: the gateway counts it as app traffic
FLAGS_POLL_MS = 500
ENV_POLL_S = 0.5
MAX_RECORDS = 200_000
PATHS = ("gateway", "direct")
# The text format every Prometheus reads (Debian 12's 2.42 knows no later one); the names here need no more.
METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# OpenTelemetry's advice for gen_ai.client.operation.duration (0.01 s doubling to 81.92 s), with finer
# buckets below 0.1 s: the gateway's cost is judged against a few ms on each path, and 10 ms must show.
DURATION_BUCKETS = (0.001, 0.0025, 0.005, 0.0075, 0.01, 0.0125, 0.015, 0.0175, 0.02, 0.025, 0.03, 0.035, 0.04,
                    0.05, 0.06, 0.08, 0.1, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)


class Metrics:
    """The app's metrics contract (docs/SETUP.md): what a real app exports for rollout to judge paths by."""

    def __init__(self) -> None:
        disable_created_metrics()  # no *_created series: nothing reads them, and they double the count
        self.registry = CollectorRegistry()
        self.requests = Counter("llm_requests", "LLM requests sent, by path (gateway | direct)", ["path"],
                                registry=self.registry)
        self.failures = Counter("llm_request_failures", "LLM requests that failed, by path and error.type "
                                "(HTTP status code, timeout, or the exception's class)", ["path", "error_type"],
                                registry=self.registry)
        self.duration = Histogram("gen_ai_client_operation_duration_seconds", "GenAI operation duration "
                                  "(OpenTelemetry gen_ai.client.operation.duration)",
                                  ["path", "gen_ai_operation_name", "error_type"], buckets=DURATION_BUCKETS,
                                  registry=self.registry)
        for path in PATHS:  # both paths exported from the start, at zero: "no requests" is not "no data"
            self.requests.labels(path)
            self.duration.labels(path, "chat", "")

    def observe(self, path: str, seconds: float, error_type: str | None) -> None:
        """One request: error_type None on success (OpenTelemetry leaves error.type unset then)."""
        self.requests.labels(path).inc()
        if error_type is not None:
            self.failures.labels(path, error_type).inc()
        self.duration.labels(path, "chat", error_type or "").observe(seconds)

    def exposition(self) -> bytes:
        return bytes(generate_latest(self.registry))


def error_type(exc: BaseException) -> str:
    """OpenTelemetry's error.type for a failed call: the HTTP status code, `timeout`, or the exception's class."""
    if isinstance(exc, urllib.error.HTTPError):
        return str(exc.code)
    reason = exc.reason if isinstance(exc, urllib.error.URLError) and isinstance(exc.reason, BaseException) else exc
    if isinstance(reason, TimeoutError):
        return "timeout"
    return type(reason).__name__


def read_env(path: str) -> dict[str, str]:
    """The app's dotenv reader: KEY=VALUE, `export`, quotes, `# comments`."""
    out: dict[str, str] = {}
    with open(path, encoding="utf-8") as handle:
        for raw in handle:
            line = raw.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, _, value = line.removeprefix("export ").partition("=")
            value = value.strip()
            if value[:1] in ("'", '"') and value[0] in value[1:]:
                value = value[1:value.index(value[0], 1)]
            else:
                value = value.split(" #", 1)[0].strip()
            out[key.strip()] = value
    return out


def _read_key(path: str | None) -> str:
    """The gateway key from its file (never from the environment, which `docker inspect` shows)."""
    if not path:
        return ""
    with open(path, encoding="utf-8") as handle:
        return handle.read(4096).strip()


class App:
    def __init__(self) -> None:
        self.env_file = os.environ["APP_ENV_FILE"]
        self.flags_file = os.environ["APP_FLAGS_FILE"]
        self.flag_key = os.environ.get("APP_FLAG_KEY", "litellm-gateway")
        self.once = os.environ.get("APP_READS_FILES_ONCE") == "1"
        self.gateway_key = _read_key(os.environ.get("LITELLM_API_KEY_FILE"))
        self.direct_url = os.environ["OPENROUTER_BASE_URL"].rstrip("/")
        self.direct_key = os.environ.get("OPENROUTER_API_KEY", "")
        self.lock = threading.Lock()
        self.records: deque[dict[str, Any]] = deque(maxlen=MAX_RECORDS)
        self.load: dict[str, Any] = {"rps": 0.0, "until": 0.0, "model": os.environ.get("APP_MODEL", "glm-4.5-air"),
                                     "direct_model": os.environ.get("APP_DIRECT_MODEL", "")}
        self.started = time.time()
        self.reloads = 0
        self.in_flight = 0
        self.totals: dict[str, int] = dict.fromkeys(PATHS, 0)  # a counter, however many records are kept
        self.metrics = Metrics()
        self.env: dict[str, str] = {}
        self.env_mtime = 0.0
        self._copy: str | None = None
        self.read_env()
        self.client = self._open_flags()

    # --- files ---------------------------------------------------------------

    def read_env(self) -> None:
        mtime = os.stat(self.env_file).st_mtime
        values = read_env(self.env_file)
        with self.lock:
            self.env, self.env_mtime = values, mtime

    def _flags_source(self) -> str:
        if not self.once:
            return self.flags_file
        # An app that ignores its files: it evaluates a private snapshot, refreshed on SIGHUP only.
        if self._copy is None:  # beside its pid file, in the sandbox's folder: it goes with the sandbox
            beside = os.path.dirname(os.environ.get("APP_PID_FILE", "")) or None
            fd, self._copy = tempfile.mkstemp(prefix="sample-app-flags-", suffix=".json", dir=beside)
            os.close(fd)
        tmp = self._copy + ".new"
        shutil.copyfile(self.flags_file, tmp)
        os.replace(tmp, self._copy)
        return self._copy

    def _open_flags(self) -> Any:
        from openfeature import api
        from openfeature.contrib.provider.flagd import FlagdProvider
        from openfeature.contrib.provider.flagd.config import ResolverType

        # The file watcher checks the file's mtime every deadline_ms (openfeature-provider-flagd 0.6).
        provider = FlagdProvider(
            resolver_type=ResolverType.FILE,
            offline_flag_source_path=self._flags_source(),
            deadline_ms=FLAGS_POLL_MS,
        )
        api.set_provider(provider)
        return api.get_client("sample-app")

    def reload(self) -> None:
        """SIGHUP: read .env and flags.json again."""
        self.read_env()
        if self.once:
            self._flags_source()
        self.reloads += 1

    def watch_env(self) -> None:
        while not self.once:
            try:
                if os.stat(self.env_file).st_mtime != self.env_mtime:
                    self.read_env()
            except (OSError, UnicodeDecodeError):
                pass  # mid-write or gone for a moment: keep the last good settings
            time.sleep(ENV_POLL_S)

    # --- requests ------------------------------------------------------------

    def via_gateway(self, user: str) -> bool:
        from openfeature.evaluation_context import EvaluationContext

        with self.lock:
            enabled = self.env.get("LITELLM_ENABLED", "false").lower() == "true"
        if not enabled:
            return False
        return bool(self.client.get_boolean_value(self.flag_key, False, EvaluationContext(targeting_key=user)))

    def one(self, user: str, model: str, direct_model: str) -> None:
        try:
            self._one(user, model, direct_model)
        finally:
            with self.lock:
                self.in_flight -= 1

    def _one(self, user: str, model: str, direct_model: str) -> None:
        gateway = self.via_gateway(user)
        with self.lock:
            base = self.env.get("LITELLM_URL", "").rstrip("/")
        if gateway:
            url, key, asked = base + "/v1/chat/completions", self.gateway_key, model
        else:
            url, key, asked = self.direct_url + "/chat/completions", self.direct_key, direct_model or model
        started, clock, status, error, failure = time.time(), time.perf_counter(), None, None, None
        try:
            status = self.call(url, key, asked, user)
        except urllib.error.HTTPError as exc:
            status, failure = exc.code, error_type(exc)
        except (OSError, ValueError) as exc:
            error = failure = error_type(exc)
        seconds = time.perf_counter() - clock
        latency = seconds * 1000
        path = "gateway" if gateway else "direct"
        self.metrics.observe(path, seconds, failure)
        with self.lock:
            self.totals[path] += 1
            self.records.append({"t": started, "path": path, "status": status,
                                 "error": error, "latency_ms": round(latency, 1)})

    def call(self, url: str, key: str, model: str, user: str) -> int:
        """One chat completion; its HTTP status (urllib raises HTTPError for >= 400, json a ValueError for a
        broken answer: a failure the app feels, though the status said 200)."""
        body = json.dumps({"model": model, "messages": [{"role": "user", "content": "ping"}], "max_tokens": 16,
                           "user": user}).encode()
        request = urllib.request.Request(url, body, {"Content-Type": "application/json", "User-Agent": USER_AGENT,
                                                     "Authorization": f"Bearer {key}"})
        with urllib.request.urlopen(request, timeout=30) as answer:
            json.loads(answer.read())
            return int(answer.status)

    def drive(self) -> None:
        pool = ThreadPoolExecutor(max_workers=32)
        next_at = time.monotonic()
        while True:
            with self.lock:
                rps, until = self.load["rps"], self.load["until"]
                model, direct_model = self.load["model"], self.load["direct_model"]
            if rps <= 0 or time.time() >= until:
                time.sleep(0.05)
                next_at = time.monotonic()
                continue
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
                continue  # the load may have ended or changed meanwhile: read it again
            next_at += 1.0 / rps
            with self.lock:  # checked and counted at once: `status` never sees a load over with one still to go
                if time.time() >= self.load["until"]:
                    continue
                self.in_flight += 1
            pool.submit(self.one, f"u-{random.getrandbits(40):010x}", model, direct_model)

    # --- control -------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        with self.lock:
            counts = dict(self.totals)
            return {"pid": os.getpid(), "started": self.started, "reads_files_once": self.once,
                    "reloads": self.reloads, "env": {k: v for k, v in self.env.items() if "KEY" not in k},
                    "load": dict(self.load), "counts": counts, "in_flight": self.in_flight,
                    "now": time.time()}


def serve(app: App, port: int) -> None:
    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, body: Any) -> None:
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            url = urlparse(self.path)
            if url.path == "/status":
                self._send(200, app.status())
            elif url.path == "/metrics":
                # As a real app exports them: rollout's verify.traffic divides the gateway's count by
                # llm_requests_total to observe the share (app.metrics_url); Prometheus scrapes it all.
                data = app.metrics.exposition()
                self.send_response(200)
                self.send_header("Content-Type", METRICS_CONTENT_TYPE)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            elif url.path == "/probe":
                # The direct path alone (what level 3's verify.app asks with the gateway stopped).
                try:
                    app.call(app.direct_url + "/chat/completions", app.direct_key, app.load["direct_model"] or
                             app.load["model"], "probe")
                    self._send(200, {"direct": "ok"})
                except (OSError, ValueError) as exc:
                    self._send(502, {"direct": type(exc).__name__})
            elif url.path == "/requests":
                since = float(parse_qs(url.query).get("since", ["0"])[0])
                with app.lock:
                    rows = [r for r in app.records if r["t"] >= since]
                self._send(200, {"requests": rows, "now": time.time()})
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self) -> None:
            if urlparse(self.path).path != "/load":
                self._send(404, {"error": "not found"})
                return
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
            with app.lock:
                app.load = {"rps": float(body.get("rps", 0)), "until": time.time() + float(body.get("duration_s", 0)),
                            "model": body.get("model") or app.load["model"],
                            "direct_model": body.get("direct_model") or app.load["direct_model"]}
            self._send(200, app.status())

        def log_message(self, format: str, *args: Any) -> None:
            pass  # quiet: the log is for the app's own events

    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


def main() -> None:
    app = App()
    signal.signal(signal.SIGHUP, lambda *_: app.reload())
    # SIGTERM keeps its default (or coverage's handler, which saves its data first): the app holds no state.
    pid_file = os.environ.get("APP_PID_FILE")
    if pid_file:
        with open(pid_file, "w") as handle:
            handle.write(f"{os.getpid()}\n")
    threading.Thread(target=app.watch_env, daemon=True).start()
    threading.Thread(target=app.drive, daemon=True).start()
    print(f"sample app {os.getpid()}: flags {app.flags_file}, env {app.env_file}, "
          f"{'reads its files once' if app.once else 'watches its files'}", flush=True)
    serve(app, int(os.environ["APP_PORT"]))


if __name__ == "__main__":
    main()
