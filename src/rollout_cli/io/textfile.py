"""Reading a text file the operator owns: regular files only, bounded, strict UTF-8.

Every file `rollout` reads from the operator's world (`rollout.yaml`, playbooks,
the gateway config, the env and flags files, the master key file) comes through
`read_text`, because each of these has gone wrong in the field:

- a FIFO or a device (`/dev/zero` behind a symlink) blocks a reader forever or
  fills memory, while it may hold the workspace lock: we open without blocking
  and accept only a regular file;
- an absurdly large file takes seconds to parse: each kind has a size cap;
- a byte that is not UTF-8 must not turn into a message quoting the file,
  which may hold a secret: the error names the line and byte offset only.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from rollout_cli.errors import InputError

KiB = 1024
MiB = 1024 * KiB

# Caps, by what a file is for. Generous for any real file, small enough to parse in well under a second.
CONFIG_LIMIT = 1 * MiB  # rollout.yaml, playbooks, the gateway config
STATE_FILE_LIMIT = 4 * MiB  # the app's env and flags files
KEY_FILE_LIMIT = 64 * KiB  # gateway.master_key_file


def read_text(path: Path, *, limit: int, error: type[InputError] = InputError, label: str = "") -> str:
    """The text of the regular file at `path`, exactly as stored (no newline translation).

    Raises FileNotFoundError for a missing file (callers word that message
    themselves, naming the setting that points at it); `error` for anything else
    that keeps the file from being read as UTF-8 text of at most `limit` bytes.
    `label` says what the file is ("playbook ", "gateway config ") in front of its path.
    """
    name = f"{label}{path}"
    try:
        # O_NONBLOCK: opening a FIFO with no writer must not wait for one.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except ValueError:  # a NUL in the path
        raise error(f"{name!r} is not a usable path: it contains a NUL character; fix the path") from None
    except PermissionError:
        raise error(f"cannot read {name}: permission denied; fix its permissions") from None
    except OSError as exc:
        raise error(f"cannot read {name}: {exc.strerror or type(exc).__name__}; check the path") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise error(f"{name} is a folder, not a file; fix the path")
        if not stat.S_ISREG(info.st_mode):
            raise error(f"{name} is {_kind(info.st_mode)}, not a regular file; rollout reads only regular files: fix the path")
        if info.st_size > limit:
            raise error(f"{name} is {info.st_size} bytes, more than the {_size(limit)} rollout reads; shorten it")
        data = _read_at_most(fd, limit, name, error)
    finally:
        os.close(fd)
    return _decode_utf8(data, name, error)


def _decode_utf8(data: bytes, name: str, error: type[InputError] = InputError) -> str:
    """`data` as text; a bad byte is named by line and byte offset, never shown (it may be part of a secret)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise error(
            f"{name} is not UTF-8 text: line {line}, byte offset {exc.start} ({exc.reason}); re-save it as UTF-8"
        ) from None


def _read_at_most(fd: int, limit: int, name: str, error: type[InputError]) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        try:
            chunk = os.read(fd, min(limit + 1 - size, MiB))
        except OSError as exc:
            raise error(f"cannot read {name}: {exc.strerror or type(exc).__name__}; check the file") from None
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
        if size > limit:  # it grew while we read it
            raise error(f"{name} is more than the {_size(limit)} rollout reads; shorten it")


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a plain file"


def _size(limit: int) -> str:
    return f"{limit // MiB} MiB" if limit % MiB == 0 else f"{limit // KiB} KiB"
