"""The master key put where a path or a variable name belongs is refused, never echoed (issue 23, item 17).

Every output and every file a run leaves (stdout, stderr, `--json`, the audit
trail, JUnit XML, Markdown) is searched for the key.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rollout_cli.sandbox.sample_app import workspace_yaml
from support import NO_GATEWAY, make_world, rollout
from test_json_contract import valid

KEY = "sk-MISPLACEDkey0123456789abcdefghijklmnopqrstuvw"
COMMANDS = [  # OUT: the world's report folder
    ["health"], ["smoke", "--junit-xml", "OUT/smoke.xml", "--markdown", "OUT/smoke.md"],
    ["advance", "--yes", "--skip-soak", "--reason", "key test"], ["report", "--markdown", "OUT/report.md"],
    ["status"], ["watch", "--count", "1", "--interval", "0.5"], ["rollback", "--level", "1", "--yes"],
]


def everything_written(root: Path) -> str:
    return "".join(p.read_text(errors="replace") for p in sorted(root.rglob("*"))
                   if p.is_file() and ".git" not in p.parts and p.name != "rollout.yaml")


@pytest.mark.parametrize("setting", ["master_key_file", "master_key_env"])
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c[0])
def test_a_key_in_place_of_a_path_or_variable_is_refused_and_never_echoed(
        tmp_path: Path, setting: str, command: list[str]) -> None:
    world = make_world(tmp_path)
    options = {"master_key_file": KEY} if setting == "master_key_file" else {"master_key_env": KEY}
    (world.ws / "rollout.yaml").write_text(workspace_yaml(container=None, gateway_url=NO_GATEWAY, **options))
    (world.ws / "out").mkdir()
    command = [arg.replace("OUT", str(world.ws / "out")) for arg in command]
    snap = world.snapshot()
    plain = world.cli(*command)
    as_json = world.cli(*command, "--json")
    assert KEY not in everything_written(world.root)
    for result in (plain, as_json):
        assert KEY not in result.stdout + result.stderr and KEY[:12] not in result.stdout + result.stderr
        assert result.exit_code == 2, result.output
        assert f"'gateway.{setting}'" in result.stderr and "value not shown" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    valid("error", json.loads(as_json.stdout))
    assert world.snapshot() == snap and world.history() == []


def test_a_key_file_path_and_a_variable_name_still_work(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    (world.ws / "keys").mkdir()
    (world.ws / "keys" / "gateway.key").write_text(KEY + "\n")
    (world.ws / "rollout.yaml").write_text(workspace_yaml(container=None, gateway_url=NO_GATEWAY,
                                                          master_key_file="./keys/gateway.key",
                                                          master_key_env="MY_GATEWAY_KEY_2"))
    result = world.cli("health", "--json")
    assert result.exit_code == 4, result.output  # read the key, then met no gateway
    assert KEY not in result.output


@pytest.mark.gateway
@pytest.mark.parametrize("setting", ["master_key_file", "master_key_env"])
def test_against_a_live_gateway_the_key_reaches_no_output_report_or_history(sb, tmp_path: Path, setting: str) -> None:
    """With a gateway that answers, today's main needed the key and named where it looked: the key itself."""
    config = sb.root / "rollout.yaml"
    original = config.read_text()
    line = next(x for x in original.splitlines() if x.strip().startswith(f"{setting}:"))
    config.write_text(original.replace(line, f"  {setting}: {KEY}"))
    history = sb.root / ".rollout" / "history.jsonl"
    history_before = history.read_text() if history.exists() else ""
    out = tmp_path / "out"
    out.mkdir()
    try:
        results = [
            rollout("-w", str(sb.root), *args) for args in (
                ["health", "--json"], ["health"],
                ["smoke", "--junit-xml", str(out / "smoke.xml"), "--markdown", str(out / "smoke.md")],
                ["smoke", "--json"], ["advance", "--yes", "--skip-soak", "--reason", "key test", "--json"],
                ["report", "--markdown", str(out / "report.md")], ["report", "--json"])
        ]
        written = everything_written(out) + (history.read_text() if history.exists() else "")
        assert KEY not in written
        for result in results:
            assert KEY not in result.stdout + result.stderr
            assert result.exit_code == 2, result.output
        assert (history.read_text() if history.exists() else "") == history_before
    finally:
        config.write_text(original)


def test_a_reason_quoting_a_secret_is_recorded_without_it(tmp_path: Path) -> None:
    """The audit trail keeps the operator's words, never a key they pasted into --reason by mistake."""
    world = make_world(tmp_path)
    held = "or-held-in-the-environment-0123456789"  # this process's own OpenRouter key
    pasted = "sk-or-v1-0123456789abcdef0123456789abcdef"  # any key, even one this process does not hold
    reason = f"freeze: the key {held} leaked, and {pasted} too"
    paused = world.cli("autopilot", "pause", "--reason", reason, env={"OPENROUTER_API_KEY": held})
    assert paused.exit_code == 0, paused.output
    moved = world.cli("rollback", "--level", "1", "--yes", "--reason", reason, env={"OPENROUTER_API_KEY": held})
    assert moved.exit_code in (0, 3), moved.output  # 3: no app traffic to observe the stop
    trail = (world.ws / ".rollout" / "history.jsonl").read_text()
    assert held not in trail and pasted not in trail
    records = [json.loads(line) for line in trail.splitlines()]
    reasons = [r["reason"] for r in records if r.get("reason")]
    assert len(reasons) >= 2 and set(reasons) == {"freeze: the key [secret] leaked, and [secret] too"}
