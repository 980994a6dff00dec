"""Network namespaces: enter one for the calling thread, so the sockets it creates live there.

A socket belongs to the network namespace of the thread that created it, for its whole life,
whichever thread uses it later. So a process can listen on the host's loopback and connect to a
namespace's loopback at once (the swarm sandbox's relay, sandbox/relay.py), without any address
outside loopback on either side. setns(2) with CLONE_NEWNET changes only the calling thread
(Python 3.11 has no os.setns: ctypes); needs CAP_SYS_ADMIN (root).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rollout_cli.errors import InputError, UnavailableError

CLONE_NEWNET = 0x40000000
NETNS_DIR = Path("/var/run/netns")  # where `ip netns add NAME` binds a namespace


def namespace_path(name: str) -> Path:
    return NETNS_DIR / name


def setns(path: str | os.PathLike[str]) -> None:
    """Move the calling thread into the network namespace at `path` (a /var/run/netns or /proc/.../ns/net file)."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InputError(f"network namespace {path} does not exist; is the swarm sandbox up?") from None
    try:
        if libc.setns(fd, CLONE_NEWNET) != 0:
            errno = ctypes.get_errno()
            raise UnavailableError(f"cannot enter network namespace {path}: {os.strerror(errno)} "
                                   "(needs root: CAP_SYS_ADMIN)")
    finally:
        os.close(fd)


@contextmanager
def inside(path: str | os.PathLike[str]) -> Iterator[None]:
    """The calling thread in namespace `path` for the block, then back in its own (sockets made inside stay there)."""
    own = os.open(f"/proc/self/task/{_thread_id()}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        setns(path)
        try:
            yield
        finally:
            setns(f"/proc/self/fd/{own}")
    finally:
        os.close(own)


def _thread_id() -> int:
    import threading

    return threading.get_native_id()
