"""Writes that reach the app: hard links and single-file bind mounts keep their inode; kill -9 mid-rewrite."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.support import make_world

from rollout_cli.io.atomic import RENAME, write_app_file
from rollout_cli.io.inplace import JOURNAL_DIR_ENV, SLOW_WRITE_ENV, journal_path
from rollout_cli.sandbox.sample_app import env_text, flagd_text


def test_plain_file_keeps_the_rename(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("A=1\n")
    inode = path.stat().st_ino
    how = write_app_file(path, "A=2\n")
    assert how.startswith(RENAME)
    assert path.read_text() == "A=2\n"
    assert path.stat().st_ino != inode


def test_hard_linked_file_is_rewritten_in_its_own_inode(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("A=1\nB=long value that will shrink\n")
    other = tmp_path / "link"
    os.link(path, other)
    how = write_app_file(path, "A=2\n")
    assert how == "in place, same inode, journalled (2 hard links)"
    assert other.read_text() == "A=2\n"  # the other link sees it: same inode
    assert path.stat().st_ino == other.stat().st_ino
    assert not journal_path(path).exists()


def test_level_1_on_hard_linked_files_says_in_place_and_the_link_sees_0(tmp_path: Path) -> None:
    world = make_world(tmp_path, percentage=10)
    env_link, flags_link = tmp_path / "env.link", tmp_path / "flags.link"
    os.link(world.app.env_file, env_link)
    os.link(world.app.flags_file, flags_link)
    result = world.cli("rollback", "--level", "1", "--yes", "--json")
    assert result.exit_code == 0, result.output
    import json

    steps = json.loads(result.output)["levels"][0]["steps"]
    assert steps[0]["detail"].endswith("(in place, same inode, journalled (2 hard links))")
    assert steps[1]["detail"].endswith("(in place, same inode, journalled (2 hard links))")
    assert "LITELLM_ROLLOUT_PERCENTAGE=0" in env_link.read_text()
    assert flags_link.read_text() == flagd_text(0)


def test_kill_9_in_the_middle_of_an_in_place_rollback_leaves_a_whole_file_after_the_next_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`rollout rollback --level 1` on a hard-linked env file, killed with SIGKILL while it rewrites.

    The test hook slows the in-place write to one byte per 20 ms, and each kill is sent
    only once the journal exists and the file is torn (neither the old nor the new text):
    every kill provably landed mid-write. After `rollout recover` the file is whole.
    """
    monkeypatch.setenv(JOURNAL_DIR_ENV, str(tmp_path / "journals"))
    world = make_world(tmp_path, percentage=10)
    (world.ws / "rollout.yaml").write_text(
        (world.ws / "rollout.yaml").read_text().replace("  flags_file: ../app/flags.json\n", "")
        .replace("  flags_format: flagd\n", "")
    )
    env = world.app.env_file
    old = env_text(10, True)
    new = old.replace("LITELLM_ROLLOUT_PERCENTAGE=10", "LITELLM_ROLLOUT_PERCENTAGE=0")
    link = tmp_path / "env.link"
    os.link(env, link)
    inode = env.stat().st_ino
    torn_seen = 0
    for _ in range(3):
        assert env.read_text() == old
        proc = subprocess.Popen(
            [sys.executable, "-m", "rollout_cli", "-w", str(world.ws), "rollback", "--level", "1", "--yes"],
            env={**os.environ, SLOW_WRITE_ENV: "0.02"}, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            content = env.read_bytes()
            if journal_path(env).exists() and content not in (old.encode(), new.encode()) and len(content) > 20:
                break
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.005)
        else:
            pytest.fail("the writer never got into its in-place rewrite")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stderr.close() if proc.stderr else None
        torn = env.read_bytes()
        assert torn not in (old.encode(), new.encode()) and journal_path(env).exists()
        torn_seen += 1
        # a read-only command never recovers: it names the command that does (tests/test_journal.py)
        assert world.cli("status").exit_code == 2 and env.read_bytes() == torn
        recovered = world.cli("recover")
        assert recovered.exit_code == 0 and "restored the content from before" in recovered.stdout
        # exit 1: the killed rollback's write-ahead audit record ("started") has no "finished" one
        status = world.cli("status", "--json")
        assert status.exit_code == 1, status.output
        unfinished = json.loads(status.stdout)["unfinished"]
        assert unfinished["command"] == "rollback --level 1" and unfinished["running"] is False
        assert json.loads(status.stdout)["stage"]["percentage"] == 10
        assert env.read_text() == old
        assert link.read_text() == old and env.stat().st_ino == inode
        assert not journal_path(env).exists()
    assert torn_seen == 3
    done = world.cli("rollback", "--level", "1", "--yes")
    assert done.exit_code == 0, done.output
    assert env.read_text() == new and link.read_text() == new and env.stat().st_ino == inode
