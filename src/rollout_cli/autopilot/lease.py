"""One autopilot per workspace: a lease under `.rollout/` (pid, host, heartbeat).

The lease is an flock on `.rollout/autopilot.lease.lock`, which the kernel drops
when its holder dies (kill -9 included): a dead holder's lease is simply taken
over, with no stale-lease guessing. Who holds it is written beside it in
`.rollout/autopilot.lease` (atomically), with a heartbeat each tick, so a second
autopilot and `rollout autopilot status` can name the holder.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rollout_cli.core.audit import utc_now
from rollout_cli.errors import InputError, UnavailableError
from rollout_cli.io.atomic import atomic_write_text
from rollout_cli.io.process import pid_exists

LEASE_NAME = "autopilot.lease"
LEASE_LOCK_NAME = "autopilot.lease.lock"


class LeaseHeld(UnavailableError):
    """Another autopilot runs on this workspace (exit 4)."""


@dataclass(frozen=True)
class LeaseHolder:
    pid: int
    host: str
    started: str  # ISO 8601, UTC
    heartbeat: float  # epoch seconds of its last tick

    def describe(self, now: float | None = None) -> str:
        age = (time.time() if now is None else now) - self.heartbeat
        return f"pid {self.pid} on {self.host} (since {self.started}, last heartbeat {age:.0f} s ago)"

    @property
    def alive(self) -> bool:
        """Whether the holder still runs, as far as this host can tell (another host's: by its lease only)."""
        return self.host != socket.gethostname() or pid_exists(self.pid)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def read_lease(state_dir: Path) -> LeaseHolder | None:
    """The recorded holder (or the last one), or None."""
    try:
        raw = json.loads((state_dir / LEASE_NAME).read_text(encoding="utf-8"))
        return LeaseHolder(int(raw["pid"]), str(raw["host"]), str(raw["started"]), float(raw["heartbeat"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


class Lease:
    """The workspace's autopilot lease: `acquire` or LeaseHeld naming the holder; `beat` each tick."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir
        self._fd: int | None = None
        self.holder: LeaseHolder | None = None
        self.taken_over: LeaseHolder | None = None  # a dead holder whose lease this one took

    def acquire(self) -> LeaseHolder:
        try:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.state_dir / LEASE_LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise InputError(f"cannot create the autopilot lease in {self.state_dir}: {exc.strerror or exc}; "
                             "check the folder's permissions") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            holder = read_lease(self.state_dir)
            who = holder.describe() if holder else "another process (not recorded yet)"
            raise LeaseHeld(f"another autopilot runs on this workspace: {who}; stop it first "
                            f"(`rollout autopilot status` names it)") from None
        previous = read_lease(self.state_dir)
        if previous is not None and previous.pid != os.getpid():
            self.taken_over = previous  # its flock is gone: it died (or stopped without cleaning up)
        self._fd = fd
        self.holder = LeaseHolder(os.getpid(), socket.gethostname(), utc_now(), time.time())
        self._write()
        return self.holder

    def beat(self) -> None:
        if self.holder is not None:
            self.holder = LeaseHolder(self.holder.pid, self.holder.host, self.holder.started, time.time())
            self._write()

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            current = read_lease(self.state_dir)
            if current is not None and current.pid == os.getpid():
                (self.state_dir / LEASE_NAME).unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None

    def _write(self) -> None:
        assert self.holder is not None
        atomic_write_text(self.state_dir / LEASE_NAME, json.dumps(self.holder.to_json()) + "\n")

    def __enter__(self) -> Lease:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
