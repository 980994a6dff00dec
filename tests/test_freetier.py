"""The real free tier's failures, end to end: simulator fault -> real LiteLLM proxy -> `rollout` verdict.

One sandbox for the module (the simulator and the real gateway, process
runtime): these tests change its faults, its workspace's rollout.yaml and its
stage, so they do not share the session sandbox. Each test clears the faults
and waits until the gateway has let every model out of its cooldown.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from rollout_cli.gateway.api import GatewayClient
from support import rollout, scraped_after_now, wait_until
from test_json_contract import valid

# one worker starts this module's own sandbox once (tests/conftest.py, rule 6)
pytestmark = [pytest.mark.gateway, pytest.mark.xdist_group("test_freetier"), pytest.mark.slow(150)]

PRIMARY = "glm-4.5-air"


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from rollout_cli.sandbox import world

    root = tmp_path_factory.mktemp("freetier") / "sb"
    info = world.up(root, runtime="process", gateway_port=0, simulator_port=0, timeout=90)
    try:
        yield info
    finally:
        world.down(root)


def healthy(box: Any) -> None:
    """No fault, and every model answering again (the sandbox's cooldown is 5 s)."""
    box.admin.clear()
    deadline = time.monotonic() + 30
    while True:
        result = rollout("-w", str(box.root), "health", "--json")
        if result.exit_code == 0 or time.monotonic() > deadline:
            assert result.exit_code == 0, result.output
            return
        time.sleep(1.0)


@pytest.fixture
def sb(box: Any) -> Iterator[Any]:
    healthy(box)
    original = (box.root / "rollout.yaml").read_text()
    yield box
    (box.root / "rollout.yaml").write_text(original)
    box.admin.clear()


def cli(sb: Any, *args: str, code: int | None = None) -> dict:
    result = rollout("-w", str(sb.root), *args, "--json")
    if code is not None:
        assert result.exit_code == code, result.output
    data = json.loads(result.stdout)
    assert data.get("exit_code", data.get("error", {}).get("exit_code")) == result.exit_code
    grouped = args[0] in ("sandbox", "gateway")
    return valid("error" if "error" in data else " ".join(args[:2] if grouped else args[:1]), data)


def gate(data: dict, name: str) -> dict:
    return next(g for g in data["gates"] if g["name"] == name)


def set_yaml(sb: Any, extra: str, *, before: str = "app:\n") -> None:
    path = sb.root / "rollout.yaml"
    path.write_text(path.read_text().replace(before, extra + before, 1))


def set_quota(sb: Any, limit: int, share: float) -> None:
    path = sb.root / "rollout.yaml"
    sandbox = "openrouter:\n  daily_limit: 100000\n  rollout_share: 1.0\n"
    assert sandbox in path.read_text()
    path.write_text(path.read_text().replace(sandbox, f"openrouter: {{daily_limit: {limit}, rollout_share: {share}}}\n"))


# --- every new fault, through `rollout sandbox fault` and the real gateway ---------------------


def test_sandbox_fault_sets_each_new_fault_and_lists_the_account(sb: Any) -> None:
    cli(sb, "sandbox", "fault", "kimi-k2", "--retired", code=0)
    cli(sb, "sandbox", "fault", "minimax-m2", "--price", "0.000002", code=0)
    cli(sb, "sandbox", "fault", "deepseek-chat-v3.1", "--no-tools", code=0)
    cli(sb, "sandbox", "fault", "qwen3-coder", "--status", "429", "--upstream", code=0)
    listed = cli(sb, "sandbox", "fault", "--quota-left", "7", code=0)
    assert listed["account"] == {"quota_left": 7, "rpm": None, "daily_limit": 50}
    listed = cli(sb, "sandbox", "fault", "--rpm", "20", code=0)
    assert listed["account"] == {"quota_left": 7, "rpm": 20, "daily_limit": 50}  # the quota stays
    faults = listed["faults"]
    assert faults["moonshotai/kimi-k2:free"]["retired"] is True
    assert faults["minimax/minimax-m2:free"]["price"] == "0.000002"
    assert faults["deepseek/deepseek-chat-v3.1:free"]["no_tools"] is True
    assert faults["qwen/qwen3-coder:free"] == {**faults["qwen/qwen3-coder:free"], "status": 429, "upstream": True,
                                                 "retry_after": None}
    cleared = cli(sb, "sandbox", "fault", "--clear", code=0)
    assert cleared["faults"] == {} and cleared["account"]["quota_left"] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["glm-4.5-air", "--status", "500", "--upstream"], r"upstream for z-ai/glm-4.5-air:free is the provider's 429"),
        (["glm-4.5-air", "--quota-left", "3"], r"--quota-left and --rpm are account-wide: drop MODEL glm-4.5-air"),
        (["glm-4.5-air", "--price", "free"], r"--price 'free' is not a USD-per-token price above 0"),
        (["--clear", "--rpm", "3"], r"--clear takes no --rpm"),
        (["glm-4.5-air"], r"give the fault: .*--retired, --price USD or --no-tools"),
    ],
)
def test_sandbox_fault_refuses_bad_combinations(sb: Any, args: list[str], message: str) -> None:
    result = rollout("-w", str(sb.root), "sandbox", "fault", *args)
    assert result.exit_code == 2
    assert re.search(message, result.stderr), result.stderr


def statuses(data: dict) -> dict[str, tuple[str, str | None]]:
    return {m["alias"]: (m["status"], m["error_class"]) for m in data["models"]}


def test_health_names_each_free_tier_failure(sb: Any) -> None:
    sb.admin.set_fault("kimi-k2", retired=True)
    sb.admin.set_fault("minimax-m2", price="0.000002")
    sb.admin.set_fault("qwen3-coder", status=429, upstream=True)
    sb.admin.set_fault("deepseek-chat-v3.1", mode="stream-error")
    data = cli(sb, "health", code=1)
    assert statuses(data) == {
        "glm-4.5-air": ("healthy", None),
        "deepseek-chat-v3.1": ("broken", "error-object"),
        "minimax-m2": ("not-free", "free-period-ended"),
        "kimi-k2": ("retired", "no-endpoints"),
        "qwen3-coder": ("upstream-throttled", "provider-429"),
    }
    kimi = next(m for m in data["models"] if m["alias"] == "kimi-k2")
    assert kimi["message"] == "No endpoints found for moonshotai/kimi-k2:free." and kimi["http_status"] == 404


def test_quota_exhausted_and_per_minute_limit_are_inconclusive(sb: Any) -> None:
    sb.admin.set_account(quota_left=0)
    data = cli(sb, "health", code=3)
    assert set(statuses(data).values()) == {("quota-exhausted", "free-models-per-day")}
    healthy(sb)
    sb.admin.set_account(rpm=2)
    data = cli(sb, "health", "--sequential", code=3)
    assert sorted(s for s, _ in statuses(data).values()) == ["healthy", "healthy"] + ["rate-limited"] * 3
    assert {c for s, c in statuses(data).values() if s == "rate-limited"} == {"free-models-per-min"}


def test_a_tools_request_to_a_no_tools_model_is_unsupported(sb: Any) -> None:
    from rollout_cli.checks.classify import classify

    sb.admin.set_fault("deepseek-chat-v3.1", no_tools=True)
    tools = [{"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}}]
    with sb.client() as client:
        plain = client.complete("deepseek-chat-v3.1", "ping", disable_fallbacks=True, extra={"num_retries": 0})
        seen = client.complete("deepseek-chat-v3.1", "ping", disable_fallbacks=True,
                               extra={"num_retries": 0, "tools": tools})
    assert plain.status == 200
    assert (seen.status, classify(seen, "deepseek-chat-v3.1").status) == (404, "unsupported")


def test_a_streamed_case_sees_the_error_mid_stream(sb: Any, tmp_path: Path) -> None:
    suite = tmp_path / "stream.yaml"
    suite.write_text("kind: smoke\ncases:\n  - name: stream\n    prompt: say a few words\n    stream: true\n"
                     "    assert: {contains: Simulated}\ndrill: false\n")
    ok = cli(sb, "smoke", "--suite", str(suite), "--model", PRIMARY, code=0)
    assert [c["status"] for c in ok["checks"] if c["check"] == "stream"] == ["pass"]
    sb.admin.set_fault(PRIMARY, mode="stream-error")
    data = cli(sb, "smoke", "--suite", str(suite), "--model", PRIMARY, code=1)
    case = next(c for c in data["checks"] if c["check"] == "stream")
    assert (case["status"], case["model_status"], case["http_status"]) == ("fail", "broken", 200)
    assert case["detail"].startswith("broken (stream-error): ")


# --- the verdict table (advance --dry-run at 0%: every gate but the window ones) -------------------


def advance(sb: Any, code: int) -> dict:
    return cli(sb, "advance", "--dry-run", code=code)


@pytest.mark.parametrize("fault", [{"retired": True}, {"price": "0.000002"}, {"mode": "stream-error"}])
def test_primary_retired_priced_or_broken_is_no_go(sb: Any, fault: dict) -> None:
    sb.admin.set_fault(PRIMARY, **fault)
    data = advance(sb, 1)
    assert data["verdict"] == "NO-GO"
    status = {"retired": "retired", "price": "not-free", "mode": "broken"}[next(iter(fault))]
    assert gate(data, "primary model")["status"] == "fail"
    # The smoke's request may reach the primary first and put it in the gateway's cooldown: health then
    # judges the cooldown answer by its cause, a 404 (broken), the catalog gate says which 404.
    seen = (f"primary {PRIMARY}: {status}", f"primary {PRIMARY}: broken, HTTP 429")
    assert any(r.startswith(seen) for r in data["reasons"]), data["reasons"]
    if "mode" not in fault:
        assert gate(data, "catalog")["status"] == "fail"


def test_broken_primary_in_the_gateways_cooldown_is_still_no_go(sb: Any) -> None:
    """App traffic keeps a malformed primary cooled down; the check's 429 is judged by its cause."""
    sb.admin.set_fault(PRIMARY, mode="malformed")
    stop = threading.Event()
    answers: list[int] = []

    def app_traffic() -> None:
        with GatewayClient(sb.gateway_url, sb.master_key, 30.0, user_agent="sample-app/1.0") as app:
            while not stop.is_set():
                answers.append(app.complete(PRIMARY, "hello").status)  # fallbacks on, as the app sends it
                stop.wait(0.2)

    sender = threading.Thread(target=app_traffic, daemon=True)
    sender.start()
    try:
        # each app request failed on the primary first: past allowed_fails (3) the gateway cools it down
        wait_until(lambda: len(answers) >= 4, 30, "four app requests, each failing on the primary first")
        health = cli(sb, "health", "--model", PRIMARY, code=1)
        data = advance(sb, 1)
    finally:
        stop.set()
        sender.join(timeout=30)
    primary = health["models"][0]
    assert primary["http_status"] == 429  # the gateway's cooldown answer...
    assert (primary["status"], primary["error_class"]) == ("broken", "cooldown-malformed")  # ...judged by its cause
    assert data["verdict"] == "NO-GO" and gate(data, "primary model")["status"] == "fail"


def test_a_fallback_no_longer_free_is_no_go_on_cost(sb: Any) -> None:
    sb.admin.set_fault("minimax-m2", price="0.000002")
    data = advance(sb, 1)
    assert data["verdict"] == "NO-GO"
    assert gate(data, "cost")["status"] == "fail"
    assert "minimax-m2: minimax/minimax-m2:free is an OpenRouter :free model" not in gate(data, "cost")["reason"]
    assert "OpenRouter prices it at prompt 0.000002" in gate(data, "cost")["reason"]
    assert gate(data, "healthy models")["status"] == "pass"  # 4 of 5: the health gate alone would allow it


def test_a_retired_fallback_is_go_with_a_warning_and_replacements(sb: Any) -> None:
    sb.admin.set_fault("kimi-k2", retired=True)
    data = advance(sb, 0)
    assert data["verdict"] == "GO", data["reasons"]
    catalog = gate(data, "catalog")
    assert (catalog["status"], catalog["value"]) == ("pass", "4 of 5 fit")
    assert catalog["warnings"] == [
        "retired fallback kimi-k2 (moonshotai/kimi-k2:free): moonshotai/kimi-k2:free is not in OpenRouter's "
        "catalog: retired; free replacements: openai/gpt-oss-20b:free, meta-llama/llama-3.3-70b-instruct:free, "
        "mistralai/mistral-small-3.2-24b-instruct:free (replace: rollout models --replace kimi-k2 NEW)"
    ]
    assert any(w.startswith("retired fallback kimi-k2") for w in data["warnings"])
    assert gate(data, "cost")["status"] == "pass"


def test_a_model_lacking_a_required_capability_is_no_go(sb: Any) -> None:
    set_yaml(sb, "  requires: [tools, stream]\n", before="gateway:\n")
    sb.admin.set_fault("deepseek-chat-v3.1", no_tools=True)
    data = advance(sb, 1)
    assert data["verdict"] == "NO-GO"
    assert gate(data, "catalog")["reason"].startswith(
        "catalog: deepseek-chat-v3.1 (deepseek/deepseek-chat-v3.1:free): "
        "deepseek/deepseek-chat-v3.1:free lacks tools (app.requires); free replacements: openai/gpt-oss-20b:free"
    )
    assert data["reasons"] == [gate(data, "catalog")["reason"]]  # health is fine: only the catalog knows


def test_quota_exhausted_is_hold_saying_when_it_resets(sb: Any) -> None:
    sb.admin.set_account(quota_left=0)
    data = advance(sb, 3)
    assert data["verdict"] == "HOLD"
    assert gate(data, "quota")["reason"] == "OpenRouter free quota exhausted: 0 of 50 left today, resets at 00:00 UTC"
    assert {g["status"] for g in data["gates"]} <= {"pass", "inconclusive", "skipped"}


def test_primary_upstream_throttled_is_hold(sb: Any) -> None:
    sb.admin.set_fault(PRIMARY, status=429, upstream=True)
    data = advance(sb, 3)
    assert data["verdict"] == "HOLD"
    primary = gate(data, "primary model")
    assert (primary["status"], primary["value"]) == ("inconclusive", "upstream-throttled, HTTP 429")
    assert {g["status"] for g in data["gates"]} <= {"pass", "inconclusive", "skipped"}


# --- `rollout models`: the catalog watchdog and --replace -------------------------------------------


def test_models_finds_the_retired_priced_and_no_tools_models_with_replacements(sb: Any) -> None:
    set_yaml(sb, "  requires: [tools, response_format]\n", before="gateway:\n")
    assert cli(sb, "models", code=1)["failing"] == ["minimax-m2", "qwen3-coder"]  # no response_format
    sb.admin.set_fault("kimi-k2", retired=True)
    sb.admin.set_fault("minimax-m2", price="0.000002")
    sb.admin.set_fault("deepseek-chat-v3.1", no_tools=True)
    data = cli(sb, "models", code=1)
    rows = {m["alias"]: m for m in data["models"]}
    assert {a: m["status"] for a, m in rows.items()} == {
        "glm-4.5-air": "ok", "deepseek-chat-v3.1": "unsupported", "minimax-m2": "not-free",
        "kimi-k2": "retired", "qwen3-coder": "unsupported",
    }
    assert rows["deepseek-chat-v3.1"]["missing"] == ["tools"]
    assert rows["minimax-m2"]["pricing"]["prompt"] == "0.000002"
    offered = [r["id"] for r in rows["kimi-k2"]["replacements"]]
    # free, :free, tools and response_format, not in the chain; longest context first
    assert offered == ["openai/gpt-oss-20b:free", "meta-llama/llama-3.3-70b-instruct:free",
                       "mistralai/mistral-small-3.2-24b-instruct:free"]
    assert rows["kimi-k2"]["replacements"][0]["why"] == (
        "free; supports tools, response_format; 131,072-token context; also structured_outputs")
    assert rows["glm-4.5-air"]["replacements"] == []


def test_models_replace_round_trips_the_shipped_config_byte_for_byte(tmp_path: Path) -> None:
    from rollout_cli.gateway.config import packaged_config
    from rollout_cli.gateway.replace import replace_model

    text = packaged_config().read_text()
    edit = replace_model(text, "kimi-k2", "openai/gpt-oss-20b:free", "gpt-oss-20b", where="deploy")
    old, new = text.splitlines(keepends=True), edit.text.splitlines(keepends=True)
    assert len(old) == len(new)
    assert [i + 1 for i, (a, b) in enumerate(zip(old, new, strict=True)) if a != b] == edit.lines
    assert [new[n - 1] for n in edit.lines] == [
        "  - model_name: gpt-oss-20b            # 4\n",
        "      model: openrouter/openai/gpt-oss-20b:free\n",
        "    - glm-4.5-air: [deepseek-chat-v3.1, minimax-m2, gpt-oss-20b, qwen3-coder]\n",
        "    - deepseek-chat-v3.1: [minimax-m2, gpt-oss-20b, qwen3-coder]\n",
        "    - minimax-m2: [gpt-oss-20b, qwen3-coder]\n",
        "    - gpt-oss-20b: [qwen3-coder]\n",
    ]
    back = replace_model(edit.text, "gpt-oss-20b", "moonshotai/kimi-k2:free", "kimi-k2", where="deploy")
    assert back.text == text  # and back again: byte for byte


# --- the fallback-rate gate (at 10%, app traffic through the gateway) --------------------------------


def test_fallback_rate_sees_a_dead_primary_its_fallbacks_hide(sb: Any) -> None:
    moved = cli(sb, "advance", "--yes", "--skip-soak", "--reason", "fallback gate test", code=0)
    assert moved["post_check"]["ok"] is True
    try:
        with GatewayClient(sb.gateway_url, sb.master_key, 30.0, user_agent="sample-app/1.0") as app:
            few = [app.complete(PRIMARY, "hello") for _ in range(5)]
            assert {s.status for s in few} == {200}
            scraped_after_now(sb.root)  # a decision's window runs to Prometheus's last scrape before it
            data = cli(sb, "report", code=None)
            window = {k: v for k, v in data["snapshot"]["window"].items() if k != "queries"}
            assert gate(data, "fallback rate")["status"] == "inconclusive", (gate(data, "fallback rate"), window)
            assert gate(data, "fallback rate")["reason"].startswith("only 5 requests in the window (< 20)")
            counted = gateway_counts(app)
            sb.admin.set_fault(PRIMARY, status=500)
            # at once, as an app's users would: each one waits out the primary's retries and back-off
            # (seconds) before its fallback answers, so one after another would take minutes
            with ThreadPoolExecutor(max_workers=25) as users:
                served = list(users.map(lambda _: app.complete(PRIMARY, "hello"), range(25)))
            # LiteLLM counts a request after answering it, seconds later on a busy machine: the test waits for
            # its counters, then for Prometheus's scrape of them
            wait_until(lambda: all(now - then >= 25 for now, then in zip(gateway_counts(app), counted, strict=True)),
                       60, "the gateway's counters to hold the 25 requests and their fallbacks")
            scraped_after_now(sb.root)
        assert {s.served_by for s in served} == {"deepseek-chat-v3.1"} and {s.status for s in served} == {200}
        sb.admin.clear()
        data = cli(sb, "report", code=1)
        fallback = gate(data, "fallback rate")
        assert fallback["status"] == "fail"
        # the drills of the advance and of the first report are in this window, told apart by their label
        assert fallback["value"] == "83.33% (25 of 30)", {k: v for k, v in data["snapshot"]["window"].items()
                                                          if k != "queries"}
        assert gate(data, "error rate")["status"] == "pass"  # the error rate alone would not see it
    finally:
        cli(sb, "rollback", "--level", "1", "--yes", "--reason", "fallback gate test", code=0)


def gateway_counts(client: GatewayClient) -> tuple[float, float]:
    """The gateway's own app requests and successful fallbacks so far, from its /metrics/."""
    from rollout_cli.rollout.metrics import summarize

    now = summarize(client.metrics())
    return now["requests"], now["fallbacks"]


# --- the quota ledger --------------------------------------------------------------------------


def test_the_ledger_counts_rollouts_own_requests_and_refuses_past_the_share(sb: Any) -> None:
    before = cli(sb, "quota", code=0)
    cli(sb, "health", code=0)
    after = cli(sb, "quota", code=0)
    assert after["used"] == before["used"] + 5
    assert after["per_minute"]["limit"] == 20 and after["resets_at"] == "00:00 UTC"
    with GatewayClient(sb.gateway_url, sb.master_key, 30.0, user_agent="sample-app/1.0") as app:
        app.complete(PRIMARY, "hello")  # app traffic is not rollout's
    assert cli(sb, "quota", code=0)["used"] == after["used"]

    used = after["used"]
    # A share that leaves room for one health run (5) but not a smoke run (11).
    set_quota(sb, used + 8, 1.0)
    plan = cli(sb, "smoke", "--plan", code=3)
    assert plan["forecast"] == {**plan["forecast"], "planned": 11, "used": used, "left": 8, "fits": False}
    stats = sb.admin.stats()["total"]
    refused = rollout("-w", str(sb.root), "smoke")
    assert refused.exit_code == 3
    assert re.search(rf"refused: smoke would send 11 request\(s\); rollout has used {used} of its {used + 8} today "
                     r"\(100% of \d+\), 8 left; the quota resets at 00:00 UTC \(in \d+h\d\dm\)", refused.stderr)
    assert sb.admin.stats()["total"] == stats  # nothing was sent
    assert cli(sb, "advance", "--plan", code=3)["requests"] == {"health": 5, "smoke": 11, "post_check": 1}
    assert rollout("-w", str(sb.root), "advance", "--dry-run").exit_code == 3
    cli(sb, "health", code=0)  # 5 fit
    assert cli(sb, "quota", code=0)["left"] == 3


def test_watch_probe_cadence_comes_from_the_budget(sb: Any) -> None:
    set_quota(sb, 50, 0.2)
    stats = sb.admin.stats()["total"]
    result = rollout("-w", str(sb.root), "watch", "--probe", "--count", "2", "--interval", "0.5", "--json")
    lines = [valid("watch", json.loads(line)) for line in result.stdout.splitlines()]
    # 10 requests a day for rollout, half for probes, 5 per round: one round a day
    assert [line["probe"]["this_sample"] for line in lines] == [True, False]
    assert lines[0]["probe"]["probe_every"] == 172_800 and lines[0]["probe"]["rounds_per_day"] == 1
    assert sb.admin.stats()["total"] - stats <= 5



def test_the_human_views_of_models_quota_and_a_replace(sb: Any) -> None:
    sb.admin.set_fault("kimi-k2", retired=True)
    shown = rollout("-w", str(sb.root), "models")
    assert shown.exit_code == 1
    assert "free replacements for kimi-k2" in shown.stdout and "openai/gpt-oss-20b:free" in shown.stdout
    assert "  rollout models --replace kimi-k2 openai/gpt-oss-20b:free" in shown.stdout
    diff = rollout("-w", str(sb.root), "models", "--replace", "kimi-k2", "openai/gpt-oss-20b:free", "--dry-run")
    assert diff.exit_code == 0
    assert "+- model_name: gpt-oss-20b" in diff.stdout and "nothing written" in diff.stdout
    quota = rollout("-w", str(sb.root), "quota")
    assert quota.exit_code == 0 and "resets at 00:00 UTC" in quota.stdout
    plan = rollout("-w", str(sb.root), "advance", "--plan")
    assert plan.exit_code == 0 and "(health 5, smoke 11, post-check 1)" in plan.stdout
    misuse = rollout("-w", str(sb.root), "models", "--dry-run")
    assert misuse.exit_code == 2 and "--alias, --dry-run and --force go with --replace OLD NEW" in misuse.stderr


# --- last: the gateway serves the replacement from here on ----------------------------------------


def test_models_replace_edits_the_gateway_config_and_the_gateway_serves_it(sb: Any) -> None:
    """Last in this module: its gateway goes on serving the replacement (one LiteLLM start fewer)."""
    config = sb.root / "gateway" / "litellm-config.yaml"
    before = config.read_bytes()
    dry = cli(sb, "models", "--replace", "kimi-k2", "openai/gpt-oss-20b:free", "--dry-run", code=0)
    assert dry["written"] is False and config.read_bytes() == before and len(dry["lines"]) == 6
    refused = rollout("-w", str(sb.root), "models", "--replace", "kimi-k2", "openai/gpt-4o-mini")
    assert refused.exit_code == 2 and "openai/gpt-4o-mini is not free" in refused.stderr
    assert config.read_bytes() == before
    try:
        done = cli(sb, "models", "--replace", "kimi-k2", "openai/gpt-oss-20b:free", "--reason", "kimi retired",
                   code=0)
        assert done["written"] is True and done["new_alias"] == "gpt-oss-20b"
        record = [json.loads(line) for line in (sb.root / ".rollout" / "history.jsonl").read_text().splitlines()][-1]
        assert record["command"] == "models replace" and record["reason"] == "kimi retired"
        assert record["changes"][0]["after"] == "gpt-oss-20b (openai/gpt-oss-20b:free)"
        assert cli(sb, "gateway", "restart", "--timeout", "90", code=0)["healthy"] is True
        health = cli(sb, "health", code=0)
        assert [m["alias"] for m in health["models"]][3] == "gpt-oss-20b"
        assert sb.admin.stats()["models"]["openai/gpt-oss-20b:free"]["requests"] >= 1  # really served upstream
    finally:
        config.write_bytes(before)  # not restarted: no test of the module comes after this one
