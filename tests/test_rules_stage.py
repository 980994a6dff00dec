"""The stage and drift rules (core/stage.py): tables through the public functions, then `rollout`."""

from __future__ import annotations

import json

import pytest

from rollout_cli.core.stage import Stage, format_setting, parse_enabled, parse_percentage
from rollout_cli.errors import StateFileError
from support import make_world


@pytest.mark.parametrize(("text", "expected"), [
    (None, None),  # unset: the app's default, which counts as on
    ("true", True), ("1", True), ("yes", True), ("on", True), (" TRUE ", True), ("On", True),
    ("false", False), ("0", False), ("no", False), ("off", False), ("", False), (" False\t", False),
])
def test_enabled_values(text, expected):
    assert parse_enabled(text, ".env") is expected


def test_an_enabled_value_that_is_not_a_boolean_is_refused_naming_it():
    with pytest.raises(StateFileError, match=r"^app/.env: LITELLM_ENABLED='maybe' is not true/false; fix the file$"):
        parse_enabled("maybe", "app/.env")


@pytest.mark.parametrize(("text", "expected"), [
    (None, None), ("0", 0), ("10", 10), (" 50 ", 50), ("100", 100), ("+7", 7),
])
def test_percentage_values(text, expected):
    assert parse_percentage(text, ".env") == expected


@pytest.mark.parametrize(("text", "message"), [
    ("ten", r"^e: LITELLM_ROLLOUT_PERCENTAGE='ten' is not a whole number 0..100; fix the file$"),
    ("10.5", r"is not a whole number 0\.\.100"),
    ("-1", r"^e: LITELLM_ROLLOUT_PERCENTAGE=-1 is outside 0..100; fix the file$"),
    ("101", r"=101 is outside 0\.\.100"),
])
def test_percentages_outside_the_rules_are_refused(text, message):
    with pytest.raises(StateFileError, match=message):
        parse_percentage(text, "e")


# env %, LITELLM_ENABLED, flags %, flag enabled, has a flags file ->
#   env effective, flags effective, stage, drift?
STAGES = [
    pytest.param(10, None, 10, True, True, 10, 10, 10, False, id="unset LITELLM_ENABLED counts as on"),
    pytest.param(10, True, 10, True, True, 10, 10, 10, False, id="agree at 10"),
    pytest.param(10, False, 10, True, True, 0, 10, 10, True, id="env switched off, flags at 10: drift at 10"),
    pytest.param(0, False, 10, True, True, 0, 10, 10, True, id="half-done rollback: the larger is the stage"),
    pytest.param(50, True, 10, True, True, 50, 10, 50, True, id="env ahead of flags"),
    pytest.param(10, False, 10, False, True, 0, 0, 0, False, id="both switched off agree at 0"),
    pytest.param(10, True, 10, False, True, 10, 0, 10, True, id="flag disabled counts as 0"),
    pytest.param(None, None, None, None, False, 0, None, 0, False, id="nothing set, no flags file"),
    pytest.param(10, True, None, None, False, 10, None, 10, False, id="no flags file: env alone, never drift"),
    pytest.param(None, True, 10, None, True, 0, 10, 10, True, id="a flags format without a switch"),
    pytest.param(10, True, None, True, True, 10, 0, 10, True, id="flags without a percentage count as 0"),
    pytest.param(100, True, 100, True, True, 100, 100, 100, False, id="agree at 100"),
]


@pytest.mark.parametrize(("env_pct", "env_on", "flags_pct", "flags_on", "has_flags",
                          "env_effective", "flags_effective", "stage", "drift"), STAGES)
def test_stage_and_drift(env_pct, env_on, flags_pct, flags_on, has_flags, env_effective, flags_effective, stage, drift):
    seen = Stage(env_pct, env_on, flags_pct, flags_on, has_flags)
    assert (seen.env_effective, seen.flags_effective, seen.percentage) == (env_effective, flags_effective, stage)
    assert (seen.drift is not None) is drift
    assert seen.to_json()["percentage"] == stage and seen.to_json()["drift"] == seen.drift


def test_drift_says_what_each_file_says_as_the_operator_wrote_it():
    assert Stage(10, False, 10, True, True).drift == (
        "env file says 0% (LITELLM_ENABLED=false, LITELLM_ROLLOUT_PERCENTAGE=10) but flags file says 10%")
    assert Stage(None, None, 50, True, True).drift == (
        "env file says 0% (LITELLM_ENABLED=unset, LITELLM_ROLLOUT_PERCENTAGE=unset) but flags file says 50%")


@pytest.mark.parametrize(("value", "text"), [(None, "unset"), (True, "true"), (False, "false"), (10, "10"), ("x", "x")])
def test_settings_read_as_written(value, text):
    assert format_setting(value) == text


def test_stage_json_has_both_files_readings():
    assert Stage(0, False, 10, True, True).to_json() == {
        "env_percentage": 0, "env_enabled": False, "flags_percentage": 10, "flags_enabled": True,
        "has_flags_file": True, "percentage": 10,
        "drift": "env file says 0% (LITELLM_ENABLED=false, LITELLM_ROLLOUT_PERCENTAGE=0) but flags file says 10%",
    }


# --- through `rollout` ---------------------------------------------------------------


def _set_env(world, enabled: str | None, percentage: int) -> None:
    lines = [line for line in world.app.env_file.read_text().splitlines()
             if not line.startswith(("LITELLM_ENABLED=", "LITELLM_ROLLOUT_PERCENTAGE="))]
    if enabled is not None:
        lines.append(f"LITELLM_ENABLED={enabled}")
    lines.append(f"LITELLM_ROLLOUT_PERCENTAGE={percentage}")
    world.app.env_file.write_text("\n".join(lines) + "\n")


def _status(world) -> tuple[int, dict]:
    result = world.cli("status", "--json")
    return result.exit_code, json.loads(result.output)


def test_status_counts_an_unset_litellm_enabled_as_on(tmp_path):
    world = make_world(tmp_path, 10)
    _set_env(world, None, 10)
    code, out = _status(world)
    assert code == 0, out
    assert out["stage"]["percentage"] == 10 and out["stage"]["drift"] is None and out["stage"]["env_enabled"] is None


def test_status_calls_litellm_enabled_false_with_10_in_both_files_drift(tmp_path):
    world = make_world(tmp_path, 10)
    _set_env(world, "false", 10)
    result = world.cli("status")
    assert result.exit_code == 1, result.output
    assert "env file says 0% (LITELLM_ENABLED=false, LITELLM_ROLLOUT_PERCENTAGE=10) but flags file says 10%" in result.output


def test_after_a_half_done_rollback_status_and_advance_see_the_larger_stage(tmp_path):
    """Env at 0, flags still at 10: 10 % of traffic may reach the gateway, so the stage is 10 %."""
    world = make_world(tmp_path, 10)
    _set_env(world, "false", 0)
    code, out = _status(world)
    assert code == 1
    assert out["stage"]["percentage"] == 10 and "flags file says 10%" in out["stage"]["drift"]
    before = world.snapshot()
    advance = world.cli("advance", "--json", "--yes")
    decision = json.loads(advance.output)
    assert advance.exit_code == 1 and decision["verdict"] == "NO-GO"
    assert decision["current"] == 10 and decision["next"] == 50
    gates = {g["name"]: g for g in decision["gates"]}
    assert gates["env/flags agree"]["status"] == "fail"
    # not judged as a first step: the window's gates read the gateway's metrics (here: unreachable)
    assert gates["error rate"]["status"] == "inconclusive" and "metrics cannot be read" in gates["error rate"]["reason"]
    assert gates["soak"]["status"] != "skipped"
    assert world.snapshot() == before


@pytest.mark.parametrize(("line", "message"), [
    ("LITELLM_ENABLED=maybe", "LITELLM_ENABLED='maybe' is not true/false; fix the file"),
    ("LITELLM_ROLLOUT_PERCENTAGE=ten", "LITELLM_ROLLOUT_PERCENTAGE='ten' is not a whole number 0..100; fix the file"),
])
def test_status_names_the_env_file_whose_setting_is_not_understood(tmp_path, line, message):
    world = make_world(tmp_path, 10)
    with world.app.env_file.open("a") as env:
        env.write(line + "\n")
    result = world.cli("status")
    assert result.exit_code == 2
    assert result.output == f"rollout: error: {world.app.env_file}: {message}\n"


def test_without_a_flags_file_the_env_file_alone_is_the_stage(tmp_path):
    world = make_world(tmp_path, 10)
    config = world.ws / "rollout.yaml"
    config.write_text("".join(line for line in config.read_text().splitlines(keepends=True)
                              if not line.lstrip().startswith(("flags_file:", "flags_format:", "flag_key:"))))
    code, out = _status(world)
    assert code == 0, out
    assert out["stage"] == {"env_percentage": 10, "env_enabled": True, "flags_percentage": None, "flags_enabled": None,
                            "has_flags_file": False, "percentage": 10, "drift": None}
