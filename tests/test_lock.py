"""WorkspaceLock against real processes: contention, bounded waits, and kill -9."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rollout_cli.errors import ExitCode, InputError, LockError
from rollout_cli.io.lock import WorkspaceLock, actor, read_holder

SRC = Path(__file__).resolve().parents[1] / "src"

HOLDER_SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from rollout_cli.io.lock import WorkspaceLock

    lock = WorkspaceLock(Path(sys.argv[1]), sys.argv[2], timeout=5)
    lock.acquire()
    print("locked", flush=True)
    time.sleep(float(sys.argv[3]))
    lock.release()
    """
)


def start_holder(state_dir: Path, command: str, hold: float, actor_name: str = "alice@host") -> subprocess.Popen[str]:
    """A second `rollout` process that has taken the lock when this returns."""
    env = {**os.environ, "PYTHONPATH": str(SRC), "ROLLOUT_ACTOR": actor_name}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER_SCRIPT, str(state_dir), command, str(hold)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], 120)  # a guard against a hang, not a speed claim
    assert ready, "lock holder subprocess did not take the lock (waited 120 s)"
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_lock_creates_state_dir_records_holder_and_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLOUT_ACTOR", "bob@ops")
    state_dir = tmp_path / "ws" / ".rollout"
    with WorkspaceLock(state_dir, "rollout advance") as lock:
        assert lock.held
        recorded = json.loads((state_dir / "lock.holder").read_text())
        assert recorded["pid"] == os.getpid()
        assert recorded["actor"] == "bob@ops"
        assert recorded["command"] == "rollout advance"
        assert recorded["since"].endswith("Z")
    assert not lock.held
    assert (state_dir / "lock").exists()  # the flock inode is never replaced
    assert not (state_dir / "lock.holder").exists()
    assert read_holder(state_dir) is None


def test_second_process_gets_lock_error_naming_the_holder_within_timeout(tmp_path: Path) -> None:
    state_dir = tmp_path / ".rollout"
    holder = start_holder(state_dir, "rollout rollback --level 1", hold=30)
    try:
        started = time.monotonic()
        with pytest.raises(LockError, match=f"workspace is locked by pid {holder.pid} ") as caught:
            WorkspaceLock(state_dir, "rollout advance", timeout=0.5).acquire()
        waited = time.monotonic() - started
        message = str(caught.value)
        assert waited >= 0.45, f"gave up after {waited:.2f}s, before the 0.5s timeout"
        assert holder.poll() is None  # refused because the holder still held it, not because it left
        assert f"workspace is locked by pid {holder.pid} (alice@host, `rollout rollback --level 1`, since 20" in message
        assert "wait for it or, if that process is gone, retry" in message
        assert caught.value.exit_code == ExitCode.UNAVAILABLE
    finally:
        holder.kill()
        holder.wait()


def test_lock_is_free_again_after_holder_is_killed_with_sigkill(tmp_path: Path) -> None:
    state_dir = tmp_path / ".rollout"
    holder = start_holder(state_dir, "rollout rollback", hold=60)
    with pytest.raises(LockError, match=f"workspace is locked by pid {holder.pid} "):
        WorkspaceLock(state_dir, "rollout advance", timeout=0).acquire()
    os.kill(holder.pid, signal.SIGKILL)
    assert holder.wait(timeout=10) == -signal.SIGKILL
    # The killed holder's record is still there; the kernel has dropped its flock anyway.
    stale = read_holder(state_dir)
    assert stale is not None and stale.pid == holder.pid

    # timeout=0: free at once, or LockError; no waiting for the dead holder's record to go stale
    with WorkspaceLock(state_dir, "rollout advance", timeout=0) as lock:
        assert lock.holder is not None and lock.holder.pid == os.getpid()
        current = read_holder(state_dir)
        assert current is not None and current.pid == os.getpid()


def test_waiter_gets_the_lock_when_holder_finishes_within_timeout(tmp_path: Path) -> None:
    state_dir = tmp_path / ".rollout"
    holder = start_holder(state_dir, "rollout smoke", hold=0.5)
    try:
        started = time.monotonic()
        with WorkspaceLock(state_dir, "rollout advance", timeout=10):
            waited = time.monotonic() - started
            # the lock came when the holder let go: it is gone (or going), and it exits cleanly
            assert holder.wait(timeout=10) == 0
        assert waited > 0.1
    finally:
        holder.wait(timeout=10)
    assert holder.returncode == 0


def test_second_lock_in_same_process_is_refused_not_reentrant(tmp_path: Path) -> None:
    with WorkspaceLock(tmp_path, "rollout advance"), pytest.raises(LockError, match=f"pid {os.getpid()}"):
        WorkspaceLock(tmp_path, "rollout rollback", timeout=0).acquire()


def test_lock_in_a_folder_that_cannot_be_created_is_an_input_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    with pytest.raises(InputError, match="lock") as caught:
        WorkspaceLock(blocker / ".rollout", "rollout advance").acquire()
    assert str(blocker / ".rollout" / "lock") in str(caught.value)


def test_actor_prefers_rollout_actor_then_user_at_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLOUT_ACTOR", "ci-bot")
    assert actor() == "ci-bot"
    monkeypatch.delenv("ROLLOUT_ACTOR")
    monkeypatch.setenv("USER", "carol")
    name = actor()
    assert name.startswith("carol@") and len(name) > len("carol@")
