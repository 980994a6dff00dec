"""`rollout models --replace` on configs an operator really has (issue 23, items 16 and 18).

An alias served by several deployments (OpenRouter and Groq), settings that
still name a renamed alias, trailing comments, flow-style fallbacks and a
UTF-8 BOM; and `rollout models` with a deployment OpenRouter's catalog cannot
describe. Through the real command, on the shipped config with these changes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rollout_cli.gateway.config import packaged_config
from support import rollout
from test_json_contract import valid

NEW = "openai/gpt-oss-20b:free"
OPENROUTER_KIMI = """\
  - model_name: kimi-k2                # 4
    litellm_params:
      model: openrouter/moonshotai/kimi-k2:free
"""
GROQ_KIMI = """\
  - model_name: kimi-k2                # 4, also on Groq
    litellm_params:
      model: groq/moonshotai/kimi-k2-instruct
      api_key: os.environ/GROQ_API_KEY
      api_base: https://api.groq.com/openai/v1
"""
NO_CATALOG = {"OPENROUTER_API_BASE": "http://127.0.0.1:9/api/v1"}  # --force: nothing reads it


def workspace(tmp_path: Path, config: str | bytes) -> tuple[Path, Path]:
    ws = tmp_path / "ws"
    ws.mkdir()
    path = ws / "litellm-config.yaml"
    path.write_bytes(config if isinstance(config, bytes) else config.encode())
    (ws / "rollout.yaml").write_text("app:\n  env_file: .env\ngateway:\n  config: litellm-config.yaml\n")
    return ws, path


def shipped() -> str:
    return packaged_config().read_text()


def with_groq() -> str:
    text = shipped()
    at = text.index("  - model_name: qwen3-coder")
    return text[:at] + GROQ_KIMI + text[at:]


def replace(ws: Path, *args: str, code: int) -> dict[str, Any]:
    result = rollout("-w", str(ws), "models", "--replace", *args, "--force", "--json", env=NO_CATALOG)
    assert result.exit_code == code, result.output
    data = json.loads(result.stdout)
    return valid("error" if "error" in data else "models", data)


def history(ws: Path) -> list[dict]:
    path = ws / ".rollout" / "history.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


# --- 16: an alias with several deployments -----------------------------------------------------


def test_renaming_an_alias_that_also_has_a_groq_deployment_is_refused(tmp_path: Path) -> None:
    ws, path = workspace(tmp_path, with_groq())
    before = path.read_bytes()
    error = replace(ws, "kimi-k2", NEW, code=2)["error"]["message"]
    assert "kimi-k2 also has 1 deployment(s) not on OpenRouter (groq/moonshotai/kimi-k2-instruct)" in error
    assert "pass --alias kimi-k2" in error
    assert path.read_bytes() == before and history(ws) == []


def test_keeping_the_alias_replaces_only_its_openrouter_deployment_and_back(tmp_path: Path) -> None:
    original = with_groq()
    ws, path = workspace(tmp_path, original)
    data = replace(ws, "kimi-k2", NEW, "--alias", "kimi-k2", code=0)
    text = path.read_text()
    assert GROQ_KIMI in text  # Groq's model, key and address untouched
    assert "      model: openrouter/openai/gpt-oss-20b:free\n" in text and "moonshotai/kimi-k2:free" not in text
    assert data["replaced"] == ["moonshotai/kimi-k2:free"] and data["kept"] == ["groq/moonshotai/kimi-k2-instruct"]
    assert any("kept groq/moonshotai/kimi-k2-instruct" in m for m in data["messages"])
    [record] = history(ws)
    assert [c["before"] for c in record["changes"]] == ["kimi-k2 (moonshotai/kimi-k2:free)"]
    replace(ws, "kimi-k2", "moonshotai/kimi-k2:free", "--alias", "kimi-k2", code=0)
    assert path.read_text() == original


def test_an_alias_on_two_openrouter_deployments_has_both_replaced_and_audited(tmp_path: Path) -> None:
    text = shipped()
    second = OPENROUTER_KIMI.replace("moonshotai/kimi-k2:free", "moonshotai/kimi-k2-0905:free")
    at = text.index("  - model_name: qwen3-coder")
    ws, path = workspace(tmp_path, text[:at] + second + text[at:])
    data = replace(ws, "kimi-k2", NEW, code=0)
    assert data["replaced"] == ["moonshotai/kimi-k2:free", "moonshotai/kimi-k2-0905:free"]
    assert path.read_text().count("model: openrouter/openai/gpt-oss-20b:free") == 2
    [record] = history(ws)
    assert [c["before"] for c in record["changes"]] == ["kimi-k2 (moonshotai/kimi-k2:free)",
                                                         "kimi-k2 (moonshotai/kimi-k2-0905:free)"]


def test_a_rename_warns_of_every_setting_that_still_names_the_old_alias(tmp_path: Path) -> None:
    text = shipped().replace("  num_retries: 2", "  context_window_fallbacks:\n    - kimi-k2: [qwen3-coder]\n"
                             "  model_group_alias: {kimi: kimi-k2}\n  num_retries: 2", 1)
    text = text.replace("litellm_settings:\n", "litellm_settings:\n  default_fallbacks: [kimi-k2]\n", 1)
    ws, _ = workspace(tmp_path, text)
    data = replace(ws, "kimi-k2", NEW, code=0)
    assert data["warnings"] == [
        f"{where} still names kimi-k2, which is gone: rename it to gpt-oss-20b by hand" for where in (
            "router_settings.context_window_fallbacks[0].kimi-k2", "router_settings.model_group_alias.kimi",
            "litellm_settings.default_fallbacks[0]")
    ]
    assert all(w in data["messages"] for w in data["warnings"])


def test_models_says_which_deployments_it_could_not_check(sandbox: Any, tmp_path: Path) -> None:
    ws, _ = workspace(tmp_path, with_groq())
    catalog = {"OPENROUTER_API_BASE": f"{sandbox.simulator_url}/api/v1"}
    result = rollout("-w", str(ws), "models", "--json", env=catalog)
    data = valid("models", json.loads(result.stdout))
    assert result.exit_code == 0, result.output
    assert not any(m.startswith("all ") for m in data["messages"])
    assert data["messages"][0].startswith("5 of 6 deployments listed, free and capable; not checked: kimi-k2 "
                                          "(groq/moonshotai/kimi-k2-instruct: not an OpenRouter model")


# --- 18: comments, flow style, a BOM -----------------------------------------------------------


def comment_columns(text: str) -> dict[int, int]:
    return {n: line.index(" #") for n, line in enumerate(text.splitlines()) if " #" in line and "kimi" in line}


def test_trailing_comments_keep_their_column_through_replace_and_back(tmp_path: Path) -> None:
    original = shipped().replace("      model: openrouter/moonshotai/kimi-k2:free\n",
                                 "      model: openrouter/moonshotai/kimi-k2:free              # Moonshot\n")
    original = original.replace("    - minimax-m2: [kimi-k2, qwen3-coder]\n",
                                "    - minimax-m2: [kimi-k2, qwen3-coder]              # short chain\n")
    original = original.replace("  - model_name: kimi-k2                # 4\n", "  - model_name: kimi-k2 # 4\n")
    ws, path = workspace(tmp_path, original)
    replace(ws, "kimi-k2", "moonshotai/kimi-k2-thinking:free", "--alias", "gpt-oss-20b", code=0)
    edited = path.read_text()
    assert "  - model_name: gpt-oss-20b # 4\n" in edited  # one space after the code: still one space

    def columns(text: str) -> dict[str, int]:
        return {line.split("#")[1]: line.index("#") for line in text.splitlines()
                if "# Moonshot" in line or "# short chain" in line}

    assert columns(edited) == columns(original) == {" Moonshot": 61, " short chain": 54}  # aligned: same column
    replace(ws, "gpt-oss-20b", "moonshotai/kimi-k2:free", "--alias", "kimi-k2", code=0)
    assert path.read_text() == original


@pytest.mark.parametrize("style", ["flow", "bom"])
def test_flow_style_fallbacks_and_a_bom_are_edited_and_kept(tmp_path: Path, style: str) -> None:
    text = shipped()
    if style == "flow":
        block = text[text.index("  fallbacks:\n"):text.index("  num_retries:")]
        flow = ("  fallbacks: [{glm-4.5-air: [deepseek-chat-v3.1, minimax-m2, kimi-k2, qwen3-coder]}, "
                "{kimi-k2: [qwen3-coder]}]          # one line\n")
        text = text.replace(block, flow)
    # A BOM right before `model_list:` (an editor on Windows, a config with no header comment)
    original = text[text.index("model_list:"):].encode("utf-8-sig") if style == "bom" else text.encode()
    ws, path = workspace(tmp_path, original)
    replace(ws, "kimi-k2", NEW, code=0)
    edited = path.read_bytes()
    assert edited.startswith(b"\xef\xbb\xbf") == (style == "bom")
    if style == "flow":
        assert ("  fallbacks: [{glm-4.5-air: [deepseek-chat-v3.1, minimax-m2, gpt-oss-20b, qwen3-coder]}, "
                "{gpt-oss-20b: [qwen3-coder]}]  # one line\n") in edited.decode()
    replace(ws, "gpt-oss-20b", "moonshotai/kimi-k2:free", "--alias", "kimi-k2", code=0)
    assert path.read_bytes() == original
