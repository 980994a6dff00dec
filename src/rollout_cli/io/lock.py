"""One `rollout` at a time per workspace.

Two operators running `rollout advance` and `rollout rollback` at once would
fight over the same env and flags files. We use `flock` on `.rollout/lock`
because the kernel drops it when the holder dies, even on kill -9: a crashed
run can never leave the workspace stuck, so there is no stale-lock cleanup.

The lock file itself is never replaced or deleted (a flock belongs to an
inode); who holds it is written next to it in `lock.holder`, atomically, so
a waiter can say whom it is waiting for.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from rollout_cli.errors import InputError, LockError
from rollout_cli.io.atomic import atomic_write_text
from rollout_cli.io.inplace import permit_recovery

LOCK_NAME = "lock"
HOLDER_NAME = "lock.holder"


def actor() -> str:
    """Who is acting, for the lock holder and the audit log: $ROLLOUT_ACTOR, else user@host."""
    explicit = os.environ.get("ROLLOUT_ACTOR", "").strip()
    if explicit:
        return explicit
    user = os.environ.get("USER") or os.environ.get("LOGNAME")
    if not user:
        try:
            import pwd

            user = pwd.getpwuid(os.getuid()).pw_name
        except (ImportError, KeyError):
            user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


@dataclass(frozen=True)
class LockHolder:
    """The process that holds (or last held) a workspace lock."""

    pid: int
    actor: str
    command: str
    since: str  # ISO 8601, UTC

    def describe(self) -> str:
        return f"pid {self.pid} ({self.actor}, `{self.command}`, since {self.since})"


def read_holder(state_dir: Path) -> LockHolder | None:
    """The recorded holder, or None when nobody recorded one (or the record is unreadable)."""
    try:
        raw = json.loads((Path(state_dir) / HOLDER_NAME).read_text(encoding="utf-8"))
        return LockHolder(
            pid=int(raw["pid"]), actor=str(raw["actor"]), command=str(raw["command"]), since=str(raw["since"])
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def default_timeout() -> float:
    """How long a second writer waits: `ROLLOUT_LOCK_TIMEOUT` seconds, default 10."""
    raw = os.environ.get("ROLLOUT_LOCK_TIMEOUT", "10")
    try:
        return float(raw)
    except ValueError:
        raise InputError(f"ROLLOUT_LOCK_TIMEOUT={raw!r} is not a number of seconds; fix or unset it") from None


class WorkspaceLock:
    """Exclusive lock on a workspace's state folder, waited for at most `timeout` seconds.

    `command` is recorded as shown to a waiting operator, so pass it as typed,
    e.g. "rollout rollback --level 1".
    """

    def __init__(
        self, state_dir: Path, command: str, timeout: float | None = None, *, poll_interval: float = 0.05
    ) -> None:
        self.state_dir = Path(state_dir)
        self.command = command
        self.timeout = max(0.0, timeout if timeout is not None else default_timeout())
        self.poll_interval = poll_interval
        self.holder: LockHolder | None = None
        self._fd: int | None = None

    @property
    def lock_path(self) -> Path:
        return self.state_dir / LOCK_NAME

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> LockHolder:
        """Take the lock or raise LockError naming the holder once `timeout` has passed."""
        if self._fd is not None:
            raise RuntimeError("WorkspaceLock is not re-entrant")
        fd = self._open_lock_file()
        deadline = time.monotonic() + self.timeout
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise self._locked_error() from None
                    time.sleep(min(self.poll_interval, remaining))
            holder = LockHolder(
                pid=os.getpid(),
                actor=actor(),
                command=self.command,
                since=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            )
            atomic_write_text(self.state_dir / HOLDER_NAME, json.dumps(asdict(holder)) + "\n")
        except BaseException:
            os.close(fd)  # closing the descriptor also drops the flock if we took it
            raise
        self._fd = fd
        self.holder = holder
        permit_recovery(+1)  # holding the lock, this process may finish another's interrupted in-place write
        return holder

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            # Remove our record first, while still holding the lock, so it never names a
            # process that has let go; a record left by a killed holder is simply overwritten.
            current = read_holder(self.state_dir)
            if current is not None and current.pid == os.getpid():
                try:
                    (self.state_dir / HOLDER_NAME).unlink()
                except OSError:
                    pass
        finally:
            fd, self._fd = self._fd, None
            self.holder = None
            permit_recovery(-1)
            os.close(fd)

    def __enter__(self) -> WorkspaceLock:
        self.acquire()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()

    def _open_lock_file(self) -> int:
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            # Python descriptors are not inherited by children, so git/docker
            # subprocesses we start never keep the lock alive after we exit.
            return os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        except PermissionError as exc:
            raise InputError(
                f"cannot create the lock {self.lock_path}: permission denied; fix the permissions of {self.state_dir}"
            ) from exc
        except OSError as exc:
            raise InputError(
                f"cannot create the lock {self.lock_path}: {exc.strerror or exc}; check {self.state_dir}"
            ) from exc

    def _locked_error(self) -> LockError:
        holder = read_holder(self.state_dir)
        who = holder.describe() if holder is not None else "another process (holder not recorded yet)"
        return LockError(
            f"workspace is locked by {who}; wait for it or, if that process is gone, retry"
            f" (lock file {self.lock_path})"
        )
