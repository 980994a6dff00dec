"""`rollout advance` and `rollout report` end to end on the sandbox: real LiteLLM, the simulator's faults.

Each test gets its own app repo and workspace, pointed at the session's gateway.
"""

from __future__ import annotations

import json
import time

import pytest
import yaml

from rollout_cli.sandbox.sample_app import flagd_text
from support import NO_GATEWAY, make_world

PRIMARY, FALLBACK = "glm-4.5-air", "kimi-k2"


@pytest.fixture
def world(tmp_path, sandbox):
    """A fresh app at 0% whose workspace points at the session sandbox's gateway."""
    w = make_world(tmp_path, percentage=0, container="")
    (w.ws / "rollout.yaml").write_text(
        (w.ws / "rollout.yaml").read_text()
        .replace(f"url: {NO_GATEWAY}", f"url: {sandbox.gateway_url}")
        .replace("  container: \n", "")
        + f"  master_key_file: {sandbox.key_file}\n  config: {sandbox.root / 'gateway' / 'litellm-config.yaml'}\n"
    )
    sandbox.admin.clear()
    _wait_all_healthy(w)
    yield w
    sandbox.admin.clear()


def _wait_all_healthy(w, limit=20.0):
    """A model the gateway cooled down after an earlier test's faults answers 429 for a few seconds."""
    deadline = time.monotonic() + limit
    while True:
        result = w.cli("health", "--json")
        if result.exit_code == 0 or time.monotonic() > deadline:
            return
        time.sleep(1)


def _advance(w, *args):
    result = w.cli("advance", "--yes", "--json", *args)
    return result, json.loads(result.stdout) if result.stdout.strip().startswith("{") else None


def _percentages(w):
    env = w.app.env_file.read_text()
    flags = json.loads(w.app.flags_file.read_text())["flags"]["litellm-gateway"]["targeting"]["fractional"]
    return env, flags[1][1]


def test_all_healthy_leaving_zero_is_go_and_files_say_10_then_hold_on_soak(world):
    snap = world.snapshot()
    result, data = _advance(world, "--reason", "first step")
    assert result.exit_code == 0, result.output
    assert data["verdict"] == "GO" and data["current"] == 0 and data["next"] == 10
    assert data["post_check"]["ok"] is True
    assert len(data["matrix"]) == 5 and all(r["verdict"] == "pass" for r in data["matrix"])
    env, flag = _percentages(world)
    assert "LITELLM_ENABLED=true\n" in env and "LITELLM_ROLLOUT_PERCENTAGE=10  #" in env and flag == 10
    assert set(world.snapshot()) == set(snap)
    record = [r for r in world.history() if r["command"] == "advance"][-1]
    assert record["reason"] == "first step" and record["decision"]["verdict"] == "GO"
    assert {c["key"] for c in record["changes"]} == {"LITELLM_ENABLED", "LITELLM_ROLLOUT_PERCENTAGE", "litellm-gateway"}

    # advancing again at once: HOLD on soak, nothing written
    before = world.snapshot()
    again, data = _advance(world)
    assert again.exit_code == 3, again.output
    assert data["verdict"] == "HOLD"
    assert any(r.startswith("soak ") and "of 48h00m at 10%" in r for r in data["reasons"])
    assert world.snapshot() == before


def test_one_fallback_model_500_is_go_with_a_warning(world, sandbox):
    sandbox.admin.set_fault(FALLBACK, status=500)
    result, data = _advance(world)
    assert result.exit_code == 0, result.output
    assert data["verdict"] == "GO"
    assert any(w.startswith(f"{FALLBACK}: down, HTTP 500") for w in data["warnings"])
    row = next(r for r in data["matrix"] if r["alias"] == FALLBACK)
    assert row["health"] == "down" and row["verdict"] == "warn"
    assert "LITELLM_ROLLOUT_PERCENTAGE=10" in world.app.env_file.read_text()


def test_primary_500_is_no_go_and_nothing_written(world, sandbox):
    sandbox.admin.set_fault(PRIMARY, status=500)
    snap = world.snapshot()
    result, data = _advance(world)
    assert result.exit_code == 1, result.output
    assert data["verdict"] == "NO-GO"
    assert f"primary {PRIMARY}: down, HTTP 500" in data["reasons"]
    assert world.snapshot() == snap


def test_two_models_down_is_no_go(world, sandbox):
    sandbox.admin.set_fault("minimax-m2", status=502)
    sandbox.admin.set_fault("qwen3-coder", status=503)
    result, data = _advance(world)
    assert result.exit_code == 1, result.output
    reason = next(r for r in data["reasons"] if r.startswith("3 of 5 healthy < 4"))
    assert "minimax-m2: down, HTTP 502" in reason and "qwen3-coder: down, HTTP 503" in reason


def test_primary_rate_limited_is_hold(world, sandbox):
    sandbox.admin.set_fault(PRIMARY, status=429, retry_after=1)
    snap = world.snapshot()
    result, data = _advance(world)
    assert result.exit_code == 3, result.output
    assert data["verdict"] == "HOLD"
    assert any(r.startswith(f"primary {PRIMARY}: rate-limited") for r in data["reasons"])
    assert world.snapshot() == snap


def test_paid_model_in_gateway_config_is_no_go(world, sandbox, tmp_path):
    config = yaml.safe_load((sandbox.root / "gateway" / "litellm-config.yaml").read_text())
    for entry in config["model_list"]:
        if entry["model_name"] == "qwen3-coder":
            entry["litellm_params"]["model"] = "openrouter/openai/gpt-4o-mini"
    paid = tmp_path / "paid-config.yaml"
    paid.write_text(yaml.safe_dump(config))
    text = (world.ws / "rollout.yaml").read_text()
    (world.ws / "rollout.yaml").write_text(
        text.replace(str(sandbox.root / "gateway" / "litellm-config.yaml"), str(paid))
    )
    result, data = _advance(world)
    assert result.exit_code == 1, result.output
    cost = next(g for g in data["gates"] if g["name"] == "cost")
    assert cost["status"] == "fail"
    assert "qwen3-coder: openrouter/openai/gpt-4o-mini is not an OpenRouter :free model" in cost["reason"]


def test_env_and_flags_disagree_is_no_go(world):
    world.app.flags_file.write_text(flagd_text(10))
    snap = world.snapshot()
    result, data = _advance(world)
    assert result.exit_code == 1, result.output
    assert any(r.startswith("drift: env file says 0%") and "flags file says 10%" in r for r in data["reasons"])
    assert world.snapshot() == snap


def test_post_check_failure_rolls_back_with_level_1(world, sandbox):
    # The evaluation sends the primary 3 requests (health 1, smoke 2); the 4th, the post-check, fails.
    sandbox.admin.set_fault(PRIMARY, status=500, rate=0.25)
    result, data = _advance(world)
    assert result.exit_code == 1, result.output
    assert data["verdict"] == "GO"
    assert data["post_check"]["ok"] is False and "HTTP 500" in data["post_check"]["reason"]
    assert data["rollback"]["level"] == 1
    env, flag = _percentages(world)
    assert "LITELLM_ROLLOUT_PERCENTAGE=0  #" in env and flag == 0
    commands = [r["command"] for r in world.history()]
    assert commands[-2:] == ["advance", "rollback --level 1"]


def test_dry_run_writes_nothing(world):
    snap = world.snapshot()
    result, data = _advance(world, "--dry-run")
    assert result.exit_code == 0 and data["verdict"] == "GO" and data["dry_run"] is True
    assert world.snapshot() == snap and world.history() == []


def test_report_is_read_only_and_writes_markdown(world, tmp_path):
    assert world.cli("advance", "--yes").exit_code == 0
    snap = world.snapshot()
    (tmp_path / "out").mkdir()
    md = tmp_path / "out" / "report.md"
    result = world.cli("report", "--markdown", str(md))
    assert result.exit_code == 3, result.output  # soak not elapsed at 10%: HOLD
    text = md.read_text()
    assert "## rollout report: **HOLD** (10% -> 50%)" in text
    assert "| glm-4.5-air | primary | healthy |" in text
    assert "0% -> 10%" in text.split("### Stage history")[1]
    assert "| 1 | yes | 30.0 s |" in text
    assert {k: v for k, v in world.snapshot().items() if not k.startswith("out/")} == snap
    data = json.loads(world.cli("report", "--json").stdout)
    assert [r["level"] for r in data["rollback_readiness"]] == [1, 2, 3, 4]
    assert data["rollback_readiness"][2]["ready"] is False  # no container in this workspace


def test_skip_soak_needs_a_reason(world):
    snap = world.snapshot()
    result = world.cli("advance", "--yes", "--skip-soak")
    assert result.exit_code == 2 and "--skip-soak needs --reason" in result.stderr
    assert world.snapshot() == snap


def test_skip_soak_is_recorded_and_window_needs_samples(world):
    assert world.cli("advance", "--yes").exit_code == 0
    result, data = _advance(world, "--skip-soak", "--reason", "staging soaked for a week")
    soak = next(g for g in data["gates"] if g["name"] == "soak")
    assert soak["status"] == "skipped" and "staging soaked for a week" in soak["reason"]
    error_rate = next(g for g in data["gates"] if g["name"] == "error rate")
    # only rollout's own check requests went through since 10% began; they do not count
    assert error_rate["status"] == "inconclusive"
    assert error_rate["reason"].startswith("no requests through the gateway in the window")
    assert result.exit_code == 3


@pytest.mark.parametrize(
    ("plan", "message"),
    [
        ("stages: [50, 10, 100]\n", "are not in increasing order"),
        ("stages: [10, 150]\n", "stage 150% is outside 1..100"),
        ("gates: {max_added_latency_p95_ms: fast}\n", "'gates.max_added_latency_p95_ms' must be a number"),
    ],
)
def test_bad_stage_plan_is_refused_before_any_request(world, sandbox, plan, message):
    (world.ws / "books").mkdir()
    (world.ws / "books" / "rollout.yaml").write_text(plan)
    (world.ws / "rollout.yaml").write_text((world.ws / "rollout.yaml").read_text() + "playbooks: ./books\n")
    before = sandbox.admin.stats()["total"]
    result = world.cli("advance", "--yes")
    assert result.exit_code == 2 and message in result.stderr
    assert sandbox.admin.stats()["total"] == before


def test_gateway_not_answering_is_no_go_and_nothing_written(world):
    text = (world.ws / "rollout.yaml").read_text()
    import re

    (world.ws / "rollout.yaml").write_text(re.sub(r"url: http://127\.0\.0\.1:\d+", "url: http://127.0.0.1:9", text))
    snap = world.snapshot()
    result, data = _advance(world)
    assert result.exit_code == 1, result.output
    assert any("gateway http://127.0.0.1:9: unreachable" in r for r in data["reasons"])
    assert world.snapshot() == snap


def test_at_100_percent_the_rollout_is_complete(world):
    world.app.env_file.write_text(world.app.env_file.read_text().replace("=0 ", "=100 ").replace("=false", "=true"))
    world.app.flags_file.write_text(flagd_text(100))
    result = world.cli("advance", "--yes")
    assert result.exit_code == 0
    assert "the rollout is complete: 100%" in result.stdout


def test_metrics_unreadable_mid_rollout_is_inconclusive_never_passed(world):
    assert world.cli("advance", "--yes").exit_code == 0
    import re

    text = (world.ws / "rollout.yaml").read_text()
    (world.ws / "rollout.yaml").write_text(re.sub(r"url: http://127\.0\.0\.1:\d+", "url: http://127.0.0.1:9", text))
    result, data = _advance(world)
    assert result.exit_code == 1  # the gateway gate fails too
    gates = {g["name"]: g for g in data["gates"]}
    for name in ("error rate", "added latency"):
        assert gates[name]["status"] == "inconclusive"
        assert gates[name]["reason"].startswith("metrics cannot be read: gateway http://127.0.0.1:9 /metrics/ does not answer")


def test_watch_records_samples_that_advance_judges(world, sandbox):
    assert world.cli("advance", "--yes").exit_code == 0
    result = world.cli("watch", "--count", "2", "--interval", "0.5", "--json")
    assert result.exit_code == 0, result.output
    views = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(views) == 2 and views[0]["stage"] == 10 and views[0]["alive"] is True
    assert {m["model"] for m in views[-1]["models"]} >= {PRIMARY}
    samples = (world.ws / ".rollout" / "samples.jsonl").read_text().splitlines()
    assert len(samples) == 3  # the advance's baseline and two watch samples
    # 25 requests through the gateway, one in five failing: the window's error rate is 20%
    sandbox.admin.set_fault("qwen3-coder", status=500, rate=0.2)
    from rollout_cli.gateway.api import GatewayClient

    with GatewayClient(sandbox.gateway_url, sandbox.master_key, user_agent="test-app/1.0") as client:
        for _ in range(25):
            client.complete("qwen3-coder", "hello", extra={"num_retries": 0})
    sandbox.admin.clear()
    data = _advance(world, "--skip-soak", "--reason", "test")[1]
    gate = next(g for g in data["gates"] if g["name"] == "error rate")
    # exactly the 25 app requests count (not the checks' own): 5 of them failed
    assert gate["status"] == "fail" and gate["reason"] == "error rate 20.00% (5 of 25) > 1%"
    assert data["verdict"] == "NO-GO"
    assert "LITELLM_ROLLOUT_PERCENTAGE=10" in world.app.env_file.read_text()


def test_sandbox_traffic_splits_by_the_rollout_percentage(sandbox):
    """The sandbox's app splits users itself, through OpenFeature's flagd provider reading flags.json."""
    from support import rollout

    env, flags = sandbox.root / "app" / ".env", sandbox.root / "app" / "flags.json"
    original, original_flags = env.read_text(), flags.read_text()
    before = sandbox.admin.stats()["total"]
    try:
        env.write_text(original.replace("LITELLM_ENABLED=false", "LITELLM_ENABLED=true")
                       .replace("LITELLM_ROLLOUT_PERCENTAGE=0 ", "LITELLM_ROLLOUT_PERCENTAGE=50 "))
        flags.write_text(flagd_text(50))
        time.sleep(1.5)  # the app's file watchers poll every 0.5 s
        result = rollout("-w", str(sandbox.root), "sandbox", "traffic", "--rps", "40", "--duration", "1", "--json")
    finally:
        env.write_text(original)
        flags.write_text(original_flags)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    gateway, direct = data["paths"]["gateway"], data["paths"]["direct"]
    assert data["percentage"] == 50 and 36 <= data["requests"] <= 44  # 40 req/s for about 1 s
    assert gateway["requests"] + direct["requests"] == data["requests"]
    assert 8 <= gateway["requests"] <= 32  # about half, by the flag's fractional targeting on the user id
    assert data["observed_share"] == round(100 * gateway["requests"] / data["requests"], 1)
    assert gateway["failed"] == 0 and direct["failed"] == 0
    assert sandbox.admin.stats()["total"] - before == data["requests"]  # every request reached the simulated OpenRouter


def test_sandbox_traffic_refuses_a_silly_rate(sandbox):
    from support import rollout

    result = rollout("-w", str(sandbox.root), "sandbox", "traffic", "--rps", "5000")
    assert result.exit_code == 2 and "--rps 5000 is outside" in result.stderr


def test_the_master_key_never_reaches_reports_or_the_audit_trail(world, sandbox, tmp_path):
    assert world.cli("advance", "--yes", "--reason", "key check").exit_code == 0
    md = tmp_path / "out.md"
    world.cli("report", "--markdown", str(md))
    outputs = [world.cli("report", "--json").stdout, md.read_text(),
               (world.ws / ".rollout" / "history.jsonl").read_text(),
               (world.ws / ".rollout" / "samples.jsonl").read_text()]
    assert all(sandbox.master_key not in text for text in outputs)


def test_gateway_that_stops_answering_mid_evaluation(tmp_path):
    """Every model answers slowly; the gateway dies while the checks are in flight: NO-GO, nothing written."""
    import threading

    from rollout_cli.core.workspace import load_workspace
    from rollout_cli.gateway.runtime import runtime_for
    from rollout_cli.sandbox import world as sandbox_world
    from support import rollout

    info = sandbox_world.up(tmp_path / "sb", runtime="process", gateway_port=0, simulator_port=0, timeout=90)
    try:
        info.admin.set_fault("*", latency_ms=2000)
        env_before = (info.root / "app" / ".env").read_text()
        killer = threading.Timer(1.0, lambda: runtime_for(load_workspace(info.root)).stop(timeout=0))
        killer.start()
        result = rollout("-w", str(info.root), "advance", "--yes", "--json")
        killer.join()
        assert result.exit_code == 1, result.output
        data = json.loads(result.stdout)
        assert data["verdict"] == "NO-GO"
        primary = next(g for g in data["gates"] if g["name"] == "primary model")
        assert primary["status"] == "fail"
        assert (info.root / "app" / ".env").read_text() == env_before
    finally:
        sandbox_world.down(info.root)
