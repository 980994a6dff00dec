"""Rewrite a file in place (same inode), crash-safely, for readers that hold the inode.

A rename gives the path a new inode. A container that bind-mounts the single
file (`./flags.json:/etc/flagd/flags.json:ro`, the compose pattern) and a second
hard link both keep the old inode, so they never see a renamed file. For those,
the new bytes must land in the same inode:

1. lock the file's inode: `KEY.lock` in the journal folder, where KEY is the
   file's device and inode, so every path to the file (a hard link, a second
   workspace) meets the same lock and the same journal;
2. journal: the old and the new bytes and who writes, as `KEY.journal`
   (a mkstemp temp file with the file's owner and mode, fsync, rename, folder fsync);
3. rewrite: one write of the new bytes at offset 0, truncate, fsync;
4. drop the journal, unlock.

A writer killed anywhere in between leaves the journal, and the kernel drops
its lock (a flock: across pid namespaces and containers too, where a pid would
name another process). Whether a journal's writer still runs is therefore
asked of the lock, never of a pid. Recovery happens only in a process that holds
its workspace lock (a writing command, or `rollout recover`); a read-only
command that meets a journal says so and names the command to run. Recovery
first checks the file is still the torn one (same inode; its bytes are the
old ones overwritten by a prefix of the new ones): then the old bytes go back
(or the completed new ones stay); a file changed since (an operator's fix) is
left alone and the journal is parked beside, renamed, for a person to read.

The price, documented in docs/SETUP.md: during step 3 (one write call, microseconds
for a dotenv or flags file) a reader without the lock may see part of the new
content; a rename never shows that. Plain files therefore keep the rename.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import socket
import stat
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from rollout_cli.errors import InputError, StateFileError, UnavailableError
from rollout_cli.io.process import ProcessIdentity
from rollout_cli.io.textfile import STATE_FILE_LIMIT

JOURNAL_DIR_ENV = "ROLLOUT_JOURNAL_DIR"
DEFAULT_JOURNAL_DIR = Path("/var/tmp/rollout-journal")  # survives a reboot, unlike /tmp
JOURNAL_FORMAT = 2
LEGACY_SUFFIX = ".rollout-journal"  # format 1, beside the file: `.NAME.rollout-journal`
RECOVER_COMMAND = "rollout recover"
# How long to wait for another writer's in-place write (microseconds, normally) to finish.
INODE_LOCK_WAIT_S = 5.0
# Test hooks, never set in production: seconds to sleep after each byte of the file's
# (the journal's) write, so a test can kill -9 a writer provably in the middle of it.
SLOW_WRITE_ENV = "ROLLOUT_TEST_SLOW_INPLACE_WRITE_S"
SLOW_JOURNAL_ENV = "ROLLOUT_TEST_SLOW_JOURNAL_WRITE_S"

# Recovery may run only while this process holds a workspace lock (io/lock.py counts them).
_recovery_permits = 0
_recovered: list[str] = []


def permit_recovery(delta: int) -> None:
    """Called by WorkspaceLock: +1 when taken, -1 when released."""
    global _recovery_permits
    _recovery_permits = max(0, _recovery_permits + delta)


def take_recovery_notes() -> list[str]:
    """What this process recovered so far (one line each), for the command's output; cleared."""
    notes = list(_recovered)
    _recovered.clear()
    return notes


def journal_dir() -> Path:
    return Path(os.environ.get(JOURNAL_DIR_ENV) or DEFAULT_JOURNAL_DIR)


def journal_path(target: Path) -> Path:
    """Where a journal of `target`'s inode lives, whichever path reaches it."""
    return journal_dir() / f"{_key(os.stat(target))}.journal"


def rewrite_in_place(target: Path, data: bytes) -> None:
    """Put `data` into `target`'s own inode; raises OSError (the caller words it) or a RolloutError."""
    folder = _ensure_journal_dir()
    with open(target, "r+b") as handle:
        info = os.fstat(handle.fileno())
        key = _key(info)
        journal = folder / f"{key}.journal"
        with _inode_lock(folder, key, info, exclusive=True, target=target):
            note = _recover_locked(target, info, journal)
            if note:
                _recovered.append(note)
            _sweep_temps(folder, key)
            os.lseek(handle.fileno(), 0, os.SEEK_SET)
            old = handle.read()
            if old == data:
                return
            _write_journal(folder, key, journal, target, info, old, data)
            fd = handle.fileno()
            _write_all(fd, data)
            os.ftruncate(fd, len(data))
            os.fsync(fd)
            journal.unlink()
            fsync_folder(folder)


def settle(target: Path) -> str | None:
    """Before `target` is read or written: deal with a journal an interrupted in-place rewrite left.

    Under a workspace lock the rewrite is finished (see the module's docstring):
    returns what was done, also queued for the command's output; otherwise a
    pending journal is an error naming `rollout recover`. A rewrite in progress
    is waited for. Raises FileNotFoundError when `target` does not exist.
    """
    info = os.stat(target)
    legacy = target.parent / f".{target.name}{LEGACY_SUFFIX}"
    if os.path.lexists(legacy):
        raise StateFileError(
            f"{target}: an older rollout left the in-place journal {legacy}; it may be half written:"
            f" check {target} by hand, then delete {legacy} and retry"
        )
    folder = journal_dir()
    key = _key(info)
    journal = folder / f"{key}.journal"
    if not os.path.lexists(journal):
        return None
    entry = _read_journal(journal, target, info)
    if _recovery_permits:
        _ensure_journal_dir()
        with _inode_lock(folder, key, info, exclusive=True, target=target, writer=entry.writer):
            note = _recover_locked(target, info, journal)
        if note:
            _recovered.append(note)
        return note
    with _inode_lock(folder, key, info, exclusive=False, target=target, writer=entry.writer):
        if os.path.lexists(journal):
            raise RecoveryNeeded(
                f"{target}: a rollout ({entry.writer.describe()}) was interrupted while rewriting it in place,"
                f" so it may be half written; run `{RECOVER_COMMAND}` to check it and finish the write"
                f" (journal {journal})"
            )
    return None


class RecoveryNeeded(StateFileError):
    """A read-only command met a journal no writer holds any more."""


@dataclass(frozen=True)
class _Entry:
    writer: ProcessIdentity
    old: bytes
    new: bytes


def _recover_locked(target: Path, info: os.stat_result, journal: Path) -> str | None:
    """With the inode lock held: finish the journalled rewrite; a one-line note, or None when none was pending."""
    if not os.path.lexists(journal):
        return None
    entry = _read_journal(journal, target, info)
    old, new = entry.old, entry.new
    who = entry.writer.describe()
    with open(target, "r+b") as handle:
        if os.fstat(handle.fileno()).st_ino != info.st_ino:
            return None  # the path now names another file; its own journal, if any, is keyed apart
        now = handle.read(max(len(old), len(new)) + 1)
        if now == new:
            outcome = "kept the completed rewrite"
        elif now == old:
            outcome = "the interrupted rewrite had not changed it"
        elif _is_torn(now, old, new):
            fd = handle.fileno()
            _write_all(fd, old, slow=None)
            os.ftruncate(fd, len(old))
            os.fsync(fd)
            outcome = "restored the content from before the interrupted rewrite"
        else:
            parked = journal.with_name(f"{journal.name}.parked-{datetime.now(UTC).strftime('%Y%m%dT%H%M%S%fZ')}")
            os.rename(journal, parked)
            fsync_folder(journal.parent)
            return (
                f"{target}: left as it is: it changed after the interrupted in-place rewrite by {who}"
                f" (not the torn content, so a person fixed it); the journal is kept at {parked}"
            )
    journal.unlink()
    fsync_folder(journal.parent)
    return f"recovered {target}: {outcome} (interrupted in-place rewrite by {who})"


def _is_torn(now: bytes, old: bytes, new: bytes) -> bool:
    """Whether `now` is what a single write of `new` over `old`, cut anywhere, leaves (before the truncate)."""
    if len(now) == len(old):
        shortest = min(len(now), len(new))
        prefix = next((i for i in range(shortest) if now[i] != new[i]), shortest)
        differ = next((i + 1 for i in range(len(now) - 1, -1, -1) if now[i] != old[i]), 0)
        return differ <= prefix  # new[:k] + old[k:] for some k between the two
    return len(old) < len(now) <= len(new) and new.startswith(now)


def _read_journal(journal: Path, target: Path, info: os.stat_result) -> _Entry:
    """The journal's content once it is known to be ours and whole; a one-line error otherwise."""
    try:
        fd = os.open(journal, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise _corrupt(journal, target, f"cannot open it: {exc.strerror or exc}") from None
    try:
        _check_planted(journal, os.fstat(fd), target, info, "journal", same_mode=True)
        with os.fdopen(os.dup(fd), "rb") as handle:
            raw = handle.read(2 * STATE_FILE_LIMIT + 64 * 1024)  # two copies of a file at most, and the header
    finally:
        os.close(fd)
    header_line, _, body = raw.partition(b"\n")
    try:
        header = json.loads(header_line)
        sizes = int(header["size_old"]), int(header["size_new"])
        writer = ProcessIdentity.from_json(header["writer"])
        inode = int(header["dev"]), int(header["ino"])
        digests = str(header["sha256_old"]), str(header["sha256_new"])
        if header.get("format") != JOURNAL_FORMAT:
            raise ValueError("unknown format")
    except (ValueError, KeyError, TypeError, AttributeError):
        raise _corrupt(journal, target, "its header is not a rollout journal's") from None
    old, new = body[: sizes[0]], body[sizes[0] :]
    if len(old) != sizes[0] or len(new) != sizes[1]:
        raise _corrupt(journal, target, "it is shorter or longer than its header says")
    if (hashlib.sha256(old).hexdigest(), hashlib.sha256(new).hexdigest()) != digests:
        raise _corrupt(journal, target, "its content does not match its digests")
    if inode != (info.st_dev, info.st_ino):
        raise _corrupt(journal, target, "it names another file (device and inode differ)")
    return _Entry(writer, old, new)


def _corrupt(journal: Path, target: Path, why: str) -> StateFileError:
    return StateFileError(
        f"in-place journal {journal} of {target} is corrupt ({why}); {target} may be half written:"
        f" check it by hand, then move the journal away and retry"
    )


def _check_planted(path: Path, found: os.stat_result, target: Path, info: os.stat_result, what: str,
                   *, same_mode: bool) -> None:
    """Refuse a journal or lock another user could have planted or edited: it would write their bytes into `target`."""
    trusted = {0, info.st_uid, os.geteuid()}  # root and the file's owner may write the file anyway
    mode, file_mode = stat.S_IMODE(found.st_mode), stat.S_IMODE(info.st_mode)
    if not stat.S_ISREG(found.st_mode) or found.st_uid not in trusted or (same_mode and mode != file_mode):
        raise StateFileError(
            f"in-place {what} {path} (owner uid {found.st_uid}, mode {mode:o}) does not match {target}"
            f" (owner uid {info.st_uid}, mode {file_mode:o}), so another user may have planted it:"
            f" check both, then delete {path} and retry"
        )


def _write_journal(
    folder: Path, key: str, journal: Path, target: Path, info: os.stat_result, old: bytes, new: bytes
) -> None:
    header = {
        "format": JOURNAL_FORMAT,
        "path": str(target),
        "dev": info.st_dev,
        "ino": info.st_ino,
        "size_old": len(old),
        "size_new": len(new),
        "sha256_old": hashlib.sha256(old).hexdigest(),
        "sha256_new": hashlib.sha256(new).hexdigest(),
        "writer": ProcessIdentity.current().to_json(),
        "host": socket.gethostname(),
    }
    # mkstemp: O_EXCL|O_NOFOLLOW at an unguessable name, so nobody else holds or reads it.
    fd, tmp = tempfile.mkstemp(prefix=f"{key}.", suffix=".tmp", dir=folder)
    try:
        try:
            # The file's owner and mode: the journal holds its secrets, and recovery checks both.
            os.fchmod(fd, stat.S_IMODE(info.st_mode))
            if info.st_uid != os.geteuid():
                try:
                    os.fchown(fd, info.st_uid, info.st_gid)
                except PermissionError:
                    pass  # not root: the journal stays ours, which recovery by us accepts
            _write_all(fd, json.dumps(header).encode() + b"\n" + old + new, slow=SLOW_JOURNAL_ENV)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, journal)
    except BaseException:
        _unlink_quietly(Path(tmp))
        raise
    fsync_folder(folder)


def _sweep_temps(folder: Path, key: str) -> None:
    """Remove journal temp files of this inode that a killed writer left (we hold its lock: none is in use)."""
    for leftover in folder.glob(f"{key}.*.tmp"):
        _unlink_quietly(leftover)


@contextmanager
def _inode_lock(folder: Path, key: str, info: os.stat_result, *, exclusive: bool, target: Path,
                writer: ProcessIdentity | None = None) -> Iterator[None]:
    """Hold `KEY.lock` (exclusive to write or recover, shared to read), waiting at most INODE_LOCK_WAIT_S.

    An exclusive holder deletes the lock file before letting go, so the folder keeps
    no file per inode ever written; whoever then gets the flock on the deleted file
    sees it is no longer at its path and locks the current one instead.
    """
    lock = folder / f"{key}.lock"
    deadline = time.monotonic() + INODE_LOCK_WAIT_S
    fd = _locked(lock, exclusive=exclusive, deadline=deadline, target=target, info=info, writer=writer)
    try:
        yield
    finally:
        if fd is not None:
            if exclusive:
                _unlink_quietly(lock)  # still held: nobody can be between its open and its flock on this one
            os.close(fd)  # drops the flock


def _locked(lock: Path, *, exclusive: bool, deadline: float, target: Path, info: os.stat_result,
            writer: ProcessIdentity | None) -> int | None:
    """A descriptor holding the flock of the file now at `lock`; None when a reader finds no lock (no writer)."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | (os.O_CREAT if exclusive else 0)
    while True:
        try:
            fd = os.open(lock, flags, 0o644)
        except FileNotFoundError:
            return None  # only a reader opens without creating: no writer holds it
        except OSError as exc:
            raise StateFileError(
                f"cannot open the in-place lock {lock} of {target}: {exc.strerror or exc};"
                f" check it is a plain file (not a link), or delete it"
            ) from None
        try:
            _check_planted(lock, os.fstat(fd), target, info, "lock", same_mode=False)
            while True:
                try:
                    fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        who = writer.describe() if writer is not None else "another rollout"
                        raise UnavailableError(
                            f"{target} is being rewritten in place by a running rollout ({who});"
                            f" wait for it to finish and retry (lock {lock})"
                        ) from None
                    time.sleep(0.02)
            try:
                current = os.stat(lock, follow_symlinks=False).st_ino
            except FileNotFoundError:
                current = None
        except BaseException:
            os.close(fd)
            raise
        if current == os.fstat(fd).st_ino:
            return fd
        os.close(fd)  # its holder deleted it as it let go: lock the one at the path now


def _ensure_journal_dir() -> Path:
    """The journal folder, created shared (sticky, like /tmp) when missing; refused when anyone could swap its files."""
    folder = journal_dir()
    try:
        os.mkdir(folder, 0o700)
        os.chmod(folder, 0o1777)  # every user's rollout journals here; the sticky bit keeps each one's files its own
    except FileExistsError:
        pass
    except OSError as exc:
        raise InputError(
            f"cannot create the in-place journal folder {folder}: {exc.strerror or exc};"
            f" create it (mode 1777) or set {JOURNAL_DIR_ENV} to a writable folder"
        ) from None
    found = os.lstat(folder)
    mode = stat.S_IMODE(found.st_mode)
    if not stat.S_ISDIR(found.st_mode) or (mode & 0o022 and not mode & stat.S_ISVTX):
        raise InputError(
            f"in-place journal folder {folder} is not a folder, or is writable by others without the sticky bit"
            f" (mode {mode:o}); `chmod 1777 {folder}` or set {JOURNAL_DIR_ENV} to a folder of your own"
        )
    return folder


def _key(info: os.stat_result) -> str:
    return f"{info.st_dev:x}-{info.st_ino}"


def _unlink_quietly(path: Path) -> None:
    try:
        path.unlink()
    except OSError:
        pass


def _write_all(fd: int, data: bytes, *, slow: str | None = SLOW_WRITE_ENV) -> None:
    os.lseek(fd, 0, os.SEEK_SET)
    delay = float(os.environ.get(slow) or 0) if slow else 0.0
    view = memoryview(data)
    while view:
        written = os.write(fd, view[:1] if delay else view)
        view = view[written:]
        if delay:
            time.sleep(delay)


def fsync_folder(folder: Path) -> None:
    """Make a rename or unlink in `folder` durable; without this a power cut can undo it."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as exc:
        # Some file systems (e.g. certain network or FUSE mounts) refuse fsync on a folder.
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)
