"""`rollout advance` and `rollout report` end to end on the sandbox: real LiteLLM, the simulator's faults.

Each test gets its own app repo and workspace, pointed at the session's gateway.
"""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from rollout_cli.sandbox.sample_app import flagd_text, git
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


def test_report_markdown_on_a_no_go_names_the_failing_gate(world, sandbox, tmp_path):
    sandbox.admin.set_fault(PRIMARY, status=500)
    md = tmp_path / "report.md"
    result = world.cli("report", "--markdown", str(md))
    assert result.exit_code == 1, result.output
    lines = md.read_text().splitlines()
    assert lines[0] == "## rollout report: **NO-GO** (0% -> 10%)"
    assert f"- primary {PRIMARY}: down, HTTP 500" in lines
    assert f"| {PRIMARY} | primary | down | down, HTTP 500 |" in "\n".join(lines)
    assert "| primary model | fail | down, HTTP 500 | healthy | health check (fallbacks off) |" in lines
    assert lines[lines.index("### Stage history") + 2] == "- no stage change recorded yet"


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


def _plan_override(w, text: str, **books: str) -> None:
    """A workspace playbooks folder: the stage plan `text`, plus any rollback-N.yaml given."""
    folder = w.ws / "books"
    folder.mkdir(exist_ok=True)
    (folder / "rollout.yaml").write_text(text)
    for name, body in books.items():
        (folder / f"{name}.yaml").write_text(body)
    (w.ws / "rollout.yaml").write_text((w.ws / "rollout.yaml").read_text() + "playbooks: ./books\n")


# The rollback's exit code after a post-check failure at 10%, in a workspace that names no gateway
# container: levels 3 and 4 cannot stop one (exit 2, named), and level 4 still reverts the integration.
# That holds when level 1's verify.traffic can judge the app's traffic; on a gateway that has never
# served an app request it cannot ("not verifiable", exit 3), and as the first failing step that code
# is every level's.
POST_CHECK_CASES = {"none": None, "rollback-1": 0, "rollback-2": 0, "rollback-3": 2, "rollback-4": 2}


def _served_app_requests(sandbox) -> float:  # type: ignore[no-untyped-def]
    from rollout_cli.gateway.prometheus import app_requests, scrape

    return app_requests(scrape(f"{sandbox.gateway_url}/metrics/", sandbox.master_key) or "")


@pytest.mark.parametrize("on_failure", list(POST_CHECK_CASES))
def test_post_check_failure_follows_on_post_check_failure(world, sandbox, on_failure):
    _plan_override(world, f"kind: rollout\nstages: [10, 50, 100]\non_post_check_failure: {on_failure}\n")
    # The evaluation sends the primary 2 requests (health's ping, which smoke's ping case shares, and
    # smoke's json case); the 3rd, the post-check, fails.
    sandbox.admin.set_fault(PRIMARY, status=500, rate=0.4)
    head = world.head()
    verifiable = _served_app_requests(sandbox) > 0  # this session's earlier tests may have sent app traffic
    expected = POST_CHECK_CASES[on_failure] if verifiable else 3
    result, data = _advance(world)
    assert result.exit_code == 1, result.output
    assert data["verdict"] == "GO"
    assert data["post_check"]["ok"] is False
    assert data["post_check"]["reason"] == f"primary {PRIMARY}: down, HTTP 500"
    env, flag = _percentages(world)
    commands = [r["command"] for r in world.history() if r.get("phase") != "started"]
    if on_failure == "none":
        assert "rollback" not in data
        assert "LITELLM_ROLLOUT_PERCENTAGE=10  #" in env and flag == 10  # the plan asked for no rollback
        assert commands == ["advance"]
        assert data["messages"][-1] == (
            "the plan names no rollback (on_post_check_failure: none): roll back by hand if needed")
        return
    level = int(on_failure[-1])
    assert data["rollback"]["level"] == level
    assert [lvl["level"] for lvl in data["rollback"]["levels"]] == list(range(1, level + 1))
    level1 = data["rollback"]["levels"][0]["steps"]
    if not verifiable:
        assert level1[-1]["detail"].startswith("not verifiable: no app traffic in the window")
    assert "LITELLM_ROLLOUT_PERCENTAGE=0  #" in env and flag == 0
    assert commands == ["advance", f"rollback --level {level}"]
    assert world.history()[-1]["exit_code"] == expected
    assert data["messages"][-1] == f"rolled back with level {level} (exit {expected}): traffic now 0%"
    if level >= 3:
        assert data["rollback"]["levels"][2]["steps"][0]["detail"].startswith("gateway.container is not set in ")
    assert world.history()[-1]["reason"] == (
        f"post-check failed after advancing to 10%: primary {PRIMARY}: down, HTTP 500")
    if level >= 2:
        assert "restore router" in git(world.app.repo, "log", f"{head}..", "--format=%s")
    if level == 4:
        assert git(world.app.repo, "log", "-1", "--format=%s").strip() == (
            'Revert "Route LLM calls through the LiteLLM gateway"')


def test_post_check_failure_whose_rollback_fails_too_says_traffic_stays(world, sandbox):
    refusing_level_1 = (
        "kind: rollback\nlevel: 1\nname: refusing level 1\nbudget: 30s\nsteps:\n"
        f"  - type: run\n    argv: [{sys.executable}, -c, 'import sys; sys.exit(5)']\n"
        "  - type: env.set\n    values: {LITELLM_ROLLOUT_PERCENTAGE: 0}\n  - type: flag.set\n    percentage: 0\n"
    )
    _plan_override(world, "kind: rollout\nstages: [10, 50, 100]\n", **{"rollback-1": refusing_level_1})
    sandbox.admin.set_fault(PRIMARY, status=500, rate=0.4)
    result = world.cli("advance", "--yes")
    assert result.exit_code == 1, result.output
    assert "post-check failed: primary glm-4.5-air: down, HTTP 500" in result.stdout
    assert "rolled back with level 1 (exit 1): traffic now 10%" in result.stdout
    env, flag = _percentages(world)
    assert "LITELLM_ROLLOUT_PERCENTAGE=10  #" in env and flag == 10
    record = world.history()[-1]
    assert record["command"] == "rollback --level 1" and record["result"] == "failed" and record["exit_code"] == 1
    assert [s["status"] for s in record["steps"]] == ["failed", "skipped", "skipped"]


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
    from rollout_cli.sandbox.traffic import ADDED_LATENCY_PAIRS, ADDED_LATENCY_WARMUP
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
    # every request reached the simulated OpenRouter, and so did the paired latency probes (both halves)
    probes = 2 * (ADDED_LATENCY_PAIRS + ADDED_LATENCY_WARMUP)
    assert sandbox.admin.stats()["total"] - before == data["requests"] + probes


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
    """Every model answers slowly; the gateway dies while the checks are in flight: NO-GO, nothing written.

    The kill waits for an event, not a clock: the simulator has received a completion
    from the gateway, so the gateway was alive and forwarding when evaluation began.
    """
    import threading

    from rollout_cli.core.workspace import load_workspace
    from rollout_cli.gateway.runtime import runtime_for
    from rollout_cli.sandbox import world as sandbox_world
    from support import rollout

    info = sandbox_world.up(tmp_path / "sb", runtime="process", gateway_port=0, simulator_port=0, timeout=90)
    try:
        info.admin.set_fault("*", latency_ms=3000)
        info.admin.reset_stats()
        env_before = (info.root / "app" / ".env").read_text()
        forwarded = threading.Event()

        def kill_once_forwarding() -> None:
            while not info.admin.stats()["total"]:
                time.sleep(0.05)
            forwarded.set()
            runtime_for(load_workspace(info.root)).stop(timeout=0)

        killer = threading.Thread(target=kill_once_forwarding, daemon=True)
        killer.start()
        result = rollout("-w", str(info.root), "advance", "--yes", "--json")
        killer.join(timeout=60)
        assert forwarded.is_set()
        assert result.exit_code == 1, result.output
        data = json.loads(result.stdout)
        assert data["verdict"] == "NO-GO"
        gates = {g["name"]: g for g in data["gates"]}
        # the preflight ran before the kill: alive and ready; the completions in flight were cut
        assert gates["gateway"]["status"] == "pass" and gates["gateway"]["value"] == "alive, ready"
        # the simulator counts a request when it answers, so the first model may have got its
        # answer just before the kill; the ones still in flight broke off
        assert any(g["status"] == "fail" and "connect" in g["reason"] for g in gates.values()), gates
        assert (info.root / "app" / ".env").read_text() == env_before
        assert [(r["result"], r["changes"]) for r in load_history(info.root) if r["command"] == "advance"] == [
            ("NO-GO", [])]
    finally:
        sandbox_world.down(info.root)


def load_history(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / ".rollout" / "history.jsonl").read_text().splitlines()]


# --- races and refusals around the write --------------------------------------------


def _rollout_bin() -> str:
    return str(Path(sys.executable).parent / "rollout")


def _hold_lock(ws: Path) -> subprocess.Popen[str]:
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys,time; from pathlib import Path; from rollout_cli.io.lock import WorkspaceLock;\n"
         "with WorkspaceLock(Path(sys.argv[1]), command='test holder'):\n"
         "    print('held', flush=True); time.sleep(120)",
         str(ws / ".rollout")],
        stdout=subprocess.PIPE, text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
    return holder


def test_advance_under_a_lock_held_by_another_process_exits_4_and_writes_nothing(world):
    holder = _hold_lock(world.ws)
    try:
        snap = world.snapshot()
        result = world.cli("advance", "--yes", env={"ROLLOUT_LOCK_TIMEOUT": "1"})
        assert result.exit_code == 4, result.output
        assert result.stderr.startswith(f"rollout: error: workspace is locked by pid {holder.pid} ")
        assert "`test holder`" in result.stderr
        assert world.snapshot() == snap
        assert [r for r in world.history() if r.get("changes")] == []
    finally:
        holder.kill()
        holder.wait()


def test_two_advances_at_once_one_writes_the_other_sees_the_stage_change(world, sandbox):
    """Two real processes evaluate at the same time (every model 1 s slow); only one may write."""
    sandbox.admin.set_fault("*", latency_ms=1000)
    procs = [subprocess.Popen([_rollout_bin(), "-w", str(world.ws), "advance", "--yes", "--reason", f"racer {i}"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in (1, 2)]
    outcomes = [(p.wait(timeout=300), p.stderr.read() if p.stderr else "") for p in procs]
    codes = sorted(code for code, _ in outcomes)
    assert codes == [0, 1], outcomes
    loser = next(err for code, err in outcomes if code == 1)
    assert loser.strip() == (
        "rollout: error: the stage changed from 0% to 10% while the gates were evaluated; run advance again")
    moved = [r for r in world.history() if r["command"] == "advance" and r.get("changes")]
    assert len(moved) == 1 and moved[0]["result"] == "ok"
    env, flag = _percentages(world)
    assert "LITELLM_ROLLOUT_PERCENTAGE=10  #" in env and flag == 10


def test_declining_the_advance_confirmation_writes_nothing(world):
    snap = world.snapshot()
    leader, follower = pty.openpty()
    proc = subprocess.Popen([_rollout_bin(), "-w", str(world.ws), "advance"],
                            stdin=follower, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    os.close(follower)
    os.write(leader, b"n\n")
    _out, err = proc.communicate(timeout=300)
    os.close(leader)
    assert proc.returncode == 2, err
    assert "GO: advance 0% -> 10%?" in err
    assert err.rstrip().endswith("rollout: error: advance not confirmed; nothing written")
    assert world.snapshot() == snap
    assert [r for r in world.history() if r.get("changes")] == []


@pytest.mark.parametrize("value", ["soon", ""])
def test_invalid_lock_timeout_is_bad_input_and_writes_nothing(world, value):
    snap = world.snapshot()
    result = world.cli("advance", "--yes", env={"ROLLOUT_LOCK_TIMEOUT": value})
    assert result.exit_code == 2, result.output
    assert result.stderr.strip() == (
        f"rollout: error: ROLLOUT_LOCK_TIMEOUT={value!r} is not a number of seconds; fix or unset it")
    assert world.snapshot() == snap


def test_a_post_check_failed_on_the_gateways_own_probes_is_asked_again_one_failed_on_the_primary_is_not():
    """The tour under a loaded suite: a readiness probe that ran out of its 3 s right after an advance made the
    autopilot roll back; like an unreachable gateway's, it is now asked once more after a pause."""
    from rollout_cli.rollout.advance import probe_failed

    assert probe_failed({"ok": False, "reason": "gateway http://127.0.0.1:4000: unreachable"})
    assert probe_failed({"ok": False, "reason": "gateway http://127.0.0.1:4000: not-ready"})
    assert not probe_failed({"ok": False, "reason": f"primary {PRIMARY}: down, HTTP 500"})
    assert not probe_failed({"ok": True, "primary": PRIMARY, "reason": f"primary {PRIMARY}: healthy"})
