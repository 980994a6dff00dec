"""`rollout init` on paths that cannot hold a workspace, and the error of a JSON-lines command (issue 23, item 18)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support import make_world, rollout
from test_json_contract import valid


@pytest.mark.parametrize("where", ["under-a-file", "deep-under-a-file", "the-file", "/proc/rollout-test",
                                   "/proc/self", "/sys/rollout-test", "/sys/kernel"])
def test_init_where_no_folder_can_be_is_bad_input_in_one_line(tmp_path: Path, where: str) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder\n")
    target = {"under-a-file": blocker / "ws", "deep-under-a-file": blocker / "x" / "y",
              "the-file": blocker}.get(where, Path(where))
    before = sorted(p.name for p in tmp_path.iterdir())
    for args in ([], ["--json"]):
        result = rollout("init", str(target), *args)
        assert result.exit_code == 2, result.output
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "internal error" not in lines[0] and "choose another DIR" in lines[0], lines
    assert valid("error", json.loads(result.stdout))["error"]["exit_code"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == before and blocker.read_text() == "not a folder\n"


@pytest.mark.parametrize("command", [["watch", "--count", "1"], ["health", "--watch", "--count", "1"],
                                     ["watch", "--count", "0"], ["health", "--watch", "--bogus"]],
                         ids=["watch", "health-watch", "watch-usage", "health-watch-usage"])
def test_the_error_of_a_json_lines_command_is_one_document_on_one_line(tmp_path: Path, command: list[str]) -> None:
    missing = tmp_path / "nothing-here"  # no rollout.yaml: exit 2 before the first line
    result = rollout("-w", str(missing), *command, "--json")
    assert result.exit_code == 2
    [line] = result.stdout.splitlines()
    assert valid("error", json.loads(line))["error"]["exit_code"] == 2


def test_a_command_that_prints_one_document_keeps_it_indented(tmp_path: Path) -> None:
    result = rollout("-w", str(make_world(tmp_path).root / "nowhere"), "health", "--json")
    assert result.exit_code == 2 and len(result.stdout.splitlines()) > 1
    valid("error", json.loads(result.stdout))
