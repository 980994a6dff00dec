"""`rollout smoke` end to end on the session sandbox (real LiteLLM proxy + simulator), plus the
suite validation, the request budget, and the JUnit/Markdown files.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from rollout_cli.io.net import free_port
from support import ALIASES, rollout

pytestmark = pytest.mark.gateway



def catalog_env(sb) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """What the gateway resolves os.environ/OPENROUTER_API_BASE to: the cost guard reads prices there."""
    return {"OPENROUTER_API_BASE": sb.simulator_url + "/api/v1"}


def smoke(sb, *args: str, ws: Path | None = None):  # type: ignore[no-untyped-def]
    result = rollout("-w", str(ws or sb.root), "smoke", "--json", *args, env=catalog_env(sb))
    data = json.loads(result.stdout) if result.stdout.strip().startswith("{") else None
    return result, data


def checks(data: dict, status: str | None = None) -> dict[tuple[str, str], dict]:
    return {(c["model"], c["check"]): c for c in data["checks"] if status is None or c["status"] == status}


def test_all_healthy_passes_and_writes_valid_junit_and_markdown(sb, tmp_path):
    junit, md = tmp_path / "out" / "smoke.xml", tmp_path / "smoke.md"
    result, data = smoke(sb, "--junit-xml", str(junit), "--markdown", str(md))
    assert result.exit_code == 0, result.output
    assert data["verdict"] == "passed"
    found = checks(data)
    for alias in ALIASES:
        assert found[(alias, "ping")]["status"] == "pass"
        assert found[(alias, "json")]["status"] == "pass"
        assert found[(alias, "cost")]["status"] == "pass"
        assert "zero price" in found[(alias, "cost")]["detail"]  # confirmed in the catalog, not only by id
    drill = found[("glm-4.5-air", "fallback-drill")]
    assert drill["status"] == "pass" and drill["served_by"] == "deepseek-chat-v3.1"
    # the budget: 5 models x 2 cases + 1 drill, counted here and seen upstream
    assert data["plan"]["completions"] == 11 and data["requests"]["sent"] == 11
    assert sb.admin.stats()["total"] == 11

    root = ET.parse(junit).getroot()
    cases = root.findall(".//testcase")
    assert len(cases) == len(data["checks"]) == 1 + 5 * 2 + 1 + 5  # gateway, cases, drill, cost
    assert root.get("tests") == str(len(cases)) and root.get("failures") == "0" and root.get("skipped") == "0"
    assert {(c.get("classname"), c.get("name")) for c in cases} >= {("smoke.kimi-k2", "json"),
                                                                    ("smoke.glm-4.5-air", "fallback-drill")}
    text = md.read_text()
    assert text.startswith("### rollout smoke: ✅ passed") and "| `qwen3-coder` | ✅ | ✅ | ✅ |" in text


def test_one_model_500_fails_naming_it_and_junit_counts_it(sb, tmp_path):
    sb.admin.set_fault("qwen3-coder", status=500)
    junit = tmp_path / "smoke.xml"
    result, data = smoke(sb, "--junit-xml", str(junit))
    assert result.exit_code == 1
    found = checks(data)
    assert found[("qwen3-coder", "ping")]["status"] == "fail"
    assert "down (http-500)" in found[("qwen3-coder", "ping")]["detail"]
    # a down model gets no more requests: the rest of its cases are skipped, not sent
    assert found[("qwen3-coder", "json")]["status"] == "skipped"
    assert sb.admin.stats()["models"]["qwen/qwen3-coder:free"]["requests"] == 1
    assert any("qwen3-coder ping" in m for m in data["messages"])
    root = ET.parse(junit).getroot()
    assert root.get("failures") == "1" and root.get("skipped") == "1"
    failure = root.find(".//testcase[@classname='smoke.qwen3-coder'][@name='ping']/failure")
    assert failure is not None and failure.get("type") == "down"


def test_429_retries_after_retry_after_then_is_inconclusive(sb):
    sb.admin.set_fault("qwen3-coder", status=429, retry_after=1)
    result, data = smoke(sb)
    assert result.exit_code == 3, result.output
    assert data["verdict"] == "inconclusive"
    found = checks(data)
    assert found[("qwen3-coder", "ping")]["status"] == "inconclusive"
    assert found[("qwen3-coder", "ping")]["requests"] == 2  # one retry, after the 1 s Retry-After
    assert found[("qwen3-coder", "json")]["status"] == "skipped"  # a throttled model is not asked again
    # 11 planned - 1 not sent + 1 retry
    assert data["requests"]["retries"] == 1 and data["requests"]["sent"] == 11
    assert sb.admin.stats()["models"]["qwen/qwen3-coder:free"]["requests"] == 2


def test_a_paid_model_in_the_gateway_config_fails_the_cost_guard_naming_it(sb, tmp_path):
    import yaml

    config = yaml.safe_load((sb.root / "gateway" / "litellm-config.yaml").read_text())
    config["model_list"].append({
        "model_name": "gpt-4o-mini",
        "litellm_params": {"model": "openrouter/openai/gpt-4o-mini", "api_base": "os.environ/OPENROUTER_API_BASE"},
    })
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "paid.yaml").write_text(yaml.safe_dump(config))
    (ws / "rollout.yaml").write_text(
        f"app:\n  env_file: ./.env\ngateway:\n  url: {sb.gateway_url}\n  master_key_env: ROLLOUT_SANDBOX_MASTER_KEY\n"
        f"  master_key_file: {sb.key_file}\n  config: ./paid.yaml\n"
    )
    result, data = smoke(sb, "--model", "glm-4.5-air", ws=ws)  # the guard covers the whole config anyway
    assert result.exit_code == 1
    assert data["cost"]["paid"] == ["gpt-4o-mini"]
    cost = checks(data)[("gpt-4o-mini", "cost")]
    assert cost["status"] == "fail"
    assert "not an OpenRouter :free model" in cost["detail"] and "0.00000015" in cost["detail"]
    human = rollout("-w", str(ws), "smoke", "-m", "glm-4.5-air", env=catalog_env(sb))
    assert human.exit_code == 1 and "gpt-4o-mini cost" in human.stdout


def test_plan_sends_nothing_and_max_requests_refuses_before_sending(sb):
    result = rollout("-w", str(sb.root), "smoke", "--plan", "--json")
    assert result.exit_code == 0
    plan = json.loads(result.stdout)["plan"]
    assert plan["per_model"] == {alias: 2 for alias in ALIASES}
    assert plan["drill"] == {"model": "glm-4.5-air", "expected": "deepseek-chat-v3.1", "requests": 1}
    assert plan["completions"] == 11
    refused = rollout("-w", str(sb.root), "smoke", "--max-requests", "10")
    assert refused.exit_code == 2
    assert "needs 11 requests" in refused.output and "--max-requests is 10" in refused.output
    assert sb.admin.stats()["total"] == 0
    narrowed = rollout("-w", str(sb.root), "smoke", "--plan", "-m", "kimi-k2", "--max-requests", "2")
    assert narrowed.exit_code == 0 and "2 completion request(s) of --max-requests 2" in narrowed.stdout


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("cases: [\n", "is not valid YAML"),
        ("cases: []\n", "'cases' must be a non-empty list"),
        ("kind: smoke\nbogus: 1\ncases: [{name: a, prompt: p, assert: {contains: x}}]\n", "unknown key 'bogus'"),
        ("cases: [{name: a, prompt: p, assert: {containz: x}}]\n",
         "case 'a' (cases[0]): unknown assertion 'containz' (known: contains, regex, json, max_latency_ms, min_tokens)"),
        ("cases: [{name: a, prompt: p, assert: {max_latency_ms: fast}}]\n", "assert.max_latency_ms must be a number"),
        ("cases: [{name: a, prompt: p, assert: {regex: '('}}]\n", "is not a valid regular expression"),
        ("cases: [{name: a, prompt: p, assert: {json: {keys: [x]}}}]\n", "assert.json: unknown key 'keys'"),
        ("cases: [{name: a, prompt: 3, assert: {contains: x}}]\n", "case 'a' (cases[0]): 'prompt' must be"),
        ("cases: [{name: a, prompt: p, max_tokens: -1, assert: {contains: x}}]\n", "max_tokens must be a whole number"),
        ("cases: [{name: a, prompt: p, assert: {contains: x}}, {name: a, prompt: q, assert: {contains: y}}]\n",
         "case name 'a' is used twice"),
        ("cases: [{name: a, prompt: p}]\n", "'assert' must be a mapping"),
    ],
)
def test_a_malformed_suite_exits_2_naming_file_case_and_field(sb, tmp_path, text, expected):
    suite = tmp_path / "bad-suite.yaml"
    suite.write_text(text)
    result = rollout("-w", str(sb.root), "smoke", "--suite", str(suite))
    assert result.exit_code == 2, result.output
    assert str(suite) in result.output and expected in result.output
    assert sb.admin.stats()["total"] == 0


def test_a_workspace_suite_overrides_the_packaged_one(sb, tmp_path):
    import shutil

    ws = tmp_path / "ws"
    shutil.copytree(sb.root, ws, ignore=shutil.ignore_patterns("app", "*.log", "sandbox.json", "*.lock"))
    (ws / "playbooks").mkdir(exist_ok=True)  # the sandbox's own playbooks folder (its stage plan) is copied too
    (ws / "playbooks" / "smoke.yaml").write_text(
        "cases:\n  - name: shout\n    prompt: ping\n    assert: {regex: '^PONG$'}\ndrill: false\n"
    )
    text = (ws / "rollout.yaml").read_text().replace("./app", str(sb.root / "app"))
    if "\nplaybooks:" not in text:
        text += "playbooks: ./playbooks\n"
    (ws / "rollout.yaml").write_text(text)
    result, data = smoke(sb, "-m", "kimi-k2", ws=ws)
    assert result.exit_code == 1
    shout = checks(data)[("kimi-k2", "shout")]
    assert shout["status"] == "fail" and "does not match /^PONG$/" in shout["detail"]
    assert ("glm-4.5-air", "fallback-drill") not in checks(data)


def test_gateway_down_exits_4_and_still_writes_junit(sb, tmp_path):
    port = free_port()
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "rollout.yaml").write_text(
        f"app:\n  env_file: ./.env\ngateway:\n  url: http://127.0.0.1:{port}\n"
        f"  master_key_env: ROLLOUT_SANDBOX_MASTER_KEY\n  master_key_file: {sb.key_file}\n"
        f"  config: {sb.root / 'gateway' / 'litellm-config.yaml'}\n"
    )
    junit = tmp_path / "smoke.xml"
    result, _data = smoke(sb, "--junit-xml", str(junit), ws=ws)
    assert result.exit_code == 4
    root = ET.parse(junit).getroot()
    assert root.get("failures") == "1"  # the gateway case; the model cases are skipped, not sent
    assert root.get("skipped") == str(5 * 2)


def test_wrong_key_exits_2_naming_the_variable(sb):
    result = rollout("-w", str(sb.root), "smoke", env={"ROLLOUT_SANDBOX_MASTER_KEY": "sk-not-the-key-0123456789abcdef"})
    assert result.exit_code == 2
    assert "refused the master key from $ROLLOUT_SANDBOX_MASTER_KEY" in result.stdout
    assert sb.admin.stats()["total"] == 0


# --- logic with cases, no gateway ------------------------------------------------------------


def test_junit_counts_every_status():
    from rollout_cli.checks.junit import smoke_junit_xml

    statuses = ["pass", "fail", "inconclusive", "not-verifiable", "skipped", "fail"]
    data = {"checks": [{"model": f"m{i % 2}", "check": f"c{i}", "status": s, "detail": s}
                       for i, s in enumerate(statuses)], "duration_ms": 1500}
    root = ET.fromstring(smoke_junit_xml(data))
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("6", "2", "3")
    assert sum(int(s.get("tests")) for s in root.findall("testsuite")) == 6


def test_budget_retries_once_within_the_cap_and_honours_retry_after():
    from rollout_cli.checks.budget import RequestBudget
    from rollout_cli.gateway.api import Completion

    class Gateway:
        calls = 0

        def complete(self, model, prompt, **kw):  # type: ignore[no-untyped-def]
            Gateway.calls += 1
            return Completion(model, 429, 1.0, retry_after=2.0)

    waits: list[float] = []
    budget = RequestBudget(Gateway(), cap=3, planned=2, sleep=waits.append)  # type: ignore[arg-type]
    seen, sent = budget.ask_counted("a", "p", max_tokens=1, timeout=1)
    assert (seen.status, sent, waits) == (429, 2, [2.0])
    # the cap (3) is now spent but for the one planned request left: no retry for it
    seen, sent = budget.ask_counted("b", "p", max_tokens=1, timeout=1)
    assert sent == 1 and budget.sent == 3 and waits == [2.0]
    long_wait = RequestBudget(Gateway(), sleep=waits.append)  # type: ignore[arg-type]
    long_wait.retry_wait_max_s = 1.0
    assert long_wait.ask_counted("c", "p", max_tokens=1, timeout=1)[1] == 1


@pytest.mark.parametrize(
    ("answer", "status"),
    [
        ((400, None, "mock_testing_fallbacks needs general_settings.dangerously_allow_mock_testing_request_params"),
         "not-verifiable"),
        ((200, "deepseek-chat-v3.1", None), "pass"),
        ((200, "glm-4.5-air", None), "not-verifiable"),  # the gateway ignored the parameter
        ((200, "kimi-k2", None), "fail"),  # served, but not by the next in the chain
        ((500, None, "litellm.APIError: APIError: all fallbacks failed"), "fail"),
        ((429, None, "Rate limit"), "inconclusive"),
    ],
)
def test_fallback_drill_verdicts(answer, status):
    from rollout_cli.checks.budget import RequestBudget
    from rollout_cli.checks.smoke import _run_drill
    from rollout_cli.checks.suite import Suite
    from rollout_cli.gateway.api import Completion

    code, served, message = answer

    class Gateway:
        def complete(self, model, prompt, **kw):  # type: ignore[no-untyped-def]
            assert kw["extra"]["mock_testing_fallbacks"] is True and kw["extra"]["max_fallbacks"] == 1
            assert not kw["disable_fallbacks"]
            return Completion(model, code, 5.0, served_by=served, content="pong" if code == 200 else None,
                              error=None if code == 200 else "http", message=message)

    budget = RequestBudget(Gateway(), retries=0)  # type: ignore[arg-type]
    drill = {"model": "glm-4.5-air", "expected": "deepseek-chat-v3.1", "requests": 1}
    assert _run_drill(budget, Suite(cases=()), drill).status == status


def test_the_ci_example_is_a_workflow_whose_workspace_loads(tmp_path):
    import re

    import yaml

    from rollout_cli.core.workspace import load_workspace

    doc = Path(__file__).resolve().parent.parent / "docs" / "ci-smoke.yml"
    workflow = yaml.safe_load(doc.read_text())
    steps = workflow["jobs"]["smoke"]["steps"]
    script = next(s["run"] for s in steps if s.get("name") == "Write the rollout workspace")
    body = re.search(r"<<YAML\n(.*?)\nYAML", script, re.DOTALL).group(1)
    (tmp_path / "rollout.yaml").write_text(body)
    ws = load_workspace(tmp_path)
    assert ws.gateway.master_key_env == "LITELLM_MASTER_KEY" and ws.gateway.config is not None
    smoke_step = next(s["run"] for s in steps if s.get("id") == "smoke")
    assert "--junit-xml smoke-junit.xml" in smoke_step and '-eq 3' in smoke_step


def _junit_counts(path: Path) -> dict[str, str | None]:
    root = ET.parse(path).getroot()
    return {key: root.get(key) for key in ("tests", "failures", "skipped")}


def test_wrong_model_served_by_the_real_gateway_fails_the_drill_in_markdown_and_junit(sb, tmp_path):
    """deepseek (next after the primary) is down: LiteLLM's own fallback goes on to minimax-m2."""
    sb.admin.set_fault("deepseek-chat-v3.1", status=500)
    junit, md = tmp_path / "smoke.xml", tmp_path / "smoke.md"
    result, data = smoke(sb, "--junit-xml", str(junit), "--markdown", str(md))
    assert result.exit_code == 1, result.output
    assert data["verdict"] == "failed"
    drill = checks(data)[("glm-4.5-air", "fallback-drill")]
    assert (drill["status"], drill["served_by"]) == ("fail", "minimax-m2")
    assert drill["detail"] == "served by minimax-m2, expected deepseek-chat-v3.1 (next in the chain after glm-4.5-air)"
    text = md.read_text()
    assert text.startswith("### rollout smoke: ❌ failed\n")
    assert "| `deepseek-chat-v3.1` | ❌ | ⏭️ | ✅ |" in text
    assert ("**Fallback drill** ❌ fail: served by minimax-m2, expected deepseek-chat-v3.1 "
            "(next in the chain after glm-4.5-air)") in text
    assert "<details><summary>Details</summary>" in text and "(exit 1)." in text
    # the gateway case, 5 x 2 cases, the drill, 5 costs; deepseek ping and the drill fail, its json is skipped
    assert _junit_counts(junit) == {"tests": "17", "failures": "2", "skipped": "1"}
    failure = ET.parse(junit).getroot().find(".//testcase[@classname='smoke.glm-4.5-air'][@name='fallback-drill']/failure")
    assert failure is not None and "served by minimax-m2" in (failure.get("message") or "")


def test_every_fallback_down_fails_the_drill_through_the_real_gateway(sb):
    for alias in ALIASES[1:]:
        sb.admin.set_fault(alias, status=500)
    result, data = smoke(sb)
    assert result.exit_code == 1
    drill = checks(data)[("glm-4.5-air", "fallback-drill")]
    assert drill["status"] == "fail" and drill["http_status"] == 500
    assert drill["detail"].startswith("fallback from glm-4.5-air failed: HTTP 500 ")


@pytest.mark.slow(35)
def test_a_gateway_that_refuses_mock_fallbacks_makes_the_run_inconclusive(tmp_path):
    """The real proxy without dangerously_allow_mock_testing_request_params: the drill cannot be
    verified (never passed), so the run is inconclusive (exit 3), in JSON, Markdown and JUnit."""
    import yaml

    root = tmp_path / "sb"
    up = rollout("sandbox", "up", str(root), "--runtime", "process", "--gateway-port", "0", "--simulator-port", "0",
                 "--timeout", "120")
    try:
        assert up.exit_code == 0, up.output
        # The sandbox allows the mock parameter; a production config may not: take it out and restart.
        config_file = root / "gateway" / "litellm-config.yaml"
        config = yaml.safe_load(config_file.read_text())
        del config["general_settings"]["dangerously_allow_mock_testing_request_params"]
        config_file.write_text(yaml.safe_dump(config))
        restart = rollout("-w", str(root), "gateway", "restart", "--timeout", "120")
        assert restart.exit_code == 0, restart.output
        from rollout_cli.sandbox.state import load_state

        state = load_state(root)
        assert state is not None
        junit, md = tmp_path / "smoke.xml", tmp_path / "smoke.md"
        result = rollout("-w", str(root), "smoke", "--json", "--junit-xml", str(junit), "--markdown", str(md),
                         env={"OPENROUTER_API_BASE": state.simulator_url + "/api/v1"})
        assert result.exit_code == 3, result.output
        data = json.loads(result.stdout)
        assert data["verdict"] == "inconclusive"
        drill = checks(data)[("glm-4.5-air", "fallback-drill")]
        assert drill["status"] == "not-verifiable" and drill["http_status"] == 400
        assert "dangerously_allow_mock_testing_request_params" in drill["detail"]
        assert all(c["status"] == "pass" for c in data["checks"] if c["check"] != "fallback-drill")
        text = md.read_text()
        assert text.startswith("### rollout smoke: ⚠️ inconclusive (rate-limited or not verifiable; nothing failed)\n")
        assert "**Fallback drill** ⚠️ not-verifiable: " in text and "(exit 3)." in text
        counts = _junit_counts(junit)
        assert counts["tests"] == "17" and counts["failures"] == "0"
        drill_case = ET.parse(junit).getroot().find(".//testcase[@classname='smoke.glm-4.5-air'][@name='fallback-drill']")
        assert drill_case is not None and drill_case.find("failure") is None
    finally:
        rollout("sandbox", "down", str(root))
