"""Issue 23, journals and in-place writes: a killed in-place rewrite, and what the next `rollout` does about it.

Every test drives the real `rollout` command: in-process (CliRunner) to look, and as
a subprocess where it must be killed with SIGKILL in the middle of its write.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from tests.support import World, make_world

from rollout_cli.io.inplace import JOURNAL_DIR_ENV, SLOW_JOURNAL_ENV, SLOW_WRITE_ENV
from rollout_cli.sandbox.sample_app import env_text

SECRET = "sk-or-v1-journal-test-secret"
OLD = env_text(10, True) + f"OPENROUTER_API_KEY={SECRET}\n"
NEW = OLD.replace("LITELLM_ROLLOUT_PERCENTAGE=10", "LITELLM_ROLLOUT_PERCENTAGE=0")


@pytest.fixture
def journals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A journal folder of this test's own, for in-process and subprocess runs alike."""
    folder = tmp_path / "journals"
    monkeypatch.setenv(JOURNAL_DIR_ENV, str(folder))
    return folder


def env_only_world(root: Path, *, link: bool = True) -> World:
    """A workspace whose only app file is the env file (holding a secret), hard-linked so it is written in place."""
    root.mkdir(exist_ok=True)
    world = make_world(root, percentage=10)
    yaml_path = world.ws / "rollout.yaml"
    yaml_path.write_text(
        yaml_path.read_text().replace("  flags_file: ../app/flags.json\n", "").replace("  flags_format: flagd\n", "")
    )
    world.app.env_file.write_text(OLD)
    if link:
        os.link(world.app.env_file, root / "env.link")
    return world


def rollout_argv(ws: Path, *args: str) -> list[str]:
    return [sys.executable, "-m", "rollout_cli", "-w", str(ws), *args]


def start_rollback(ws: Path, *, slow_write: float = 0.02, slow_journal: float = 0.0,
                   wrap: list[str] | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, SLOW_WRITE_ENV: str(slow_write), SLOW_JOURNAL_ENV: str(slow_journal)}
    return subprocess.Popen([*(wrap or []), *rollout_argv(ws, "rollback", "--level", "1", "--yes")],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_for(proc: subprocess.Popen[bytes], ready: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return
        if proc.poll() is not None:
            pytest.fail(f"the writer ended (exit {proc.returncode}) before {what}: {proc.stderr.read() if proc.stderr else ''!r}")
        time.sleep(0.002)
    proc.kill()
    proc.wait()
    pytest.fail(f"the writer never got to {what} in {timeout} s")


def journal_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.journal")) if folder.exists() else []


def any_journal(folder: Path, env: Path) -> bool:
    """A journal of `env` where rollout keeps them, or beside the file, where it used to (so the test runs on both)."""
    return bool(journal_files(folder)) or (env.parent / f".{env.name}.rollout-journal").exists()


def torn(env: Path) -> bool:
    content = env.read_bytes()
    return content not in (OLD.encode(), NEW.encode()) and len(content) > 20


def kill_mid_write(world: World, journals: Path, **kwargs: object) -> bytes:
    """Start `rollback --level 1`, SIGKILL it once its journal exists and the env file is torn; the torn bytes."""
    proc = start_rollback(world.ws, **kwargs)  # type: ignore[arg-type]
    env = world.app.env_file
    wait_for(proc, lambda: any_journal(journals, env) and torn(env), "the middle of its in-place write")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.stderr is not None
    proc.stderr.close()
    content = env.read_bytes()
    assert content not in (OLD.encode(), NEW.encode()) and any_journal(journals, env)
    return content


# --- item 4: recovery checks the file, runs under the lock, never silently from a read-only command


def test_read_only_commands_leave_a_torn_file_alone_and_name_rollout_recover(tmp_path: Path, journals: Path) -> None:
    world = env_only_world(tmp_path)
    torn_bytes = kill_mid_write(world, journals)
    for args in (["status"], ["report"], ["watch", "--count", "1"], ["advance", "--dry-run"],
                 ["rollback", "--level", "1", "--dry-run"], ["rollback", "--level", "1", "--drill"]):
        result = world.cli(*args)
        assert result.exit_code == 2, (args, result.output)
        assert "was interrupted while rewriting it in place" in result.output, result.output
        assert "run `rollout recover`" in result.output and str(world.app.env_file) in result.output
        if args[0] != "rollback":  # a dry run and a drill show it as the env.set step's detail
            assert len(result.stderr.strip().splitlines()) == 1
        assert world.app.env_file.read_bytes() == torn_bytes and journal_files(journals)
    history = world.cli("history")
    assert history.exit_code == 0  # the audit trail does not read the app's files
    recovered = world.cli("recover", "--json")
    assert recovered.exit_code == 0, recovered.output
    [note] = json.loads(recovered.stdout)["recovered"]
    assert note.startswith(f"recovered {world.app.env_file}: restored the content from before the interrupted rewrite")
    assert world.app.env_file.read_text() == OLD and not journal_files(journals)
    again = world.cli("recover")
    assert again.exit_code == 0 and "nothing to recover" in again.stdout


def test_an_operators_fix_after_the_crash_is_never_overwritten(tmp_path: Path, journals: Path) -> None:
    world = env_only_world(tmp_path)
    env = world.app.env_file
    kill_mid_write(world, journals)
    fixed = "# fixed by hand after the crash\n" + NEW
    with open(env, "r+") as handle:  # an editor that saves in place: same inode
        handle.write(fixed)
        handle.truncate()
    status = world.cli("status")
    assert status.exit_code == 2 and "rollout recover" in status.stderr
    assert env.read_text() == fixed
    done = world.cli("rollback", "--level", "1", "--yes", "--json")  # a writing command recovers on its own
    assert done.exit_code == 0, done.output
    [note] = [m for m in json.loads(done.stdout)["messages"] if "left as it is" in m]
    assert "changed after the interrupted in-place rewrite" in note
    assert env.read_text() == fixed  # the fix stays; level 1 finds 0 % already there
    [parked] = list(journals.glob("*.journal.parked-*"))
    assert str(parked) in note and OLD.encode() in parked.read_bytes()  # nothing is lost
    assert world.cli("status").exit_code in (0, 1, 3, 4)  # no longer refused: the journal is parked


def test_a_writing_command_recovers_first_and_says_so(tmp_path: Path, journals: Path) -> None:
    world = env_only_world(tmp_path)
    kill_mid_write(world, journals)
    done = world.cli("rollback", "--level", "1", "--yes")
    assert done.exit_code == 0, done.output
    assert done.stdout.startswith(f"recovered {world.app.env_file}: restored the content from before the interrupted")
    assert world.app.env_file.read_text() == NEW and not journal_files(journals)
    assert (tmp_path / "env.link").read_text() == NEW
    [record] = [r for r in world.history() if r["command"] == "recover"]  # it may move the stage: audited
    assert record["recovered"][0].startswith(f"recovered {world.app.env_file}: restored")


def test_a_running_writer_is_waited_for_never_recovered_under_it(tmp_path: Path, journals: Path) -> None:
    """A second workspace on a hard link of the same env file: its workspace lock is free, the file's is not."""
    world = env_only_world(tmp_path / "a", link=False)
    other = env_only_world(tmp_path / "b", link=False)
    other.app.env_file.unlink()
    os.link(world.app.env_file, other.app.env_file)
    env = world.app.env_file
    proc = start_rollback(world.ws, slow_write=0.05)  # about 18 s of writing: longer than anyone waits
    wait_for(proc, lambda: any_journal(journals, env), "its journal")
    busy = other.cli("recover")
    assert busy.exit_code == 4, busy.output
    assert f"{other.app.env_file} is being rewritten in place by a running rollout (pid {proc.pid})" in busy.stderr
    assert proc.poll() is None and any_journal(journals, env)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.stderr is not None
    proc.stderr.close()
    done = world.cli("recover")  # killed before its first differing byte, or after: the old content either way
    assert done.exit_code == 0 and done.stdout.startswith(f"recovered {env}: ")
    assert env.read_text() == OLD


# --- item 5: the journal belongs to the file (device + inode), so every path to it finds it


def test_a_second_workspace_on_a_hard_link_finds_the_first_ones_journal(tmp_path: Path, journals: Path) -> None:
    first = env_only_world(tmp_path / "a", link=False)
    second = env_only_world(tmp_path / "b", link=False)
    second.app.env_file.unlink()
    os.link(first.app.env_file, second.app.env_file)  # both workspaces' env file: one inode
    kill_mid_write(first, journals)
    status = second.cli("status")
    assert status.exit_code == 2 and "run `rollout recover`" in status.stderr, status.output
    assert str(second.app.env_file) in status.stderr
    done = second.cli("rollback", "--level", "1", "--yes")
    assert done.exit_code == 0, done.output
    assert f"recovered {second.app.env_file}: restored" in done.stdout
    assert first.app.env_file.read_text() == NEW and not journal_files(journals)
    after = first.cli("status", "--json")
    assert json.loads(after.stdout)["stage"]["percentage"] == 0, after.output
    assert first.app.env_file.read_text() == NEW  # the first workspace's next look changes nothing


# --- item 6: a writer in another pid namespace (a container): its pid means nothing here

needs_unshare = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None, reason="a new pid namespace needs root and unshare(1)"
)
UNSHARE = ["unshare", "--pid", "--fork", "--mount-proc"]


def _child_of(pid: int, timeout: float = 30) -> int:
    """The host pid of the process unshare(1) forked (pid 1 in its namespace)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if children:
            return int(children[0])
        time.sleep(0.01)
    raise AssertionError("unshare never forked its child")


@needs_unshare
def test_a_writer_killed_in_another_pid_namespace_is_recovered_here(tmp_path: Path, journals: Path) -> None:
    world = env_only_world(tmp_path)
    proc = start_rollback(world.ws, wrap=UNSHARE)
    writer = _child_of(proc.pid)
    wait_for(proc, lambda: any_journal(journals, world.app.env_file) and torn(world.app.env_file), "its in-place write")
    env = world.app.env_file
    [journal] = journal_files(journals) or [env.parent / f".{env.name}.rollout-journal"]
    header = json.loads(journal.read_bytes().partition(b"\n")[0])
    assert header.get("writer", header).get("pid") == 1  # pid 1 here is init: a pid alone would say "still running"
    os.kill(writer, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.stderr is not None
    proc.stderr.close()
    done = world.cli("rollback", "--level", "1", "--yes", "--json")
    assert done.exit_code == 0, done.output
    [note] = [m for m in json.loads(done.stdout)["messages"] if m.startswith("recovered")]
    assert "restored the content from before the interrupted rewrite" in note
    assert "pid 1 in another pid namespace" in note
    assert world.app.env_file.read_text() == NEW and not journal_files(journals)


@needs_unshare
def test_a_reader_in_another_namespace_with_the_writers_pid_never_takes_the_write_for_its_own(
    tmp_path: Path, journals: Path
) -> None:
    """Two namespaces, both rollouts pid 1: the second must wait for the first, not undo its write."""
    world = env_only_world(tmp_path)
    writer = start_rollback(world.ws, slow_write=0.005, wrap=UNSHARE)
    wait_for(writer, lambda: any_journal(journals, world.app.env_file) and torn(world.app.env_file), "its in-place write")
    reader = subprocess.run([*UNSHARE, *rollout_argv(world.ws, "status", "--json")],
                            capture_output=True, text=True, timeout=60)
    assert writer.wait(timeout=60) == 0, writer.stderr.read() if writer.stderr else ""
    assert writer.stderr is not None
    writer.stderr.close()
    assert json.loads(reader.stdout)["stage"]["percentage"] == 0, reader.stderr  # it waited, then read the result
    assert world.app.env_file.read_text() == NEW and not journal_files(journals)


# --- item 7: planted journals and temp files


def _journal_bytes(path: Path, old: bytes, new: bytes, *, pid: int = 999_999_999) -> bytes:
    info = os.stat(path)
    header = {
        "format": 2, "path": str(path), "dev": info.st_dev, "ino": info.st_ino,
        "size_old": len(old), "size_new": len(new),
        "sha256_old": hashlib.sha256(old).hexdigest(), "sha256_new": hashlib.sha256(new).hexdigest(),
        "writer": {"pid": pid, "start_ticks": 1, "boot_id": "0", "pid_namespace": "pid:[1]"},
    }
    return json.dumps(header).encode() + b"\n" + old + new


def _plant(journals: Path, env: Path, data: bytes, *, uid: int, mode: int) -> Path:
    info = os.stat(env)
    journals.mkdir(mode=0o1777, exist_ok=True)
    planted = journals / f"{info.st_dev:x}-{info.st_ino}.journal"
    planted.write_bytes(data)
    os.chmod(planted, mode)
    os.chown(planted, uid, -1)
    return planted


ATTACKER = OLD.replace("https://openrouter.ai/api/v1", "http://127.0.0.1:9/steal")


@pytest.mark.skipif(os.geteuid() != 0, reason="planting another user's journal needs root")
@pytest.mark.parametrize("owner, mode", [(65534, None), (None, 0o666)], ids=["another-owner", "another-mode"])
def test_a_planted_journal_is_refused_by_every_command(
    tmp_path: Path, journals: Path, owner: int | None, mode: int | None
) -> None:
    world = env_only_world(tmp_path)
    env = world.app.env_file
    info = env.stat()
    torn_now = ATTACKER.encode()[:40] + env.read_bytes()[40:]  # what a torn write of the attacker's bytes looks like
    env.write_bytes(torn_now)
    planted = _plant(journals, env, _journal_bytes(env, ATTACKER.encode(), NEW.encode()),
                     uid=owner if owner is not None else info.st_uid,
                     mode=mode if mode is not None else info.st_mode & 0o777)
    for args in (["status"], ["recover"], ["rollback", "--level", "1", "--yes"]):
        result = world.cli(*args)
        assert result.exit_code == 2, (args, result.output)
        assert f"in-place journal {planted}" in result.stderr and "another user may have planted it" in result.stderr
        assert env.read_bytes() == torn_now and planted.exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="planting another user's file needs root")
def test_a_journal_planted_beside_the_file_by_another_user_is_never_applied(tmp_path: Path, journals: Path) -> None:
    """Where rollout used to journal (`.NAME.rollout-journal`, beside the file, in a shared folder)."""
    world = env_only_world(tmp_path)
    env = world.app.env_file
    os.chmod(env.parent, 0o1777)
    old, new = ATTACKER.encode(), NEW.encode()
    header = {"pid": 999_999_999, "sha256_old": hashlib.sha256(old).hexdigest(),
              "sha256_new": hashlib.sha256(new).hexdigest(), "size_old": len(old)}
    planted = env.parent / f".{env.name}.rollout-journal"
    planted.write_bytes(json.dumps(header).encode() + b"\n" + old)
    os.chown(planted, 65534, 65534)
    status = world.cli("status")
    assert status.exit_code == 2 and f"an older rollout left the in-place journal {planted}" in status.stderr
    assert env.read_text() == OLD and "steal" not in env.read_text()


def test_the_journal_temp_file_is_never_at_a_guessable_name(tmp_path: Path, journals: Path) -> None:
    """Another user pre-creates the temp file at the name rollout used to use (`..env.rollout-journal.PID.tmp`).

    The wrapper plants a file and a symlink at that name for its own pid, then execs
    rollout (same pid): neither may receive the env file's content.
    """
    world = env_only_world(tmp_path)
    env = world.app.env_file
    stolen = tmp_path / "stolen"
    wrapper = (
        "import os, sys\n"
        f"folder = {str(env.parent)!r}\n"
        "os.symlink(sys.argv[1], os.path.join(folder, f'..env.rollout-journal.{os.getpid()}.tmp'))\n"
        "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", wrapper, str(stolen), *rollout_argv(world.ws, "rollback", "--level", "1", "--yes")[1:]],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert not stolen.exists(), "the journal's temp file followed a planted symlink"
    assert env.read_text() == NEW


# --- item 8: journal temp files never leak, however often a writer is killed


def _leftovers(world: World, journals: Path) -> list[Path]:
    beside = [p for p in world.app.env_file.parent.iterdir() if p.name.endswith(".tmp") or "journal" in p.name]
    return beside + (list(journals.iterdir()) if journals.exists() else [])  # journals, temp files, locks


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:  # renamed or removed since it was listed
        return 0


@pytest.mark.slow(20)
def test_ten_kill_9s_leave_no_temp_file_with_secrets(tmp_path: Path, journals: Path) -> None:
    """SIGKILL `rollback --level 1` 10 times, alternately while it writes its journal's temp file and mid-rewrite.

    The test hooks slow both writes to one byte per millisecond so every kill provably lands
    in its phase; after each, a writing command runs, and in the end no file anywhere holds the secret.
    """
    world = env_only_world(tmp_path)
    env = world.app.env_file
    in_temp = 0
    for round_ in range(10):
        with open(env, "r+") as handle:  # same inode: start every round from 10 %
            handle.write(OLD)
            handle.truncate()
        proc = start_rollback(world.ws, slow_write=0.001, slow_journal=0.001)
        if round_ % 2 == 0:
            def temp_written() -> bool:
                return any(p.name.endswith(".tmp") and _size(p) > 100 for p in _leftovers(world, journals))
            wait_for(proc, temp_written, "its journal's temp file")
            in_temp += 1
        else:
            wait_for(proc, lambda: any_journal(journals, world.app.env_file) and torn(env), "its in-place write")
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert proc.stderr is not None
        proc.stderr.close()
        done = world.cli("rollback", "--level", "1", "--yes")
        assert done.exit_code == 0, done.output
        assert env.read_text() == NEW
    assert in_temp == 5
    left = _leftovers(world, journals)
    assert not left, f"left behind: {[p.name for p in left]}"
    everything = [p for p in tmp_path.rglob("*") if p.is_file() and ".git" not in p.parts and p != env]
    assert not [p for p in everything if p.name != "env.link" and SECRET.encode() in p.read_bytes()]


def test_a_temp_file_an_older_rollout_leaked_beside_the_file_is_swept(tmp_path: Path, journals: Path) -> None:
    """The name the old in-place path leaked (`..env.rollout-journal.PID.tmp`), a full copy with the secret."""
    world = env_only_world(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    leaked = world.app.env_file.parent / f"..env.rollout-journal.{int(dead.stdout)}.tmp"
    leaked.write_text(OLD)
    done = world.cli("rollback", "--level", "1", "--yes")
    assert done.exit_code == 0, done.output
    assert not leaked.exists()


# --- item 12: a corrupt journal is refused, not silently replaced


@pytest.mark.parametrize("content", [b"not a journal", b'{"format": 2}\nshort'], ids=["garbage", "truncated"])
def test_a_corrupt_journal_is_refused_not_replaced(tmp_path: Path, journals: Path, content: bytes) -> None:
    world = env_only_world(tmp_path)
    env = world.app.env_file
    info = env.stat()
    planted = _plant(journals, env, content, uid=info.st_uid, mode=info.st_mode & 0o777)
    for args in (["status"], ["rollback", "--level", "1", "--yes"], ["recover"]):
        result = world.cli(*args)
        assert result.exit_code == 2, (args, result.output)
        assert f"in-place journal {planted} of {env} is corrupt" in result.stderr
        assert "move the journal away and retry" in result.stderr
    assert planted.read_bytes() == content and env.read_text() == OLD


def test_a_corrupt_journal_where_rollout_used_to_journal_is_refused(tmp_path: Path, journals: Path) -> None:
    world = env_only_world(tmp_path)
    env = world.app.env_file
    legacy = env.parent / f".{env.name}.rollout-journal"
    legacy.write_bytes(b"garbage")
    done = world.cli("rollback", "--level", "1", "--yes")
    assert done.exit_code == 2 and f"an older rollout left the in-place journal {legacy}" in done.stderr
    assert legacy.read_bytes() == b"garbage" and env.read_text() == OLD
