"""`rollout health` end to end: the real LiteLLM proxy and the simulator (the session `sandbox`),
faults injected per model. Each fault test uses its own model, so LiteLLM's cooldown (more than
3 failures a minute) never spills into the next test; qwen3-coder, which nothing falls back from,
is never cooled down and takes the repeated faults.
"""

from __future__ import annotations

import json

import pytest

from rollout_cli.checks.classify import classify
from rollout_cli.gateway.api import Completion
from rollout_cli.io.net import free_port
from support import ALIASES, rollout

pytestmark = pytest.mark.gateway



def health(sb, *args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    result = rollout("-w", str(sb.root), "health", "--json", *args, env=env)
    return result, json.loads(result.stdout) if result.stdout.strip().startswith("{") else None


def by_alias(data: dict) -> dict[str, dict]:
    return {m["alias"]: m for m in data["models"]}


def test_all_healthy_exits_0_with_every_model_and_the_fallback_chain(sb):
    result, data = health(sb)
    assert result.exit_code == 0, result.output
    assert data["verdict"] == "healthy"
    assert [m["alias"] for m in data["models"]] == ALIASES
    for m in data["models"]:
        assert m["status"] == "healthy" and m["http_status"] == 200
        assert m["served_by"] == m["alias"]
        assert m["latency_ms"] > 0
    assert data["primary"] == "glm-4.5-air"
    assert data["fallbacks"]["glm-4.5-air"] == ALIASES[1:]
    assert data["gateway"]["liveliness"]["ok"] and data["gateway"]["readiness"]["ok"]
    # one real completion per alias, and the gateway's own retries off: exactly five upstream requests
    assert data["requests"]["sent"] == 5
    assert sb.admin.stats()["total"] == 5


def test_one_model_500_exits_1_naming_it_and_no_fallback_hides_it(sb):
    sb.admin.set_fault("minimax-m2", status=500)
    result, data = health(sb)
    assert result.exit_code == 1
    m = by_alias(data)["minimax-m2"]
    assert (m["status"], m["http_status"], m["error_class"]) == ("down", 500, "http-500")
    assert m["served_by"] is None  # minimax-m2 has fallbacks, but the check turned them off
    assert all(by_alias(data)[a]["status"] == "healthy" for a in ALIASES if a != "minimax-m2")
    assert sb.admin.stats()["models"]["minimax/minimax-m2:free"]["requests"] == 1
    human = rollout("-w", str(sb.root), "health")
    assert human.exit_code == 1
    assert "minimax-m2: down (http-500): Internal server error (simulated)" in human.stdout


def test_one_model_429_is_rate_limited_and_exits_3(sb):
    sb.admin.set_fault("qwen3-coder", status=429, retry_after=7)
    result, data = health(sb)
    assert result.exit_code == 3, result.output
    assert data["verdict"] == "inconclusive"
    m = by_alias(data)["qwen3-coder"]
    assert (m["status"], m["http_status"], m["retry_after"]) == ("rate-limited", 429, 7.0)
    assert data["counts"] == {"healthy": 4, "rate-limited": 1}


def test_a_hanging_model_times_out_while_the_others_are_reported(sb):
    sb.admin.set_fault("kimi-k2", mode="hang")
    result, data = health(sb, "--timeout", "1.5")
    assert result.exit_code == 1
    m = by_alias(data)["kimi-k2"]
    assert m["status"] == "down" and m["error_class"] == "timeout"
    assert m["latency_ms"] / 1000 >= 1.4  # it was given its whole timeout
    assert all(by_alias(data)[a]["status"] == "healthy" for a in ALIASES if a != "kimi-k2")
    # the hang ended by the client's timeout, not by the model answering: the simulator never replied to it
    assert sb.admin.stats()["models"]["moonshotai/kimi-k2:free"]["by_mode"]["hang"] >= 1


def test_wrong_key_is_an_auth_error_naming_the_variable(sb):
    result, data = health(sb, env={"ROLLOUT_SANDBOX_MASTER_KEY": "sk-wrong-key-for-this-test-0123456789"})
    assert result.exit_code == 2
    assert data["verdict"] == "auth-error"
    assert data["gateway"]["auth"]["status"] == 400  # LiteLLM 1.108 answers a wrong key 400 ("No connected db")
    assert "$ROLLOUT_SANDBOX_MASTER_KEY" in data["messages"][0]
    assert "sk-wrong-key" not in result.stdout  # the key is never echoed
    assert {m["status"] for m in data["models"]} == {"auth-error"}
    assert sb.admin.stats()["total"] == 0  # refused up front: no model request spent


def test_missing_key_names_the_variable_and_the_key_file(sb, tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "rollout.yaml").write_text(
        f"app:\n  env_file: ./.env\ngateway:\n  url: {sb.gateway_url}\n"
        f"  master_key_env: ROLLOUT_TEST_UNSET_KEY\n  master_key_file: ./missing.key\n"
    )
    result = rollout("-w", str(ws), "health")
    assert result.exit_code == 2
    assert "$ROLLOUT_TEST_UNSET_KEY or key file" in result.stdout and "missing.key" in result.stdout


def test_gateway_down_exits_4(sb, tmp_path):
    port = free_port()
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "rollout.yaml").write_text(
        (sb.root / "rollout.yaml").read_text().replace(sb.gateway_url, f"http://127.0.0.1:{port}")
        .replace("./gateway/", f"{sb.root}/gateway/").replace(".rollout/master.key", f"{sb.root}/.rollout/master.key")
        .replace("./app", f"{sb.root}/app")
    )
    result = rollout("-w", str(ws), "health", "--json")
    assert result.exit_code == 4
    data = json.loads(result.stdout)
    assert data["verdict"] == "unreachable" and not data["gateway"]["reachable"]
    assert f"gateway http://127.0.0.1:{port} does not answer" in data["messages"][0]
    assert {m["status"] for m in data["models"]} == {"not-checked"}


def test_unknown_model_exits_2_listing_the_known_aliases(sb):
    result = rollout("-w", str(sb.root), "health", "--model", "gpt-5")
    assert result.exit_code == 2
    assert "unknown model 'gpt-5'" in result.output
    assert ", ".join(ALIASES) in result.output
    assert sb.admin.stats()["total"] == 0


def test_model_option_checks_only_the_named_aliases(sb):
    result, data = health(sb, "--model", "kimi-k2", "-m", "glm-4.5-air")
    assert result.exit_code == 0
    assert [m["alias"] for m in data["models"]] == ["kimi-k2", "glm-4.5-air"]
    assert sb.admin.stats()["total"] == 2


def test_watch_refreshes_for_count_rounds(sb):
    result = rollout("-w", str(sb.root), "health", "--watch", "--count", "2", "--interval", "0.1", "--json")
    assert result.exit_code == 0
    rounds = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(rounds) == 2 and all(r["verdict"] == "healthy" for r in rounds)
    human = rollout("-w", str(sb.root), "health", "--watch", "--count", "1")
    assert human.exit_code == 0 and "qwen3-coder" in human.stdout


# --- classification: the cases, without a gateway ----------------------------------------


def seen(status, **kw) -> Completion:  # type: ignore[no-untyped-def]
    return Completion("m", status, 12.0, **kw)


@pytest.mark.parametrize(
    ("completion", "expected"),
    [
        (seen(200, served_by="m", content="pong"), ("healthy", None)),
        (seen(None, error="timeout", message="no answer in 2 s"), ("down", "timeout")),
        (seen(None, error="connect", message="refused"), ("down", "connect")),
        (seen(408, error="http", message="litellm.Timeout: Timeout Error: X"), ("down", "timeout")),
        (seen(500, error="http", message='litellm.APIError: APIError: OpenrouterException - {"error": {"code": 500}}'),
         ("down", "http-500")),
        (seen(503, error="http", message="No instances"), ("down", "http-503")),
        (seen(429, error="http", message="Rate limit"), ("rate-limited", "rate-limit")),
        (seen(503, retry_after=3.0, error="http", message="busy"), ("rate-limited", "rate-limit")),
        (seen(429, retry_after=5.0, error="http", message="All deployments are in cooldown"), ("down", "cooldown")),
        (seen(400, error="http", message="No connected db."), ("auth-error", "gateway-auth")),
        (seen(500, error="http", message="Authentication Error, Invalid proxy server token passed"),
         ("auth-error", "gateway-auth")),
        (seen(401, error="http", message="AuthenticationError: OpenrouterException - User not found."),
         ("auth-error", "upstream-auth")),
        (seen(500, error="http", message="APIError: OpenrouterException - Unable to get json response - x"),
         ("broken", "malformed")),
        (seen(400, error="http", message="Invalid model name passed in model=x"), ("broken", "unknown-model")),
        (seen(200, served_by="m", content="", error="empty"), ("broken", "empty")),
        (seen(200, served_by="m", error="malformed"), ("broken", "malformed")),
        (seen(200, served_by="other", content="pong"), ("down", "fallback")),
        (seen(200, served_by=None, attempted_fallbacks=1, content="pong"), ("down", "fallback")),
    ],
)
def test_classify(completion, expected):
    verdict = classify(completion, "m")
    assert (verdict.status, verdict.error_class) == expected


def test_classify_keeps_the_providers_words():
    verdict = classify(
        seen(500, error="http", message='litellm.APIError: APIError: OpenrouterException - {"error": '
             '{"code": 500, "message": "Internal server error (simulated)"}}'),
        "m",
    )
    assert verdict.message == "Internal server error (simulated)"


def test_a_missing_container_is_reported_but_does_not_fail_health(sb, tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "rollout.yaml").write_text(
        f"app:\n  env_file: ./.env\ngateway:\n  url: {sb.gateway_url}\n  master_key_env: ROLLOUT_SANDBOX_MASTER_KEY\n"
        f"  master_key_file: {sb.key_file}\n  container: rollout-test-no-such-container\n"
        f"  config: {sb.root / 'gateway' / 'litellm-config.yaml'}\n"
    )
    result = rollout("-w", str(ws), "health", "--json")
    assert result.exit_code == 0, result.output
    box = json.loads(result.stdout)["container"]
    # Docker absent or the container unknown: either way "unknown" with the reason, never a failure
    assert box["name"] == "rollout-test-no-such-container" and box["status"] == "unknown" and box["error"]
