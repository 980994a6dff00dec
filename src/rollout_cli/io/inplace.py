"""Rewrite a file in place (same inode), crash-safely, for readers that hold the inode.

A rename gives the path a new inode. A container that bind-mounts the single
file (`./flags.json:/etc/flagd/flags.json:ro`, the compose pattern) and a second
hard link both keep the old inode, so they never see a renamed file. For those,
the new bytes must land in the same inode:

1. journal: the old bytes, the new bytes' digest and our pid, written beside the
   file as `.NAME.rollout-journal` (temp file, fsync, rename, folder fsync);
2. rewrite: one write of the new bytes at offset 0, truncate, fsync;
3. drop the journal (and fsync the folder).

A writer killed anywhere in between leaves the journal. The next `rollout` that
reads or writes the file (its pid is gone) finds it and recovers: a file that
already holds the new bytes keeps them, anything else gets the old bytes back.
So the file is always whole after the next run, as after a killed rename.

The price, documented in docs/SETUP.md: during step 2 (one write call, microseconds
for a dotenv or flags file) a reader may see part of the new content; a rename
never shows that. Plain files therefore keep the rename.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import time
from pathlib import Path

from rollout_cli.io.process import pid_exists

JOURNAL_SUFFIX = ".rollout-journal"
# Test hook, never set in production: seconds to sleep after each byte of the
# in-place write, so a test can kill -9 a writer provably in the middle of it.
SLOW_WRITE_ENV = "ROLLOUT_TEST_SLOW_INPLACE_WRITE_S"


def journal_path(target: Path) -> Path:
    return target.parent / f".{target.name}{JOURNAL_SUFFIX}"


def rewrite_in_place(target: Path, data: bytes) -> None:
    """Put `data` into `target`'s own inode; raises OSError (the caller words it)."""
    recover(target)
    journal = journal_path(target)
    with open(target, "r+b") as handle:
        old = handle.read()
        if old == data:
            return
        _write_journal(journal, old, data)
        fd = handle.fileno()
        _write_all(fd, data)
        os.ftruncate(fd, len(data))
        os.fsync(fd)
    journal.unlink()
    fsync_folder(target.parent)


def recover(target: Path) -> str | None:
    """Finish an interrupted in-place rewrite of `target`; what was done, or None when nothing was pending.

    A journal whose writer still runs is left alone: that rewrite is in progress.
    """
    journal = journal_path(target)
    try:
        raw = journal.read_bytes()
    except FileNotFoundError:
        return None
    header, _, old = raw.partition(b"\n")
    try:
        meta = json.loads(header)
        pid, new_digest = int(meta["pid"]), str(meta["sha256_new"])
    except (ValueError, KeyError, TypeError):
        # A journal is renamed into place whole, so this one is not ours; leave it for a person.
        return None
    if pid != os.getpid() and pid_exists(pid):
        return None
    if hashlib.sha256(old).hexdigest() != meta.get("sha256_old"):
        return None
    with open(target, "r+b") as handle:
        now = handle.read()
        if hashlib.sha256(now).hexdigest() == new_digest:
            outcome = "kept the completed rewrite"
        else:
            fd = handle.fileno()
            os.lseek(fd, 0, os.SEEK_SET)
            _write_all(fd, old, slow=False)
            os.ftruncate(fd, len(old))
            os.fsync(fd)
            outcome = "restored the content from before the interrupted rewrite"
    journal.unlink()
    fsync_folder(target.parent)
    return outcome


def _write_journal(journal: Path, old: bytes, new: bytes) -> None:
    header = {
        "pid": os.getpid(),
        "sha256_old": hashlib.sha256(old).hexdigest(),
        "sha256_new": hashlib.sha256(new).hexdigest(),
        "size_old": len(old),
    }
    tmp = journal.with_name(f"{journal.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        _write_all(fd, json.dumps(header).encode() + b"\n" + old, slow=False)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, journal)
    fsync_folder(journal.parent)


def _write_all(fd: int, data: bytes, *, slow: bool = True) -> None:
    os.lseek(fd, 0, os.SEEK_SET)
    delay = float(os.environ.get(SLOW_WRITE_ENV) or 0) if slow else 0.0
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
