"""Crash-safe file writes for the files `rollout` edits in the operator's world.

A rollback may be interrupted at any moment (Ctrl-C, kill -9, a dead laptop),
and the app may read its `.env` or flags file while we write it. So every write
goes to a temp file in the same folder, is fsynced, and then replaces the
original with `os.replace`: readers see the old content or the new content,
never half of it.

The app's own files (env, flags) go through `write_app_file`, which keeps the
rename only where it reaches the app: a file with a second hard link, or one a
running container bind-mounts by itself, is rewritten in its own inode instead
(`io/inplace.py`, journalled and recovered on the next run).
"""

from __future__ import annotations

import errno
import glob
import hashlib
import os
import tempfile
from pathlib import Path

from rollout_cli.errors import DockerUnavailable, InputError
from rollout_cli.io.inplace import LEGACY_SUFFIX, fsync_folder, rewrite_in_place, settle
from rollout_cli.io.process import pid_exists

NEW_FILE_MODE = 0o644


def atomic_write_text(path: Path, text: str, *, mode: int | None = None) -> None:
    """Replace `path` with `text` (UTF-8, line endings written as given) in one step.

    An existing file keeps its permission bits and, where we may, its owner (we
    often run as root on an app's files); a new file gets `mode`, default 0644.
    A symlink is followed, so the link stays a link and its target is rewritten.
    """
    target = Path(os.path.realpath(path)) if os.path.islink(path) else Path(path)
    folder = target.parent
    data = text.encode("utf-8")
    try:
        existing = os.stat(target)
    except FileNotFoundError:
        existing = None
    except OSError as exc:
        raise _write_error(path, exc) from exc

    file_mode = mode if mode is not None else (
        existing.st_mode & 0o7777 if existing is not None else NEW_FILE_MODE
    )
    tmp_name: str | None = None
    _sweep_orphans(target)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=folder)
        try:
            # fchmod, not the umask: the mode must not depend on who runs us.
            os.fchmod(fd, file_mode)
            if existing is not None and (existing.st_uid, existing.st_gid) != (os.geteuid(), os.getegid()):
                try:
                    os.fchown(fd, existing.st_uid, existing.st_gid)
                except PermissionError:
                    pass  # not root: the file becomes ours, which is all we can do
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp_name, target)
        tmp_name = None
        fsync_folder(folder)
    except OSError as exc:
        raise _write_error(path, exc) from exc
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass


RENAME = "temp file + rename"


def write_app_file(path: Path, text: str) -> str:
    """Write a file the app reads, so that the app sees it; returns the strategy, for the step's detail.

    A plain file gets `atomic_write_text` (new inode). A file with more than one
    hard link, or bind-mounted alone into a running container, is rewritten in
    its own inode: those readers hold the inode, and a rename would leave them
    on the old content.
    """
    target = Path(os.path.realpath(path))
    try:
        settle(target)  # under the workspace lock: a killed in-place rewrite is finished first
        links = os.stat(target).st_nlink
    except FileNotFoundError:
        links = 0
    except OSError as exc:
        raise _write_error(path, exc) from exc
    reasons = [f"{links} hard links"] if links > 1 else []
    unchecked = ""
    if links:
        # lazy: start-up time (the Docker SDK, only when an engine may be there)
        from rollout_cli.io.mounts import containers_bind_mounting, engine_socket_present

        if engine_socket_present():
            try:
                boxes = containers_bind_mounting(target)
            except DockerUnavailable:
                boxes, unchecked = [], "; Docker engine not answering: bind mounts not checked"
            if boxes:
                reasons.append("bind-mounted into container " + ", ".join(boxes))
    if not reasons:
        atomic_write_text(path, text)
        return RENAME + unchecked
    try:
        _sweep_orphans(target)
        rewrite_in_place(target, text.encode("utf-8"))
    except OSError as exc:
        raise _write_error(path, exc) from exc
    return f"in place, same inode, journalled ({'; '.join(reasons)})"


def recover_interrupted(path: Path) -> str | None:
    """Before `path` is read: finish a killed in-place rewrite (under the workspace lock; what was done), or say one is pending."""
    target = Path(os.path.realpath(path))
    try:
        return settle(target)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise _write_error(path, exc) from exc


def _sweep_orphans(target: Path) -> None:
    """Remove temp files a killed writer left beside `target` (its pid is in the name).

    `.NAME.PID.RANDOM.tmp` from atomic_write_text, and `.NAME.rollout-journal.PID.tmp`,
    the journal temp file of rollout versions that journalled beside the file.
    """
    for leftover in target.parent.glob(f".{_glob_escape(target.name)}.*.tmp"):
        rest = leftover.name[len(target.name) + 2 :]
        rest = rest.removeprefix(LEGACY_SUFFIX.lstrip(".") + ".")
        pid = rest.split(".", 1)[0]
        if pid.isdigit() and not pid_exists(int(pid)):
            try:
                leftover.unlink()
            except OSError:
                pass


def _glob_escape(name: str) -> str:
    return glob.escape(name)


def sha256_of(path: Path) -> str | None:
    """Hex SHA-256 of a file's bytes, or None when it does not exist (snapshots compare these)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 16), b""):
                digest.update(chunk)
    except FileNotFoundError:
        return None
    except IsADirectoryError as exc:
        raise InputError(f"{path} is a folder, not a file; fix the path") from exc
    except PermissionError as exc:
        raise InputError(f"cannot read {path}: permission denied; fix its permissions") from exc
    return digest.hexdigest()


def _write_error(path: Path, exc: OSError) -> InputError:
    folder = Path(path).parent
    if isinstance(exc, PermissionError) or exc.errno in (errno.EACCES, errno.EPERM):
        return InputError(f"cannot write {path}: permission denied; fix its permissions")
    if exc.errno == errno.EROFS:
        return InputError(f"cannot write {path}: read-only file system; remount it writable")
    if exc.errno == errno.ENOTDIR:
        return InputError(f"cannot write {path}: {folder} is not a folder; fix the path")
    if isinstance(exc, FileNotFoundError):
        return InputError(f"cannot write {path}: folder {folder} does not exist; create it or fix the path")
    if isinstance(exc, IsADirectoryError):
        return InputError(f"cannot write {path}: it is a folder; fix the path")
    if exc.errno == errno.ENOSPC:
        return InputError(f"cannot write {path}: no space left on device; free some space")
    return InputError(f"cannot write {path}: {exc.strerror or exc}; check the file and its folder")
