"""The OpenRouter simulator over real HTTP on loopback, as the gateway and the CLI use it."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rollout_cli.errors import InputError
from rollout_cli.simulator import FREE_MODELS, Simulator, SimulatorAdmin

GLM = "z-ai/glm-4.5-air:free"
QWEN = "qwen/qwen3-coder:free"
SRC = Path(__file__).resolve().parents[1] / "src"


class Reply:
    def __init__(self, status: int, headers: Any, body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    url: str, body: Any = None, *, method: str | None = None, key: str | None = None, timeout: float = 10
) -> Reply:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if key is not None:
        request.add_header("Authorization", f"Bearer {key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return Reply(response.status, response.headers, response.read())
    except urllib.error.HTTPError as exc:
        return Reply(exc.code, exc.headers, exc.read())


def chat(sim: Simulator, model: str, prompt: str = "hello", *, timeout: float = 10, **extra: Any) -> Reply:
    body = {"model": model, "messages": [{"role": "user", "content": prompt}], "usage": {"include": True}, **extra}
    return call(sim.api_base + "/chat/completions", body, key=sim.api_key, timeout=timeout)


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator(api_key="sk-sim-test-key") as simulator:
        yield simulator


def test_ping_answers_pong_deterministically_with_openai_shape(sim: Simulator) -> None:
    first = chat(sim, "openrouter/" + GLM, "Reply with one word to this ping")
    second = chat(sim, GLM, "Reply with one word to this ping")
    assert first.status == 200
    body = first.json()
    assert body["object"] == "chat.completion"
    assert body["model"] == GLM
    assert body["choices"][0]["message"]["content"] == "pong"
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["cost"] == 0
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]
    assert body["provider"]
    assert second.json()["choices"][0]["message"]["content"] == "pong"


def test_json_prompt_answers_parseable_json_naming_the_model(sim: Simulator) -> None:
    content = chat(sim, QWEN, "Answer in JSON only").json()["choices"][0]["message"]["content"]
    assert json.loads(content) == {"ok": True, "model": QWEN}


def test_other_prompts_echo_model_and_stable_hash(sim: Simulator) -> None:
    a = chat(sim, QWEN, "tell me a story").json()["choices"][0]["message"]["content"]
    b = chat(sim, QWEN, "tell me a story").json()["choices"][0]["message"]["content"]
    c = chat(sim, QWEN, "tell me another story").json()["choices"][0]["message"]["content"]
    assert a == b != c
    assert QWEN in a


def test_max_tokens_truncates_with_finish_reason_length(sim: Simulator) -> None:
    body = chat(sim, QWEN, "one two three four five six", max_tokens=3).json()
    assert len(body["choices"][0]["message"]["content"].split()) == 3
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 3


def test_wrong_or_missing_key_is_openrouter_401(sim: Simulator) -> None:
    body = {"model": GLM, "messages": [{"role": "user", "content": "ping"}]}
    wrong = call(sim.api_base + "/chat/completions", body, key="sk-wrong")
    missing = call(sim.api_base + "/chat/completions", body)
    for reply in (wrong, missing):
        assert reply.status == 401
        assert reply.json()["error"]["code"] == 401
        assert reply.json()["error"]["message"]


def test_unknown_model_and_alias_are_400(sim: Simulator) -> None:
    for model in ("nobody/nothing:free", "glm-4.5-air"):
        reply = chat(sim, model)
        assert reply.status == 400
        assert model in reply.json()["error"]["message"]


def test_models_list_prices_free_at_zero_and_paid_above(sim: Simulator) -> None:
    models = {m["id"]: m for m in call(sim.api_base + "/models").json()["data"]}
    for _, model_id in FREE_MODELS:
        assert models[model_id]["pricing"]["prompt"] == "0"
        assert models[model_id]["pricing"]["completion"] == "0"
        assert models[model_id]["context_length"] > 0
    assert float(models["openai/gpt-4o-mini"]["pricing"]["prompt"]) > 0
    assert float(models["anthropic/claude-3.5-haiku"]["pricing"]["completion"]) > 0


def test_paid_model_reports_nonzero_cost(sim: Simulator) -> None:
    assert chat(sim, "openai/gpt-4o-mini", "ping").json()["usage"]["cost"] > 0


def test_streaming_is_sse_that_reassembles_and_ends_with_done(sim: Simulator) -> None:
    prompt = "stream me a sentence please"
    expected = chat(sim, GLM, prompt).json()["choices"][0]["message"]["content"]
    reply = chat(sim, GLM, prompt, stream=True)
    assert reply.status == 200
    assert reply.headers["Content-Type"].startswith("text/event-stream")
    events = [line[len("data: ") :] for line in reply.body.decode().splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(event) for event in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == GLM for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == expected
    finishes = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
    assert finishes == ["stop"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] > 0


def test_429_carries_retry_after_and_only_hits_its_model(sim: Simulator) -> None:
    sim.set_fault("glm-4.5-air", status=429, retry_after=7)
    reply = chat(sim, GLM, "ping")
    assert reply.status == 429
    assert reply.headers["Retry-After"] == "7"
    assert reply.json()["error"]["code"] == 429
    assert chat(sim, QWEN, "ping").status == 200


@pytest.mark.parametrize("status", [500, 502, 503])
def test_upstream_errors_pass_their_status(sim: Simulator, status: int) -> None:
    sim.set_fault(QWEN, status=status)
    reply = chat(sim, "openrouter/" + QWEN)
    assert reply.status == status
    assert reply.json()["error"]["code"] == status


def test_rate_half_fails_exactly_every_second_request(sim: Simulator) -> None:
    sim.set_fault("deepseek-chat-v3.1", status=503, rate=0.5)
    statuses = [chat(sim, "deepseek/deepseek-chat-v3.1:free").status for _ in range(6)]
    assert statuses == [200, 503, 200, 503, 200, 503]


def test_latency_delays_successful_answers(sim: Simulator) -> None:
    sim.set_fault("minimax-m2", latency_ms=300)
    started = time.monotonic()
    reply = chat(sim, "minimax/minimax-m2:free", "ping")
    assert reply.status == 200
    assert time.monotonic() - started >= 0.3


def test_global_latency_applies_to_every_model(sim: Simulator) -> None:
    sim.set_fault("*", latency_ms=200)
    started = time.monotonic()
    assert chat(sim, QWEN).status == 200
    assert time.monotonic() - started >= 0.2
    with pytest.raises(InputError, match="only latency_ms"):
        sim.set_fault("*", status=500)


def test_hang_times_out_the_client_while_other_models_answer(sim: Simulator) -> None:
    sim.set_fault("kimi-k2", mode="hang")
    outcome: dict[str, BaseException] = {}

    def hung_call() -> None:
        try:
            chat(sim, "moonshotai/kimi-k2:free", timeout=1.5)
        except (TimeoutError, urllib.error.URLError) as exc:
            outcome["error"] = exc

    worker = threading.Thread(target=hung_call)
    worker.start()
    while sim.stats()["models"].get("moonshotai/kimi-k2:free", {}).get("by_mode", {}).get("hang") != 1:
        time.sleep(0.02)
    assert chat(sim, QWEN, "ping").status == 200
    worker.join(timeout=30)
    assert not worker.is_alive()
    assert "error" in outcome  # the client timed out: the hang never answered


def test_malformed_returns_200_with_invalid_json(sim: Simulator) -> None:
    sim.set_fault(GLM, mode="malformed")
    reply = chat(sim, GLM, "ping")
    assert reply.status == 200
    with pytest.raises(json.JSONDecodeError, match="line 1 column"):
        reply.json()


def test_empty_returns_200_with_empty_content(sim: Simulator) -> None:
    sim.set_fault(GLM, mode="empty")
    reply = chat(sim, GLM, "ping")
    assert reply.status == 200
    assert reply.json()["choices"][0]["message"]["content"] == ""


def test_unknown_model_in_fault_is_rejected_listing_known_ones(sim: Simulator) -> None:
    with pytest.raises(InputError, match=r"known models: glm-4.5-air"):
        sim.set_fault("gpt-5-free", status=500)
    reply = call(sim.url + "/_sim/faults/gpt-5-free", {"status": 500}, method="PUT")
    assert reply.status == 400
    assert "qwen/qwen3-coder:free" in reply.json()["error"]["message"]


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ({"status": 200}, "fault status for z-ai/glm-4.5-air:free must be an HTTP error code 400..599, got 200"),
        ({"status": 500, "rate": 2}, "fault rate for z-ai/glm-4.5-air:free must be a number from 0 to 1, got 2"),
        ({"mode": "explode"},
         "fault mode for z-ai/glm-4.5-air:free must be one of hang, malformed, empty, stream-error, got 'explode'"),
        ({"colour": "red"}, "unknown fault field 'colour' for z-ai/glm-4.5-air:free; expected: status, rate, "
                            "latency_ms, mode, retry_after, retired, price, no_tools, upstream, via"),
        ({}, "a fault for z-ai/glm-4.5-air:free needs status, mode, latency_ms, retired, price or no_tools"),
    ],
    ids=["status-200", "rate-2", "unknown-mode", "unknown-field", "empty"],
)
def test_invalid_fault_fields_are_rejected(sim: Simulator, fault: dict, message: str) -> None:
    with pytest.raises(InputError, match=f"^{re.escape(message)}$"):
        sim.set_fault(GLM, **fault)
    assert sim.faults() == {}  # nothing half-set


def test_admin_client_sets_lists_and_clears_faults(sim: Simulator) -> None:
    admin = SimulatorAdmin(sim.url)
    assert admin.health()["status"] == "ok"
    stored = admin.set_fault("qwen3-coder", status=429)
    assert stored["retry_after"] == 1
    assert admin.faults() == {QWEN: stored}
    assert chat(sim, QWEN).status == 429
    admin.clear("qwen3-coder")
    assert chat(sim, QWEN).status == 200
    admin.set_fault(GLM, status=500)
    admin.set_fault("openrouter/" + QWEN, status=500)
    admin.clear()
    assert admin.faults() == {}
    with pytest.raises(InputError, match="unknown model"):
        admin.set_fault("nope", status=500)


def test_stats_count_per_model_and_status_and_reset(sim: Simulator) -> None:
    admin = SimulatorAdmin(sim.url)
    sim.set_fault(GLM, status=429, rate=0.5)
    for _ in range(4):
        chat(sim, GLM)
    chat(sim, QWEN)
    stats = admin.stats()
    assert stats["total"] == 5
    assert stats["models"][GLM] == {"requests": 4, "by_status": {"200": 2, "429": 2}, "by_mode": {}}
    assert stats["by_status"] == {"200": 3, "429": 2}
    admin.reset_stats()
    assert admin.stats()["total"] == 0


CALLER_KEYS = {"gateway": "sk-or-test-gateway", "direct": "sk-or-test-app"}


def test_a_fault_via_one_caller_fails_only_that_callers_requests_and_counts_only_them() -> None:
    with Simulator(api_key="sk-sim-test-key", callers=CALLER_KEYS) as simulator:
        url = simulator.api_base + "/chat/completions"
        body = {"model": GLM, "messages": [{"role": "user", "content": "hi"}]}

        def statuses(caller: str, n: int) -> list[int]:
            return [call(url, body, key=CALLER_KEYS[caller]).status for _ in range(n)]

        SimulatorAdmin(simulator.url).set_fault("glm-4.5-air", status=500, rate=0.5, via="gateway")
        assert statuses("direct", 3) == [200, 200, 200]
        assert statuses("gateway", 4) == [200, 500, 200, 500]  # the rate counts the gateway's requests alone
        assert call(url, body, key="sk-sim-test-key").status == 200  # the default key is no named caller
        simulator.set_fault("glm-4.5-air", latency_ms=1, status=429, via="direct")
        assert statuses("gateway", 2) == [200, 200]
        assert statuses("direct", 1) == [429]
        simulator.set_fault("glm-4.5-air", status=503)  # via both: a provider-wide failure
        assert statuses("gateway", 1) + statuses("direct", 1) == [503, 503]
        by_caller = SimulatorAdmin(simulator.url).stats()["by_caller"]
    assert by_caller == {"direct": {"requests": 5, "by_status": {"200": 3, "429": 1, "503": 1}},
                         "gateway": {"requests": 7, "by_status": {"200": 4, "500": 2, "503": 1}},
                         "other": {"requests": 1, "by_status": {"200": 1}}}


@pytest.mark.parametrize(
    ("fault", "message"),
    [({"status": 500, "via": "app"}, "fault via for z-ai/glm-4.5-air:free must be one of gateway, direct, both, "
                                     "got 'app'"),
     ({"retired": True, "via": "gateway"}, "a catalog fault for z-ai/glm-4.5-air:free (retired, price, no_tools) "
                                           "is the same for every caller; drop via 'gateway'")],
    ids=["unknown-caller", "catalog-fault"],
)
def test_a_fault_for_an_unknown_caller_or_a_catalog_fault_by_caller_is_refused(sim: Simulator, fault: dict,
                                                                                 message: str) -> None:
    with pytest.raises(InputError, match=f"^{re.escape(message)}$"):
        sim.set_fault(GLM, **fault)


def test_callers_need_keys_of_their_own() -> None:
    with pytest.raises(InputError, match="each caller needs a key of its own"):
        Simulator(callers={"gateway": "sk-same", "direct": "sk-same"})
    with pytest.raises(InputError, match="unknown caller 'app'"):
        Simulator(callers={"app": "sk-app"})


def test_port_in_use_is_an_input_error(sim: Simulator) -> None:
    with pytest.raises(InputError, match=f"port {sim.port} on 127.0.0.1 is in use; choose another with --port"):
        Simulator(port=sim.port).start()


def test_stopped_simulator_frees_its_port() -> None:
    simulator = Simulator().start()
    port = simulator.port
    simulator.stop()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", port))


def test_main_serves_in_foreground_and_stops_on_sigterm() -> None:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rollout_cli.simulator", "--port", "0", "--api-key", "sk-sim-cli"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("simulator listening on http://127.0.0.1:")
        url = line.rsplit(" ", 1)[1]
        assert call(url + "/_sim/health").json()["status"] == "ok"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_main_reports_busy_port_without_traceback(sim: Simulator) -> None:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    done = subprocess.run(
        [sys.executable, "-m", "rollout_cli.simulator", "--port", str(sim.port)],
        capture_output=True,
        text=True,
        env=env,
        timeout=30,
    )
    assert done.returncode == 2
    assert f"port {sim.port} on 127.0.0.1 is in use" in done.stderr
    assert "Traceback" not in done.stderr
