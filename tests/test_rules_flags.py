"""The flags-file rules (io/flags.py): flagd weights, switches, percentages; tables, then `rollout`."""

from __future__ import annotations

import json
import math

import pytest

from rollout_cli.errors import InputError, StateFileError
from rollout_cli.io.flags import MAX_FLAGD_WEIGHT, open_flags, validate_percentage
from rollout_cli.sandbox.sample_app import FLAG_KEY
from support import make_world

KEY = "use-litellm"


def flagd(fractional, *, state: object = "ENABLED", variants=None, key: str = KEY) -> str:
    flag = {"variants": variants or {"on": True, "off": False}, "defaultVariant": "off",
            "targeting": {"fractional": fractional}}
    if state is not None:
        flag["state"] = state
    return json.dumps({"flags": {"other": {"state": "ENABLED"}, key: flag}}, indent=2) + "\n"


def store(tmp_path, text: str, fmt: str = "flagd", key: str = KEY):
    path = tmp_path / f"flags.{fmt}"
    path.write_text(text)
    return open_flags(path, fmt, key)


@pytest.mark.parametrize(("on", "off", "percentage"), [
    (0, 100, 0), (10, 90, 10), (100, 0, 100), (50, 50, 50),
    (1, 9, 10),  # weights are relative: 1 of 10
    (1, 1, 50), (1, 3, 25), (3, 1, 75), (1, 2, 33), (2, 1, 66),  # a share is rounded down: never more than configured
    (0, 5, 0), (5, 0, 100), (0.5, 0.5, 50), (1, 999, 0), (MAX_FLAGD_WEIGHT, MAX_FLAGD_WEIGHT, 50),
])
def test_flagd_percentage_is_the_on_weight_over_the_total(tmp_path, on, off, percentage):
    flags = store(tmp_path, flagd([{"var": "targetingKey"}, ["on", on], ["off", off]]))
    assert flags.percentage() == percentage


def test_flagd_buckets_may_come_in_any_order_and_variants_have_their_own_names(tmp_path):
    variants = {"gateway": True, "direct": False}
    flags = store(tmp_path, flagd([["direct", 3], ["gateway", 1]], variants=variants))
    assert flags.percentage() == 25
    assert flags.set_percentage(50) is True
    assert json.loads(flags.text())["flags"][KEY]["targeting"]["fractional"] == [["direct", 50], ["gateway", 50]]


@pytest.mark.parametrize(("state", "enabled"), [("ENABLED", True), ("DISABLED", False), (None, False), ("enabled", False)])
def test_flagd_switch_is_the_flags_state(tmp_path, state, enabled):
    assert store(tmp_path, flagd([["on", 10], ["off", 90]], state=state)).enabled() is enabled


@pytest.mark.parametrize(("fractional", "message"), [
    ([["on", 0], ["off", 0]], "fractional weights add up to 0; give them a positive total"),
    ([["on", -1], ["off", 5]], "fractional weight of 'on' is -1, not a number from 0 to 1000000"),
    ([["on", 1], ["off", MAX_FLAGD_WEIGHT + 1]], "weight of 'off' is 1000001, not a number"),
    ([["on", True], ["off", 5]], "fractional buckets must be exactly ['on', weight] and ['off', weight]"),
    ([["on", "5"], ["off", 5]], "found [\"on\", \"5\"]"),
    ([["on", 5, 1], ["off", 5]], "found [\"on\", 5, 1]"),
    ([["maybe", 5], ["off", 5]], "found [\"maybe\", 5]"),
    ([["on", 5], ["on", 5]], "found [\"on\", 5]"),
    ([["on", 5]], "fractional must list both 'on' and 'off'; add the missing one with weight 0"),
])
def test_flagd_weights_outside_the_rules_are_refused(tmp_path, fractional, message):
    with pytest.raises(StateFileError) as refused:
        store(tmp_path, flagd(fractional))
    assert message in str(refused.value) and f"flag {KEY!r} in " in str(refused.value)


@pytest.mark.parametrize("token", ["NaN", "Infinity", "1e400"])
def test_flagd_weights_that_are_no_number_are_refused(tmp_path, token):
    text = flagd([["on", 1], ["off", 2]]).replace('"on",\n            1', f'"on",\n            {token}')
    assert token in text
    with pytest.raises(StateFileError, match="fractional weight of 'on' is"):
        store(tmp_path, text)


@pytest.mark.parametrize(("doc", "message"), [
    ({"flag": {}}, 'has no "flags" object, so it is not a flagd file'),
    ({"flags": {"other": {}}}, "flag 'use-litellm' not found in"),
    ({"flags": {}}, "(flags: none)"),
    ({"flags": {KEY: {"state": "ENABLED"}}}, "has no top-level targeting.fractional rule"),
    ({"flags": {KEY: {"targeting": {"fractional": {}}}}}, "has no top-level targeting.fractional rule"),
])
def test_flagd_files_without_the_rule_are_refused(tmp_path, doc, message):
    with pytest.raises(StateFileError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        store(tmp_path, json.dumps(doc))


def test_setting_a_percentage_rewrites_both_weights_to_a_total_of_100_and_only_them(tmp_path):
    text = flagd([{"var": "targetingKey"}, ["on", 1], ["off", 9]])
    flags = store(tmp_path, text)
    assert flags.set_percentage(10) is False  # already 10 %: nothing to write
    assert flags.set_percentage(50) is True and flags.percentage() == 50
    assert flags.text() == text.replace('"on",\n            1', '"on",\n            50').replace(
        '"off",\n            9', '"off",\n            50')
    flags.save()
    assert open_flags(flags.path, "flagd", KEY).percentage() == 50


@pytest.mark.parametrize(("value", "expected"), [
    (0, 0), (10, 10), (100, 100), (10.0, 10), ("10", 10), (" +10 ", 10), ("0", 0),
])
def test_percentages_accepted(value, expected):
    assert validate_percentage(value) == expected


@pytest.mark.parametrize("value", [True, False, 10.5, "10.5", "1e1", "ten", "", None, -1, 101, "-1", [10], math.inf])
def test_percentages_refused(value):
    with pytest.raises(InputError):
        validate_percentage(value)


@pytest.mark.parametrize(("fmt", "text", "key", "percentage", "after"), [
    ("env", "A=1\nPCT=10 # share\n", "PCT", 10, "A=1\nPCT=50 # share\n"),
    ("json", '{"f": {"pct": 10, "x": [1, 2]}}', "f.pct", 10, '{"f": {"pct": 50, "x": [1, 2]}}'),
    ("json", '{"f": {"pct": "10"}}', "f.pct", 10, '{"f": {"pct": "50"}}'),
    ("json", '{"pct": 1, "pct": 10}', "pct", 10, '{"pct": 1, "pct": 50}'),  # the last duplicate wins, as in json
    ("yaml", "f:\n  pct: 10  # share\n  x: 1\n", "f.pct", 10, "f:\n  pct: 50  # share\n  x: 1\n"),
    ("yaml", "f: {pct: '10'}\n", "f.pct", 10, "f: {pct: '50'}\n"),
])
def test_other_formats_change_only_the_value(tmp_path, fmt, text, key, percentage, after):
    flags = store(tmp_path, text, fmt, key)
    assert flags.percentage() == percentage and flags.enabled() is None
    assert flags.set_percentage(50) is True
    assert flags.text() == after
    assert flags.save() and (tmp_path / f"flags.{fmt}").read_text() == after


def test_a_missing_env_variable_is_appended_by_a_rollback_to_0(tmp_path):
    flags = store(tmp_path, "A=1\n", "env", "PCT")
    with pytest.raises(StateFileError, match=r"has no PCT; add PCT=0 or check app\.flag_key"):
        flags.percentage()
    assert flags.set_percentage(0) is True and flags.text() == "A=1\nPCT=0\n"


@pytest.mark.parametrize(("fmt", "text", "key", "message"), [
    ("json", '{"f": {"pct": 10}}', "f.rate", "has no key 'f.rate' (no 'rate' under f); check app.flag_key"),
    ("json", '{"f": 10}', "g", "has no key 'g' (no 'g' under the top level)"),
    ("json", '{"f": 10.5}', "f", "f holds 10.5, not a whole percentage 0..100; fix the file"),
    ("json", '{"f": ', "f", "is not valid JSON (line 1, column 7"),
    ("yaml", "f: [1]\n", "f", "f is a list, not a number; check app.flag_key"),
    ("yaml", "f: 101\n", "f", "f holds 101, not a whole percentage"),
    ("yaml", "f: [\n", "f", "is not valid YAML (line 2, column 1"),
])
def test_flags_files_that_do_not_hold_a_percentage_are_refused(tmp_path, fmt, text, key, message):
    with pytest.raises(StateFileError) as refused:
        store(tmp_path, text, fmt, key).percentage()
    assert message in str(refused.value)


def test_open_flags_refuses_unknown_formats_empty_keys_and_missing_files(tmp_path):
    with pytest.raises(InputError, match="unknown flags format 'toml'; use one of: env, json, yaml, flagd"):
        open_flags(tmp_path / "f", "toml", "k")
    with pytest.raises(InputError, match="no flag key given for"):
        open_flags(tmp_path / "f", "json", "")
    with pytest.raises(StateFileError, match=r"flags file .* not found; check app\.flags_file"):
        open_flags(tmp_path / "missing.json", "json", "k")


# --- through `rollout` ---------------------------------------------------------------


def _flags(world, fractional, **kw) -> None:
    world.app.flags_file.write_text(flagd(fractional, key=FLAG_KEY, **kw))


def test_status_reads_flagd_weights_1_and_9_as_10_percent(tmp_path):
    world = make_world(tmp_path, 10)
    _flags(world, [{"var": "targetingKey"}, ["on", 1], ["off", 9]])
    result = world.cli("status", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["stage"]["flags_percentage"] == 10 and out["stage"]["drift"] is None


def test_a_zero_weight_total_is_refused_before_the_rollback_changes_anything(tmp_path):
    world = make_world(tmp_path, 10)
    _flags(world, [["on", 0], ["off", 0]])
    before = world.snapshot()
    result = world.cli("rollback", "--level", "1", "--yes", "--reason", "test")
    assert result.exit_code == 2, result.output
    assert "fractional weights add up to 0; give them a positive total" in result.output
    assert "Traceback" not in result.output and "ZeroDivisionError" not in result.output
    assert world.snapshot() == before


def test_a_flag_whose_state_is_missing_counts_as_off(tmp_path):
    world = make_world(tmp_path, 10)
    _flags(world, [["on", 10], ["off", 90]], state=None)
    result = world.cli("status", "--json")
    out = json.loads(result.output)
    assert result.exit_code == 1
    assert out["stage"]["flags_enabled"] is False and out["stage"]["percentage"] == 10
    assert out["stage"]["drift"].endswith("but flags file says 0%")


@pytest.mark.parametrize(("text", "where"), [
    ("a: b: c\n", "line 1, column 5: mapping values are not allowed in this context"),
    ("f: 'unclosed\n", "line 2, column 1: found unexpected end of stream"),
    ("f: *nope\n", "line 1, column 4: found undefined alias"),
    ("f: &a 1\ng: &a 2\n", "line 2, column 4: second occurrence"),
    ("f: 1\x07\n", "unacceptable character #x0007: control characters are not allowed"),
])
def test_a_yaml_flags_file_that_does_not_parse_is_refused_saying_where(tmp_path, text, where):
    with pytest.raises(StateFileError) as refused:
        store(tmp_path, text, "yaml", "f")
    assert str(refused.value) == f"{tmp_path / 'flags.yaml'} is not valid YAML ({where}); fix the file"


@pytest.mark.parametrize("value", ["true", "false", "null", "NaN", "Infinity", "-Infinity", '"s\\"x"', "-1.5e3",
                                   "{}", "[]", '{"a": [1, {"b": null}]}', "[ 1 , 2 ]"])
def test_the_json_value_is_found_past_any_kind_of_sibling(tmp_path, value):
    text = f'{{"before": {value}, "f": {{ "other" : {value} , "pct" : 10 }}, "after": {value}}}'
    flags = store(tmp_path, text, "json", "f.pct")
    assert flags.set_percentage(20) is True
    assert flags.text() == text.replace('"pct" : 10', '"pct" : 20')
