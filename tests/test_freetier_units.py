"""The logic with cases behind the free-tier verdicts: the ledger, cooldown causes, the catalog, the edit."""

from __future__ import annotations

from pathlib import Path

import pytest

from rollout_cli.checks.catalog import CatalogReport, ModelEntry, rank_replacements
from rollout_cli.checks.classify import cooldown_cause, failure_counts, recent_cause
from rollout_cli.core.quota import QuotaLedger, QuotaPayload, QuotaRefused, forecast, require_room
from rollout_cli.core.workspace import QuotaSettings, load_workspace
from rollout_cli.errors import InputError, PlaybookError
from rollout_cli.gateway.replace import alias_for, check_edit, replace_model
from rollout_cli.rollout.gates import catalog_gate
from rollout_cli.rollout.plan import StagePlan, parse_plan
from rollout_cli.sandbox.sample_app import workspace_yaml

NOON = 1_795_953_600.0  # 2026-11-29 12:00:00 UTC


def ledger(tmp_path: Path, now: list[float]) -> QuotaLedger:
    return QuotaLedger(tmp_path / ".rollout", clock=lambda: now[0])


def test_the_ledger_counts_per_utc_day_and_minute(tmp_path: Path) -> None:
    now = [NOON - 120]
    book = ledger(tmp_path, now)
    book.record("glm-4.5-air", 200)
    now[0] = NOON - 30
    book.record("glm-4.5-air", 200)
    book.record("deepseek-chat-v3.1", 200)
    now[0] = NOON
    usage = book.usage()
    assert (usage.day, usage.used, usage.last_minute) == ("2026-11-29", 3, 2)
    assert usage.by_model == {"glm-4.5-air": 2, "deepseek-chat-v3.1": 1}
    assert usage.reset_ts == NOON + 12 * 3600
    now[0] = NOON + 12 * 3600 + 1  # the next UTC day starts empty
    assert book.usage().used == 0
    assert (tmp_path / ".rollout" / "quota" / "2026-11-29.jsonl").is_file()


def test_the_account_is_exhausted_until_a_free_model_answers_again(tmp_path: Path) -> None:
    now = [NOON]
    book = ledger(tmp_path, now)
    book.record("glm-4.5-air", 429, ratelimit={"limit": 50, "remaining": 0, "reset": int((NOON + 43200) * 1000)})
    settings = QuotaSettings()
    assert QuotaPayload(settings, book.usage(), "x").account_exhausted is True
    book.record("glm-4.5-air", 200)
    assert QuotaPayload(settings, book.usage(), "x").account_exhausted is False


def test_require_room_refuses_past_the_share_and_says_when_it_resets(tmp_path: Path) -> None:
    now = [NOON]
    book = ledger(tmp_path, now)
    for _ in range(4):
        book.record("glm-4.5-air", 200)
    settings = QuotaSettings(50, 0.2)
    assert settings.allowance == 10
    assert forecast(book, settings, "health", 5).fits is True
    assert require_room(book, settings, "health", 6).left == 6
    with pytest.raises(QuotaRefused, match=(
        r"^refused: smoke would send 11 request\(s\); rollout has used 4 of its 10 today \(20% of 50\), 6 left; "
        r"the quota resets at 00:00 UTC \(in 12h00m\); wait for the reset")):
        require_room(book, settings, "smoke", 11)
    assert QuotaSettings(1000, 0.1).allowance == 100 and QuotaSettings(7, 0.3).allowance == 2


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("openrouter: {daily_limit: 0}\n", r"'openrouter.daily_limit' must be a whole number >= 1"),
        ("openrouter: {rollout_share: 1.5}\n", r"'openrouter.rollout_share' must be a fraction in \(0, 1\]"),
        ("openrouter: {daily: 5}\n", r"unknown key 'openrouter.daily'"),
        ("openrouter: 50\n", r"'openrouter' must be a mapping"),
    ],
)
def test_openrouter_settings_are_validated(tmp_path: Path, block: str, message: str) -> None:
    text = workspace_yaml().replace("openrouter:\n  daily_limit: 100000\n  rollout_share: 1.0\n", block)
    (tmp_path / "rollout.yaml").write_text(text)
    with pytest.raises(InputError, match=message):
        load_workspace(tmp_path)


def test_app_requires_takes_known_capabilities(tmp_path: Path) -> None:
    good = workspace_yaml().replace("app:\n", "app:\n  requires: [tools, stream]\n")
    (tmp_path / "rollout.yaml").write_text(good)
    assert load_workspace(tmp_path).app.requires == ("tools", "stream")
    (tmp_path / "rollout.yaml").write_text(good.replace("[tools, stream]", "[teleport]"))
    with pytest.raises(InputError, match=r"'app.requires' names unknown capability 'teleport'"):
        load_workspace(tmp_path)


def test_the_cooldown_cause_decides_the_status() -> None:
    assert cooldown_cause("429", "Openrouter.RateLimitError").status == "upstream-throttled"
    assert cooldown_cause("200", "Openrouter.APIError").error_class == "cooldown-malformed"
    assert cooldown_cause("404", "Openrouter.NotFoundError").status == "broken"
    assert cooldown_cause("401", "Openrouter.AuthenticationError").status == "auth-error"
    assert cooldown_cause("503", "Openrouter.ServiceUnavailableError").status == "down"
    assert cooldown_cause(None, None).error_class == "cooldown-unknown"


METRICS = """\
# HELP litellm_deployment_failure_responses_total x
litellm_deployment_failure_responses_total{exception_class="Openrouter.APIError",exception_status="200",model_group="glm"} 3.0
litellm_deployment_failure_responses_created{exception_class="Openrouter.APIError",exception_status="200",model_group="glm"} 100.0
litellm_deployment_failure_responses_total{exception_class="Openrouter.RateLimitError",exception_status="429",model_group="glm"} 5.0
litellm_deployment_failure_responses_created{exception_class="Openrouter.RateLimitError",exception_status="429",model_group="glm"} 50.0
litellm_deployment_failure_responses_total{exception_class="RouterRateLimitError",exception_status="429",model_group="glm"} 9.0
"""


def test_the_recent_cause_is_what_grew_else_the_newest_kind() -> None:
    counts = failure_counts(METRICS)["glm"]
    assert set(counts) == {"200|Openrouter.APIError", "429|Openrouter.RateLimitError"}  # cooldown answers left out
    assert recent_cause(counts, None) == ("200", "Openrouter.APIError")  # the newest kind
    before = {"200|Openrouter.APIError": [3.0, 100.0], "429|Openrouter.RateLimitError": [2.0, 50.0]}
    assert recent_cause(counts, before) == ("429", "Openrouter.RateLimitError")  # what grew
    assert recent_cause({}, None) is None


def entry(alias: str, status: str, role: str = "fallback 1") -> ModelEntry:
    return ModelEntry(alias, f"x/{alias}:free", role, status, f"{alias} is {status}")


def test_the_catalog_gate() -> None:
    plan = StagePlan()
    assert catalog_gate(None, plan).status == "inconclusive"
    unreadable = CatalogReport([], [entry("a", "unknown")], [{"url": "u", "reachable": False, "error": "boom"}], "a")
    assert catalog_gate(unreadable, plan).reason == "catalog cannot be read: u: boom"
    two_gone = CatalogReport([], [entry("p", "ok", "primary"), entry("a", "retired"), entry("b", "retired"),
                                  entry("c", "ok"), entry("d", "ok")], [], "p")
    gate = catalog_gate(two_gone, plan)
    assert (gate.status, gate.value) == ("fail", "3 of 5 fit")
    assert gate.reason.startswith("catalog: only 3 of 5 models left (< 4): a (x/a:free): a is retired")


def test_replacements_are_free_capable_and_ranked() -> None:
    entries = [
        {"id": "a/big:free", "context_length": 200, "supported_parameters": ["tools"], "pricing": {"prompt": "0"}},
        {"id": "a/small:free", "context_length": 100, "supported_parameters": ["tools", "seed"],
         "pricing": {"prompt": "0"}},
        {"id": "a/paid", "context_length": 900, "supported_parameters": ["tools"], "pricing": {"prompt": "0.1"}},
        {"id": "a/priced:free", "context_length": 900, "supported_parameters": ["tools"],
         "pricing": {"prompt": "0", "completion": "0.2"}},
        {"id": "a/notools:free", "context_length": 900, "supported_parameters": [], "pricing": {}},
        {"id": "a/chain:free", "context_length": 900, "supported_parameters": ["tools"], "pricing": {}},
    ]
    found = rank_replacements(entries, ["tools"], exclude={"a/chain:free"})
    assert [r.id for r in found] == ["a/big:free", "a/small:free"]
    assert found[0].why == "free; supports tools; 200-token context"


def test_replace_refuses_what_it_cannot_edit_safely() -> None:
    text = "model_list:\n  - model_name: a\n    litellm_params:\n      model: openrouter/x/a:free\n"
    with pytest.raises(InputError, match=r"no model_name 'b' in model_list"):
        replace_model(text, "b", "x/c:free", "c", where="cfg")
    edit = replace_model(text, "a", "x/c:free", "c", where="cfg")
    assert edit.text == "model_list:\n  - model_name: c\n    litellm_params:\n      model: openrouter/x/c:free\n"
    wrong = {"model_list": [{"model_name": "c", "litellm_params": {"model": "openrouter/x/other:free"}}]}
    before = {"model_list": [{"model_name": "a", "litellm_params": {"model": "openrouter/x/a:free"}}]}
    with pytest.raises(InputError, match=r"the edit could not be made safely"):
        check_edit(before, wrong, edit, "cfg")
    assert alias_for("openai/gpt-oss-20b:free") == "gpt-oss-20b"


def test_the_fallback_threshold_is_a_fraction(tmp_path: Path) -> None:
    plan = parse_plan({"gates": {"max_fallback_rate": 0.1, "catalog": False}}, tmp_path / "p.yaml")
    assert (plan.gates.max_fallback_rate, plan.gates.catalog) == (0.1, False)
    with pytest.raises(PlaybookError, match=r"'gates.max_fallback_rate' is a fraction 0..1"):
        parse_plan({"gates": {"max_fallback_rate": 5}}, tmp_path / "p.yaml")


def models_world(tmp_path: Path, *, config: bool = True) -> Path:
    from rollout_cli.gateway.config import packaged_config

    ws = tmp_path / "ws"
    ws.mkdir(parents=True)
    gateway = ""
    if config:
        (ws / "litellm-config.yaml").write_bytes(packaged_config().read_bytes())
        gateway = "gateway:\n  config: litellm-config.yaml\n"
    (ws / "rollout.yaml").write_text(f"app:\n  env_file: .env\n{gateway}")
    return ws


def test_models_input_errors_and_an_unreachable_catalog(tmp_path: Path) -> None:
    from support import rollout

    closed = {"OPENROUTER_API_BASE": "http://127.0.0.1:9/api/v1"}  # nothing listens: refused at once
    bare = models_world(tmp_path / "a", config=False)
    result = rollout("-w", str(bare), "models")
    assert result.exit_code == 2 and "no gateway config: set gateway.config in rollout.yaml" in result.stderr
    ws = models_world(tmp_path / "b")
    result = rollout("-w", str(ws), "models", "--replace", "nope", "x/y:free", env=closed)
    assert result.exit_code == 2 and "'nope' is not a model_name in" in result.stderr
    result = rollout("-w", str(ws), "models", "--replace", "kimi-k2", "x/y:free", "--alias", "qwen3-coder", env=closed)
    assert result.exit_code == 2 and "alias 'qwen3-coder' is already in" in result.stderr
    result = rollout("-w", str(ws), "models", env=closed)
    assert result.exit_code == 4 and "catalog http://127.0.0.1:9/api/v1/models cannot be read" in result.stdout
    result = rollout("-w", str(ws), "models", "--replace", "kimi-k2", "x/y:free", env=closed)
    assert result.exit_code == 4 and "pass --force to edit unchecked" in result.stderr
    result = rollout("-w", str(ws), "models", "--replace", "kimi-k2", "x/y:free", "--force", "--json", env=closed)
    assert result.exit_code == 0
    assert "  - model_name: y                      # 4\n" in (ws / "litellm-config.yaml").read_text()
    assert '"command": "models replace"' in (ws / ".rollout" / "history.jsonl").read_text()
