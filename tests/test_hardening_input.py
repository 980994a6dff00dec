"""Hostile and clumsy input, through the real `rollout` command (issue 8, items 1, 4-10).

Each test is the regression test of one defect an adversarial review found:
a file or value that used to crash (exit 1, a traceback's repr, a secret on
stderr), hang, or silently lose data now gets exit 2, one line naming the file
and what to do, and nothing changed on disk.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from rollout_cli.sandbox.sample_app import flagd_text
from support import NO_GATEWAY, make_world, rollout

REPO = Path(__file__).resolve().parent.parent
ROLLOUT = str(Path(sys.executable).parent / "rollout")
SECRET = "sk-CONFIGSECRET0123456789abcdefghijklmnopqrstuv"


@pytest.fixture
def world(tmp_path):
    return make_world(tmp_path, percentage=10, container="")


def one_line_error(result) -> str:  # type: ignore[no-untyped-def]
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output and "internal error" not in result.output
    return lines[0]


def unchanged(world, snap: dict[str, str], history: list[dict]) -> None:  # type: ignore[no-untyped-def]
    assert world.snapshot() == snap
    assert world.history() == history


# --- 1. nothing depends on PATH holding .venv/bin ---------------------------------------


def test_tests_and_benchmarks_start_python_and_rollout_by_path_not_by_name():
    """A bare `python`/`rollout`/`pytest` in an argv is whatever PATH finds first: on a fresh
    machine the system Python, without rollout_cli (the lock test failed that way)."""
    bare = re.compile(r"""\[\s*["'](python3?|rollout|pytest|pip)["']\s*,""")
    offenders = [
        f"{path.relative_to(REPO)}:{n}"
        for folder in ("tests", "benchmarks")
        for path in sorted((REPO / folder).glob("*.py"))
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if bare.search(line)
    ]
    assert offenders == []


def test_the_lock_test_passes_with_only_the_system_paths_on_path():
    env = {**os.environ, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
         "tests/test_rollback.py::test_second_writer_gets_lock_error"],
        cwd=REPO, env=env, capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "1 passed" in proc.stdout


# --- 4. the master key: printable ASCII, checked when read, never echoed -------------------


@pytest.mark.gateway
@pytest.mark.parametrize(
    ("suffix", "problem"),
    [("\r", "has a carriage return"), ("é", "has a non-ASCII character"), ("\n", "has a line break")],
    ids=["trailing-cr", "non-ascii", "newline"],
)
def test_health_refuses_an_unusable_key_naming_the_variable_never_the_key(sb, suffix, problem):
    key = sb.master_key + suffix
    result = rollout("-w", str(sb.root), "health", env={"ROLLOUT_SANDBOX_MASTER_KEY": key})
    assert result.exit_code == 2, result.output
    position = f"(character {len(key)} of {len(key)})"
    assert f"the master key in $ROLLOUT_SANDBOX_MASTER_KEY {problem} {position}" in result.output
    assert sb.master_key not in result.output and "Bearer" not in result.output
    assert "internal error" not in result.output
    assert sb.admin.stats()["total"] == 0  # refused before any model request


@pytest.mark.gateway
def test_a_key_file_with_a_crlf_line_ending_is_read_as_the_key(sb, tmp_path):
    key_file = tmp_path / "master.key"
    key_file.write_bytes(sb.master_key.encode() + b"\r\n")
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "rollout.yaml").write_text(
        f"app:\n  env_file: ./.env\ngateway:\n  url: {sb.gateway_url}\n"
        f"  master_key_env: ROLLOUT_TEST_UNSET_KEY\n  master_key_file: {key_file}\n"
    )
    result = rollout("-w", str(ws), "health", "--json", "--model", "glm-4.5-air")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["gateway"]["auth"]["ok"] is True


def world_on(sb, tmp_path: Path, master_key_line: str = "  master_key_env: ROLLOUT_TEST_KEY\n"):  # type: ignore[no-untyped-def]
    """A sample app at 10% whose workspace points at the session sandbox's real gateway."""
    (tmp_path / "world").mkdir()
    world = make_world(tmp_path / "world", percentage=10, container="")
    text = (world.ws / "rollout.yaml").read_text()
    assert f"url: {NO_GATEWAY}\n" in text and "  master_key_env: LITELLM_MASTER_KEY\n" in text
    (world.ws / "rollout.yaml").write_text(
        text.replace(f"url: {NO_GATEWAY}\n", f"url: {sb.gateway_url}\n")
        .replace("  master_key_env: LITELLM_MASTER_KEY\n", master_key_line)
        + f"  config: {sb.root / 'gateway' / 'litellm-config.yaml'}\n"
    )
    return world


@pytest.mark.gateway
def test_advance_and_report_never_write_a_key_with_a_cr_into_history_or_markdown(sb, tmp_path):
    world = world_on(sb, tmp_path)
    key = sb.master_key + "\r"
    snap = world.snapshot()
    advance = world.cli("advance", "--yes", env={"ROLLOUT_TEST_KEY": key})
    report_file = tmp_path / "r.md"
    report = world.cli("report", "--markdown", str(report_file), env={"ROLLOUT_TEST_KEY": key})
    history = (world.ws / ".rollout" / "history.jsonl").read_text()
    problem = "the master key in $ROLLOUT_TEST_KEY has a carriage return"
    assert problem in advance.output and problem in history
    # the Markdown report escapes every markup character, `_` included
    assert r"the master key in $ROLLOUT\_TEST\_KEY has a carriage return" in report_file.read_text()
    for text in (advance.output, report.output, history, report_file.read_text()):
        assert sb.master_key not in text and "Bearer" not in text
    assert "internal error" not in advance.output + report.output
    assert world.snapshot() == snap  # no GO without a usable key


@pytest.mark.gateway
def test_master_key_file_not_utf8_names_the_file_never_the_bytes(sb, tmp_path):
    key_file = tmp_path / "master.key"
    key_file.write_bytes(b"sk-KEYBYTES" + b"\xff" * 3 + b"0123456789abcdefghijklmnopqrstuv\n")
    world = world_on(sb, tmp_path, f"  master_key_env: ROLLOUT_TEST_UNSET_KEY\n  master_key_file: {key_file}\n")
    result = world.cli("health")
    assert result.exit_code == 2, result.output
    assert f"key file {key_file} is not UTF-8 text: line 1, byte offset 11 (invalid start byte)" in result.output
    assert "KEYBYTES" not in result.output


def test_a_transport_error_never_quotes_the_authorization_header(tmp_path):
    """httpx refuses a header with a CR in a message that quotes it; ours says what happened."""
    import socket

    from rollout_cli.gateway.api import GatewayClient

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        with GatewayClient(url, "sk-SECRETKEY\r", timeout=5) as client:
            probe = client.liveliness()
    assert probe.ok is False
    assert probe.error == "the request could not be sent (an invalid header value?)"


def test_a_weak_or_unusable_sandbox_key_is_refused_without_trimming(tmp_path):
    from rollout_cli.errors import InputError
    from rollout_cli.gateway.config import check_master_key

    good = "sk-" + "Zy9xWq8VuT7s" * 3
    assert check_master_key(good, "$K") == good
    with pytest.raises(InputError, match=r"^the master key in \$K has a space \(character 1 of 40\)"):
        check_master_key(" " + good, "$K")


# --- 5. files that are not UTF-8: file, line and byte offset, never the bytes --------------


def test_gateway_config_not_utf8_names_line_and_offset_not_the_secret(world):
    config = world.ws / "gateway.yaml"
    config.write_bytes(b"model_list: []\ngeneral_settings:\n  master_key: " + SECRET.encode() + b"\xe9\n")
    (world.ws / "rollout.yaml").write_text(
        (world.ws / "rollout.yaml").read_text() + f"  config: {config}\n"
    )
    result = world.cli("health", "--json")
    assert result.exit_code == 2, result.output
    offset = len(b"model_list: []\ngeneral_settings:\n  master_key: " + SECRET.encode())
    assert f"gateway config {config} is not UTF-8 text: line 3, byte offset {offset}" in result.output
    assert "CONFIGSECRET" not in result.output


def test_rollout_yaml_not_utf8(world):
    path = world.ws / "rollout.yaml"
    path.write_bytes(path.read_bytes() + b"# caf\xe9\n")
    result = world.cli("status")
    assert result.exit_code == 2
    line = path.read_bytes().count(b"\n")
    assert f"{path} is not UTF-8 text: line {line}, byte offset {len(path.read_bytes()) - 2}" in one_line_error(result)


def rollback_with_level_1_playbook(world, content: bytes):  # type: ignore[no-untyped-def]
    """`rollback --level 1 --yes` with the workspace's own rollback-1.yaml; checks that nothing changed."""
    books = world.ws / "books"
    books.mkdir()
    (books / "rollback-1.yaml").write_bytes(content)
    (world.ws / "rollout.yaml").write_text((world.ws / "rollout.yaml").read_text() + "playbooks: ./books\n")
    snap, history = world.snapshot(), world.history()
    result = world.cli("rollback", "--level", "1", "--yes")
    assert result.exit_code == 2
    unchanged(world, snap, history)
    return one_line_error(result), books / "rollback-1.yaml"


def test_playbook_not_utf8_refuses_the_rollback_and_changes_nothing(world):
    message, path = rollback_with_level_1_playbook(
        world, b"kind: rollback\nlevel: 1\nname: caf\xe9\nbudget: 30s\nsteps:\n  - type: flag.set\n    percentage: 0\n"
    )
    assert f"playbook {path} is not UTF-8 text: line 3, byte offset 33 (invalid continuation byte)" in message


# --- 6. a CR-only env file: a lone CR ends a line, every key is kept ----------------------


def test_cr_only_env_file_keeps_every_key_and_its_line_endings(world):
    world.app.env_file.write_bytes(b"LITELLM_ROLLOUT_PERCENTAGE=10\rLITELLM_ENABLED=true\rOTHER=keepme\r")
    status = world.cli("status", "--json")
    assert status.exit_code == 0, status.output
    assert json.loads(status.stdout)["stage"]["env_percentage"] == 10
    result = world.cli("rollback", "--level", "1", "--yes")
    assert result.exit_code == 0, result.output
    assert world.app.env_file.read_bytes() == b"LITELLM_ROLLOUT_PERCENTAGE=0\rLITELLM_ENABLED=true\rOTHER=keepme\r"


def test_cr_only_env_file_gets_a_missing_key_appended_with_a_cr(world):
    world.app.env_file.write_bytes(b"LITELLM_ENABLED=true\rOTHER=keepme")
    result = world.cli("rollback", "--level", "1", "--yes")
    assert result.exit_code == 0, result.output
    assert world.app.env_file.read_bytes() == b"LITELLM_ENABLED=true\rOTHER=keepme\rLITELLM_ROLLOUT_PERCENTAGE=0\r"


# --- 7. a flagd weight that is not a finite number: refused before any step ----------------


@pytest.mark.parametrize("weight", ["NaN", "Infinity", "-Infinity", "1e308", "-5"])
def test_flagd_weight_not_finite_refuses_rollback_before_any_step(world, weight):
    world.app.flags_file.write_text(re.sub(r'("on",\s*)10\b', rf"\g<1>{weight}", flagd_text(10)))
    assert re.search(rf'"on",\s*{re.escape(weight)}\s', world.app.flags_file.read_text())
    snap, history = world.snapshot(), world.history()
    result = world.cli("rollback", "--level", "1", "--yes")
    assert result.exit_code == 2, result.output
    message = one_line_error(result)
    assert f"flag 'litellm-gateway' in {world.app.flags_file}: fractional weight of 'on' is" in message
    assert "not a number from 0 to 1000000; fix the file" in message
    unchanged(world, snap, history)  # the env file was not set to 0 first
    assert world.cli("status").exit_code == 2
    assert world.cli("advance", "--yes").exit_code == 2
    unchanged(world, snap, history)


# --- 8. a YAML alias bomb, and the length of any message ---------------------------------


def alias_bomb(levels: int) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for n in range(1, levels + 1):
        refs = ", ".join([f"*a{n - 1}"] * 9)
        lines.append(f"a{n}: &a{n} [{refs}]")
    return "app:\n  env_file: .env\n  integration_commits:\n" + "".join(f"    - {line}\n" for line in lines)


@pytest.mark.parametrize("levels", [8, 9])
def test_yaml_alias_bomb_is_refused_with_a_short_message(tmp_path, levels):
    text = alias_bomb(levels)
    assert len(text.encode()) < 1000
    (tmp_path / "rollout.yaml").write_text(text)
    result = rollout("-w", str(tmp_path), "status")
    assert result.exit_code == 2
    message = one_line_error(result)
    assert "holds more than 100000 values once its aliases are expanded" in message
    assert len(message) < 300


def test_an_alias_inside_its_own_anchor_is_refused(tmp_path):
    (tmp_path / "rollout.yaml").write_text("app: &loop\n  env_file: .env\n  router_paths: &r [*r]\n")
    result = rollout("-w", str(tmp_path), "status")
    assert result.exit_code == 2
    assert "line 3: an alias refers to its own anchor; remove it" in one_line_error(result)


def test_any_error_message_is_capped_and_keeps_its_advice(tmp_path):
    (tmp_path / "rollout.yaml").write_text(f"app:\n  env_file: .env\n  flags_format: {'x' * 50_000}\n")
    result = rollout("-w", str(tmp_path), "status")
    assert result.exit_code == 2
    message = one_line_error(result)
    assert len(message) <= 1100
    assert "characters cut" in message and message.endswith("use one of env, json, yaml, flagd")


def test_an_internal_error_shows_the_exception_type_not_its_text(tmp_path, monkeypatch):
    from rollout_cli.core import workspace

    def broken(root: Path) -> None:
        raise UnicodeEncodeError("ascii", "Bearer sk-SECRET\u00e9", 16, 17, "ordinal not in range(128)")

    monkeypatch.setattr(workspace, "load_workspace", broken)
    result = rollout("-w", str(tmp_path), "status")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "rollout: error: internal error: UnicodeEncodeError; rerun with --debug and report it"
    )


# --- 9. a FIFO or device as the env or flags file: exit 2 at once, never a hang ---------------


@pytest.mark.parametrize("which", ["env", "flags"])
def test_fifo_state_file_is_refused_without_blocking_and_the_lock_is_free(world, which):
    target = world.app.env_file if which == "env" else world.app.flags_file
    target.unlink()
    os.mkfifo(target)
    snap, history = world.snapshot(), world.history()
    # a subprocess with a generous guard: the old code blocked forever here
    proc = subprocess.run([ROLLOUT, "-w", str(world.ws), "rollback", "--level", "1", "--yes"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    label = "env file" if which == "env" else "flags file"
    assert proc.stderr.strip() == (
        f"rollout: error: {label} {target} is a FIFO (named pipe), not a regular file;"
        " rollout reads only regular files: fix the path"
    )
    unchanged(world, snap, history)
    status = subprocess.run([ROLLOUT, "-w", str(world.ws), "status"], capture_output=True, text=True, timeout=120)
    assert status.returncode == 2 and "FIFO" in status.stderr


def test_flags_file_symlink_to_dev_zero_is_refused(world):
    world.app.flags_file.unlink()
    world.app.flags_file.symlink_to("/dev/zero")
    snap, history = world.snapshot(), world.history()
    result = world.cli("rollback", "--level", "1", "--yes")
    assert result.exit_code == 2
    # rollout.yaml's paths are resolved when it is read, so the message names the link's target
    assert "flags file /dev/zero is a character device, not a regular file" in one_line_error(result)
    unchanged(world, snap, history)


def test_a_folder_as_the_flags_file_is_named(world):
    world.app.flags_file.unlink()
    world.app.flags_file.mkdir()
    result = world.cli("rollback", "--level", "1", "--yes")
    assert result.exit_code == 2
    assert one_line_error(result) == (
        f"rollout: error: flags file {world.app.flags_file} is a folder, not a file; fix the path"
    )


def test_a_socket_as_the_env_file_is_refused(world):
    import socket

    world.app.env_file.unlink()
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(str(world.app.env_file))
        result = world.cli("status")
    assert result.exit_code == 2
    # Linux refuses to open(2) a socket file at all (ENXIO): said as it is, never a crash
    assert one_line_error(result) == (
        f"rollout: error: cannot read env file {world.app.env_file}: No such device or address; check the path"
    )


def test_a_state_file_over_its_cap_is_refused(world):
    world.app.env_file.write_text(world.app.env_file.read_text() + "# padding\n" * 500_000)
    size = world.app.env_file.stat().st_size
    result = world.cli("status")
    assert result.exit_code == 2
    assert one_line_error(result) == (
        f"rollout: error: env file {world.app.env_file} is {size} bytes, more than the 4 MiB rollout reads; shorten it"
    )


# --- 10. more bad input that used to be an internal error or silently accepted -------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("app:\n  env_file: .env\n  1: x\n  colour: blue\n", "unknown key 'app.1'"),
        ("1: x\nfoo: y\napp:\n  env_file: .env\n", "unknown key '1'"),
        ('app:\n  env_file: "a\\0b"\n', "'app.env_file' holds a NUL character; remove it"),
        ('app:\n  env_file: .env\n  router_paths: ["x\\0y"]\n', "'app.router_paths' holds a NUL character"),
        ("app:\n  env_file: ~no-such-user-xyz/.env\n",
         "'app.env_file' starts with ~no-such-user-xyz, but there is no user 'no-such-user-xyz' here"),
        ("app:\n  env_file: .env\ngateway: []\n", "'gateway' must be a mapping, got a list"),
        ("app:\n  env_file: .env\n  env_file: other.env\n",
         "line 3: key 'env_file' appears twice (first on line 2); keep one of them"),
        ("app:\n  env_file: .env\napp:\n  env_file: other.env\n", "line 3: key 'app' appears twice (first on line 1)"),
        ("app:\n  env_file: .env\n  router_paths: " + "[" * 200 + "]" * 200 + "\n", "nested more than 100 levels deep"),
        ("app:\n  env_file: .env\n  integration_commits: [[1, 2], [3, 4]]\n",
         "'app.integration_commits' must be a list of strings, got a list [[1, 2], [3, 4]]"),
    ],
    ids=["int-key", "top-int-key", "nul-path", "nul-list", "tilde-nouser", "gateway-list", "duplicate-key",
         "duplicate-top", "deep", "list-of-lists"],
)
def test_rollout_yaml_bad_input_is_exit_2_naming_the_key(tmp_path, content, message):
    (tmp_path / "rollout.yaml").write_text(content)
    result = rollout("-w", str(tmp_path), "status")
    assert result.exit_code == 2, result.output
    assert message in one_line_error(result)


def test_duplicate_key_in_a_playbook_is_refused(world):
    message, _ = rollback_with_level_1_playbook(
        world, b"kind: rollback\nlevel: 1\nbudget: 30s\nbudget: 5m\nsteps:\n  - type: flag.set\n    percentage: 0\n"
    )
    assert "line 4: key 'budget' appears twice (first on line 3)" in message


def test_rollout_yaml_over_1_mib_is_refused(tmp_path):
    path = tmp_path / "rollout.yaml"
    path.write_text("app:\n  env_file: .env\n" + "# padding\n" * 110_000)
    result = rollout("-w", str(tmp_path), "status")
    assert result.exit_code == 2
    assert one_line_error(result) == (
        f"rollout: error: {path} is {path.stat().st_size} bytes, more than the 1 MiB rollout reads; shorten it"
    )


def test_malformed_history_records_are_skipped_with_a_note(world):
    assert world.cli("rollback", "--level", "1", "--yes", "--reason", "real").exit_code == 0
    history = world.ws / ".rollout" / "history.jsonl"
    first = len(history.read_text().splitlines()) + 1  # the rollback's own records come first
    with history.open("a") as handle:
        handle.write(json.dumps({"time": "2030-01-01T00:00:00Z", "actor": "x", "command": "rollback --level 1",
                                 "changes": ["x"]}) + "\n")
        handle.write(json.dumps({"time": "2030-01-01T00:00:01Z", "actor": "x", "command": "advance",
                                 "result": {"nested": True}, "changes": []}) + "\n")
        handle.write('{"time": "yesterday", "actor": "x", "command": "advance"}\n')
        handle.write("[1, 2]\n{torn\n")
    lines = ", ".join(str(n) for n in range(first, first + 5))
    note = f"{history}: skipped 5 line(s) that are not audit records (line {lines})"
    status = world.cli("status", "--json")
    assert status.exit_code == 0, status.output
    data = json.loads(status.stdout)
    assert data["last_change"]["reason"] == "real"
    assert data["messages"][0].startswith(note)
    listed = world.cli("history", "--json")
    assert listed.exit_code == 0, listed.output
    assert [r["reason"] for r in json.loads(listed.stdout)["records"]] == ["real"]
    human = world.cli("history")
    assert human.exit_code == 0 and note in human.stdout.replace("\n", "")
    report = world.cli("report", "--json")
    assert [h["reason"] for h in json.loads(report.stdout)["history"]] == ["real"]
