"""The simulator reproduces the real free tier's failures, in OpenRouter's shapes (issue 9)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest

from rollout_cli.errors import InputError
from rollout_cli.simulator import FREE_MODELS, FaultBook, Simulator
from test_simulator import call, chat

GLM = "z-ai/glm-4.5-air:free"
KIMI = "moonshotai/kimi-k2:free"
TOOLS = [{"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}}]


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator() as running:
        yield running


def catalog(sim: Simulator) -> dict[str, dict]:
    return {m["id"]: m for m in call(sim.api_base + "/models").json()["data"]}


def test_models_has_openrouters_shape_and_free_models_outside_the_chain(sim: Simulator) -> None:
    models = catalog(sim)
    glm = models[GLM]
    assert {"id", "name", "context_length", "pricing", "supported_parameters"} <= set(glm)
    assert glm["pricing"]["prompt"] == "0" and isinstance(glm["pricing"]["completion"], str)
    assert "tools" in glm["supported_parameters"] and "response_format" in glm["supported_parameters"]
    chain = {model_id for _, model_id in FREE_MODELS}
    spare = [m for m in models.values() if m["id"].endswith(":free") and m["id"] not in chain]
    assert len(spare) == 4
    assert "tools" not in models["google/gemma-3-27b-it:free"]["supported_parameters"]


def test_retired_answers_404_no_endpoints_and_leaves_the_catalog(sim: Simulator) -> None:
    sim.set_fault("kimi-k2", retired=True)
    reply = chat(sim, KIMI)
    assert reply.status == 404
    assert reply.json()["error"]["message"] == f"No endpoints found for {KIMI}."
    assert KIMI not in catalog(sim)


def test_price_makes_the_free_id_404_and_prices_it_in_the_catalog(sim: Simulator) -> None:
    sim.set_fault("minimax-m2", price=0.000002)
    reply = chat(sim, "minimax/minimax-m2:free")
    assert reply.status == 404
    assert reply.json()["error"]["message"] == (
        "The free period for minimax/minimax-m2:free has ended. Use the paid model minimax/minimax-m2 instead."
    )
    assert catalog(sim)["minimax/minimax-m2:free"]["pricing"]["prompt"] == "0.000002"


def test_no_tools_refuses_tool_calls_only(sim: Simulator) -> None:
    sim.set_fault("glm-4.5-air", no_tools=True)
    assert chat(sim, GLM).status == 200
    reply = chat(sim, GLM, tools=TOOLS)
    assert reply.status == 404
    assert reply.json()["error"]["message"].startswith("No endpoints found that support tool use.")
    params = catalog(sim)[GLM]["supported_parameters"]
    assert "tools" not in params and "tool_choice" not in params and "response_format" in params


def test_upstream_429_is_the_providers_body_without_retry_after(sim: Simulator) -> None:
    sim.set_fault("qwen3-coder", status=429, upstream=True)
    reply = chat(sim, "qwen/qwen3-coder:free")
    assert reply.status == 429 and reply.headers.get("Retry-After") is None
    error = reply.json()["error"]
    assert error["code"] == 429 and error["message"] == "Provider returned error"
    assert error["metadata"]["provider_name"] == "Chutes"
    assert error["metadata"]["raw"].startswith("qwen/qwen3-coder:free is temporarily rate-limited upstream")


def test_stream_error_is_200_with_an_error_object_or_an_error_event(sim: Simulator) -> None:
    sim.set_fault("glm-4.5-air", mode="stream-error")
    plain = chat(sim, GLM, "ping")
    assert plain.status == 200
    assert plain.json()["error"] == {"code": 502, "message": "Provider disconnected mid-generation (simulated)"}
    assert plain.json()["choices"][0]["finish_reason"] == "error"
    streamed = chat(sim, GLM, "say something long enough", stream=True)
    assert streamed.status == 200
    events = [line[len("data: "):] for line in streamed.body.decode().split("\n\n") if line.startswith("data: ")]
    last = json.loads(events[-1])
    assert last["error"]["code"] == 502 and last["choices"][0]["finish_reason"] == "error"
    assert "[DONE]" not in events  # the stream ends at the error
    assert json.loads(events[1])["choices"][0]["delta"]["content"] == "Simulated "


def test_quota_left_counts_every_free_model_then_429_with_ratelimit_headers(sim: Simulator) -> None:
    sim.set_account(quota_left=2)
    assert chat(sim, GLM).status == 200
    assert chat(sim, KIMI).status == 200  # one quota for the whole account
    over = chat(sim, "qwen/qwen3-coder:free")
    assert over.status == 429 and over.headers.get("Retry-After") is None
    assert over.json()["error"]["message"].startswith("Rate limit exceeded: free-models-per-day")
    assert over.headers["X-RateLimit-Limit"] == "50" and over.headers["X-RateLimit-Remaining"] == "0"
    midnight_ms = (int(time.time() // 86400) + 1) * 86400 * 1000
    assert over.headers["X-RateLimit-Reset"] == str(midnight_ms)
    assert over.json()["error"]["metadata"]["headers"]["X-RateLimit-Reset"] == str(midnight_ms)
    assert chat(sim, "openai/gpt-4o-mini").status == 200  # paid models are not on the free quota


def test_rpm_is_a_per_minute_window_over_all_free_models() -> None:
    now = [1_000.0]
    book = FaultBook(clock=lambda: now[0])
    book.set_account({"rpm": 2})
    assert book.decide(GLM).status is None and book.decide(KIMI).status is None
    limited = book.decide(GLM)
    assert limited.status == 429 and limited.reason == "rpm"
    assert limited.headers == {"X-RateLimit-Limit": "2", "X-RateLimit-Remaining": "0",
                               "X-RateLimit-Reset": "1060000"}
    now[0] = 1_060.5  # the first two aged out
    assert book.decide(GLM).status is None


def test_fault_validation_names_the_field() -> None:
    book = FaultBook()
    with pytest.raises(InputError, match=r"upstream for z-ai/glm-4.5-air:free is the provider's 429"):
        book.set("glm-4.5-air", {"status": 500, "upstream": True})
    with pytest.raises(InputError, match=r"fault price for .* must be a USD-per-token price above 0"):
        book.set("glm-4.5-air", {"price": "0"})
    with pytest.raises(InputError, match=r"fault retired for .* must be true or false"):
        book.set("glm-4.5-air", {"retired": "yes"})
    with pytest.raises(InputError, match=r"account quota_left must be a whole number >= 0"):
        book.set_account({"quota_left": -1})
    with pytest.raises(InputError, match=r"unknown account field 'rph'"):
        book.set_account({"rph": 3})
    with pytest.raises(InputError, match=r"the global fault \* takes only latency_ms"):
        book.set("*", {"retired": True})
