"""A hostile metrics server for tests: what a broken, slow or lying gateway (or app) answers.

    from hostile import HostileMetrics   # tests/ is on the path, as for support.py

    with HostileMetrics("nan") as server:        # 127.0.0.1, a free port, a thread of its own
        server.url                                # gateway.url for rollout.yaml
        server.metrics_url                        # server.url + "/metrics/": the gateway's metrics
        server.app_metrics_url                    # server.url + "/app/metrics": an app's llm_requests_total
        server.mode = "ok"                        # switch at any time; the next answer follows it
        server.scrapes                            # how many /metrics/ answers were started

Modes (what GET /metrics/ answers):
  ok          valid LiteLLM text: requests, failed, process_start_time_seconds, overhead histogram
  nan         the request and failure counters are NaN
  inf         ...are +Inf
  negative    the request counter is negative, and lower on every scrape (-gateway_step, -2*gateway_step, ...)
  duplicate   valid text, with the request counter's series given twice
  decreasing  valid text whose request counter goes down by 10 on every scrape, same start time
  html        an HTML page (text/html), as a login page or a wrong URL answers
  slow-drip   headers at once, then one byte every `drip_s` seconds (default 1.0), for up to 10 minutes
  huge        a valid-looking answer of `huge_bytes` (default 2 GiB), generated as it is sent (never held
              in memory), with no Content-Length (the reader finds its size only by reading)

The counters: `requests` (default 1000) and `failed` (0) are what `ok` serves (app traffic), plus
`check_requests` (0) failed requests sent by rollout's own checks (user agent rollout-check/); every /metrics/ answer
adds `gateway_step` (default 0) to `requests` first. `/app/metrics` serves `llm_requests_total` =
`app_requests`, adding `app_step` (default 0) first; `app_mode` (default "ok") applies the same modes
to it. `/health/liveliness` and `/health/readiness` answer 200, `/v1/models` lists the five aliases
(completions to them answer 404, or with `completions="slow-drip"` a valid answer one byte every
`drip_s` seconds). With `upstream=URL` (a real gateway),
every other request (GET or POST, body and headers) is relayed there, so the real LiteLLM serves
health checks and completions while the metrics lie; without it, other paths answer 404.
"""

from __future__ import annotations

import http.client
import json
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler

from support import QuietServer

TOTAL = "litellm_proxy_total_requests_metric_total"
FAILED = "litellm_proxy_failed_requests_metric_total"
STARTED = 1_796_000_000.0
ALIASES = ["glm-4.5-air", "deepseek-chat-v3.1", "minimax-m2", "kimi-k2", "qwen3-coder"]
DRIP_LIMIT_S = 600.0  # a dripping answer ends by itself even if nobody closes it


class HostileMetrics:
    def __init__(self, mode: str = "ok", *, requests: float = 1000.0, failed: float = 0.0,
                 gateway_step: float = 0.0, app_requests: float = 0.0, app_step: float = 0.0,
                 app_mode: str = "ok", drip_s: float = 1.0, huge_bytes: int = 2 * 1024**3,
                 check_requests: float = 0.0, completions: str = "404", upstream: str | None = None) -> None:
        self.mode, self.app_mode = mode, app_mode
        self.requests, self.failed, self.gateway_step = requests, failed, gateway_step
        self.app_requests, self.app_step = app_requests, app_step
        self.check_requests = check_requests  # failed requests from rollout's own checks (user agent rollout-check/)
        self.drip_s, self.huge_bytes, self.upstream = drip_s, huge_bytes, upstream
        self.completions = completions  # "404", or "slow-drip": a valid completion, one byte every drip_s
        self.models: list[str] | None = None  # what /v1/models lists (None: every sandbox alias); [] answers {}
        self.scrapes = 0
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._server = QuietServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.metrics_url = self.url + "/metrics/"
        self.app_metrics_url = self.url + "/app/metrics"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> HostileMetrics:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()  # dripping and streaming answers stop at their next byte
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def gateway_text(self, mode: str) -> str:
        with self._lock:
            self.scrapes += 1
            self.requests += self.gateway_step
            n, requests, failed = self.scrapes, self.requests, self.failed
        value = {"nan": "NaN", "inf": "+Inf", "-inf": "-Inf"}.get(mode)
        if mode == "negative":
            requests = -self.gateway_step * n if self.gateway_step else -50.0
        if mode == "decreasing":
            requests = max(requests - 10.0 * n - self.gateway_step * n, 0.0)
        series = f'{TOTAL}{{requested_model="glm-4.5-air",user_agent="app/1.0"}} {value or f"{requests:.1f}"}\n'
        lines = [
            "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.\n",
            "# TYPE process_start_time_seconds gauge\n",
            f"process_start_time_seconds {STARTED}\n",
            f"# TYPE {TOTAL} counter\n",
            series,
            series if mode == "duplicate" else "",
            f'{FAILED}{{requested_model="glm-4.5-air",user_agent="app/1.0"}} {value or f"{failed:.1f}"}\n',
            f'litellm_overhead_latency_metric_bucket{{le="0.005",model="glm-4.5-air"}} {max(requests, 0):.1f}\n',
            f'litellm_overhead_latency_metric_bucket{{le="+Inf",model="glm-4.5-air"}} {max(requests, 0):.1f}\n',
            'litellm_deployment_successful_fallbacks_total{requested_model="glm-4.5-air"} 0.0\n',
        ]
        if self.check_requests:
            checks = f'{{requested_model="glm-4.5-air",user_agent="rollout-check/0.1.0"}} {self.check_requests:.1f}\n'
            lines += [TOTAL + checks, FAILED + checks]
        return "".join(lines)

    def app_text(self, mode: str) -> str:
        with self._lock:
            self.app_requests += self.app_step
            value = self.app_requests
        shown = {"nan": "NaN", "inf": "+Inf", "negative": f"{-abs(value) - 1:.1f}"}.get(mode, f"{value:.1f}")
        line = f'llm_requests_total{{path="any"}} {shown}\n'
        return "# TYPE llm_requests_total counter\n" + line + (line if mode == "duplicate" else "")


def _handler(server: HostileMetrics) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:  # http.server's name
            path = urllib.parse.urlsplit(self.path).path
            if path in ("/metrics/", "/metrics"):
                self._metrics(server.mode, server.gateway_text)
            elif path == "/app/metrics":
                self._metrics(server.app_mode, server.app_text)
            elif path in ("/health/liveliness", "/health/readiness") and not server.upstream:
                self._send(200, b'"I\'m alive!"', "application/json")
            elif path == "/v1/models" and not server.upstream:
                listed = ALIASES if server.models is None else server.models
                body = {"data": [{"id": alias} for alias in listed]} if listed else {}  # {}: LiteLLM serving none
                self._send(200, json.dumps(body).encode(), "application/json")
            else:
                self._relay("GET")

        def do_POST(self) -> None:  # http.server's name
            if server.completions == "slow-drip" and not server.upstream:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                self._drip(json.dumps({"choices": [{"message": {"role": "assistant", "content": "pong"}}]}).encode(),
                           "application/json")
            else:
                self._relay("POST")

        def _metrics(self, mode: str, text: object) -> None:
            if mode == "html":
                self._send(200, b"<!doctype html><html><body><h1>Sign in</h1></body></html>\n", "text/html")
            elif mode == "slow-drip":
                self._drip(server.gateway_text("ok").encode())
            elif mode == "huge":
                self._huge()
            else:
                self._send(200, text(mode).encode(), "text/plain; version=0.0.4")  # type: ignore[operator]

        def _send(self, status: int, body: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _drip(self, body: bytes, kind: str = "text/plain; version=0.0.4") -> None:
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.flush()
            ends = time.monotonic() + DRIP_LIMIT_S
            for byte in body:
                if server.stopping.wait(server.drip_s) or time.monotonic() > ends:
                    break
                try:
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()
                except OSError:  # the reader gave up: what a bounded reader should do
                    break
            self.close_connection = True

        def _huge(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Connection", "close")  # no length: the body ends when the connection does
            self.end_headers()
            sent, index = 0, 0
            while sent < server.huge_bytes and not server.stopping.is_set():
                chunk = "".join(f'{TOTAL}{{requested_model="m{index + i}",user_agent="app/1.0"}} 1.0\n'
                                for i in range(1000)).encode()
                index += 1000
                try:
                    self.wfile.write(chunk)
                except OSError:
                    break
                sent += len(chunk)
            self.close_connection = True

        def _relay(self, method: str) -> None:
            if not server.upstream:
                self._send(404, b'{"error": "not found"}', "application/json")
                return
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else None
            target = urllib.parse.urlsplit(server.upstream)
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
            try:
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                conn.request(method, self.path, body=body, headers=headers)
                answer = conn.getresponse()
                data = answer.read()
            finally:
                conn.close()
            self.send_response(answer.status)
            for key, value in answer.getheaders():
                if key.lower() not in ("content-length", "transfer-encoding", "connection", "date", "server"):
                    self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    return Handler
