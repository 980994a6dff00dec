"""Processes rollout starts: detached ones for the sandbox (simulator, litellm), and stopping exactly
them; and a playbook's `run` steps, waited for with a timeout.

A process is started through a short-lived trampoline, so it is nobody's
child: it outlives `rollout sandbox up`, never becomes our zombie, and has its
own session (a Ctrl-C in the operator's terminal does not reach it).
A recorded pid is trusted only together with the process's start time (from
/proc), so a pid the kernel has since handed to another program is never
signalled.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from rollout_cli.errors import UnavailableError

# Runs in a fresh interpreter: start the real process in its own session with
# its output in the log file, print its pid, and leave without waiting for it.
_TRAMPOLINE = """\
import json, os, subprocess, sys
spec = json.loads(sys.stdin.read())
log = open(spec["log"], "ab", buffering=0)
proc = subprocess.Popen(spec["argv"], cwd=spec["cwd"], env=spec["env"], stdin=subprocess.DEVNULL,
                        stdout=log, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
sys.stdout.write(str(proc.pid))
sys.stdout.flush()
os._exit(0)
"""


@dataclass(frozen=True)
class ProcessRecord:
    """Enough to find one detached process again, and to be sure it is still the same one."""

    pid: int
    start_ticks: int | None  # /proc/PID/stat field 22; None where /proc is missing
    argv: tuple[str, ...]
    log: str
    started_at: float  # time.time() at spawn, for uptime

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["argv"] = list(self.argv)
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProcessRecord:
        return cls(
            pid=int(data["pid"]),
            start_ticks=data.get("start_ticks"),
            argv=tuple(data.get("argv") or ()),
            log=str(data.get("log", "")),
            started_at=float(data.get("started_at", 0.0)),
        )

    def alive(self) -> bool:
        """True while this very process runs (a zombie or a reused pid is not it)."""
        stat = _proc_stat(self.pid)
        if stat is None:
            if _proc_stat(os.getpid()) is not None:
                return False  # /proc works, and the pid is gone
            return pid_exists(self.pid)  # no /proc: the best we can do is ask the kernel
        state, ticks = stat
        if state in ("Z", "X"):
            return False
        return self.start_ticks is None or ticks == self.start_ticks

    def uptime_s(self) -> float | None:
        return round(time.time() - self.started_at, 3) if self.alive() else None

    def stop(self, grace_s: float = 5.0) -> bool:
        """SIGTERM the process group, SIGKILL after `grace_s`; False when it was not running."""
        if not self.alive():
            return False
        _signal_group(self.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            if not self.alive():
                break
            time.sleep(0.05)
        else:
            _signal_group(self.pid, signal.SIGKILL)
            kill_deadline = time.monotonic() + 5
            while self.alive() and time.monotonic() < kill_deadline:
                time.sleep(0.05)
        _reap(self.pid)
        return True


def spawn_detached(
    argv: Sequence[str], *, log: Path, env: Mapping[str, str], cwd: Path | None = None
) -> ProcessRecord:
    """Start `argv` detached, stdout and stderr appended to `log`; returns its record.

    `env` is the complete environment of the process (secrets travel here,
    never on the command line, where `ps` would show them).
    """
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as handle:  # so even a process that dies silently leaves a trace
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        handle.write(f"--- {stamp} rollout starts: {' '.join(argv)}\n")
    spec = {"argv": list(argv), "cwd": str(cwd or log.parent), "env": dict(env), "log": str(log)}
    started_at = time.time()
    try:
        done = subprocess.run(
            [sys.executable, "-I", "-S", "-c", _TRAMPOLINE],
            input=json.dumps(spec),
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise UnavailableError(f"cannot start {argv[0]}: {exc}") from exc
    if done.returncode != 0 or not done.stdout.strip().isdigit():
        reason = (done.stderr.strip().splitlines() or ["no reason given"])[-1]
        raise UnavailableError(f"cannot start {argv[0]}: {reason}")
    pid = int(done.stdout.strip())
    stat = _proc_stat(pid)
    return ProcessRecord(pid, stat[1] if stat else None, tuple(argv), str(log), started_at)


@dataclass(frozen=True)
class Finished:
    """How a program run by `run_in_session` ended."""

    returncode: int | None  # None: killed at the timeout
    last_line: str  # its last line of output (stdout and stderr together), for a one-line report

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


OUTPUT_KEPT = 4096  # bytes of a `run` program's output kept: enough for its last line, whatever it writes


def run_in_session(argv: Sequence[str], *, cwd: Path, timeout: float, grace_s: float = 2.0,
                   env: Mapping[str, str] | None = None, stdin: bytes | None = None) -> Finished:
    """Run `argv` in its own session and wait for that process alone, at most `timeout` seconds.

    Its output goes to a pipe that a thread drains, keeping only the last
    OUTPUT_KEPT bytes: a program that writes without end (`yes`) costs neither
    memory nor disk. Only the process is waited for, not the end of the pipe: a
    background child it leaves running (`sleep 20 &`) inherits the pipe, and
    waiting for that would wait for the child too. On the timeout the whole
    process group gets SIGTERM, then SIGKILL after `grace_s`; so does it on
    Ctrl-C, which a separate session no longer receives from the terminal.
    `env` replaces the environment (None: ours); `stdin` is written to its
    standard input by a thread (a program that never reads it cannot block us).
    Raises OSError when the program cannot be started.
    """
    read_end, write_end = os.pipe()
    stdin_read, stdin_write = os.pipe() if stdin is not None else (None, None)
    held: list[int] = []  # a Ctrl-C during Popen, where no one would end the program it started
    previous = _hold_interrupts(held)
    try:
        proc = subprocess.Popen(
            list(argv), cwd=cwd, stdin=subprocess.DEVNULL if stdin_read is None else stdin_read,
            stdout=write_end, stderr=subprocess.STDOUT, start_new_session=True, close_fds=True,
            env=None if env is None else dict(env),
        )
    except BaseException:
        os.close(read_end)
        if stdin_write is not None:
            os.close(stdin_write)
        if held:
            raise KeyboardInterrupt from None
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
        os.close(write_end)
        if stdin_read is not None:
            os.close(stdin_read)
    try:  # from here on an interrupt (Ctrl-C) ends the program's whole group, whenever it comes
        if held:
            raise KeyboardInterrupt
        if stdin is not None and stdin_write is not None:
            threading.Thread(target=_feed, args=(stdin_write, stdin), name="run-input", daemon=True).start()
        output = _OutputTail(read_end)
        code: int | None = proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        _end_group(proc, grace_s)
        code = None
    except BaseException:
        _end_group(proc, grace_s)
        raise
    return Finished(code, output.last_line(settle_s=0.2))


def _hold_interrupts(held: list[int]) -> Any:
    """Until the returned handler is put back, a Ctrl-C only appends to `held`; None: nothing changed.

    Popen forks, execs and then waits for the exec's outcome: a KeyboardInterrupt raised in
    that wait leaves Popen without handing back the process, which then runs on in its own
    session, out of reach. Only the main thread has signal handlers, and an ignored SIGINT
    (a background job) stays ignored.
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    if signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        return None
    return signal.signal(signal.SIGINT, lambda *_: held.append(1))


def _feed(fd: int, data: bytes) -> None:
    """Write `data` to a program's stdin, then close it (its end of file); a program gone early is fine."""
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
    except OSError:  # BrokenPipe: it exited without reading
        pass
    finally:
        os.close(fd)


class _OutputTail:
    """The last OUTPUT_KEPT bytes written to a pipe, read by a daemon thread until the pipe's end.

    A background child still holding the pipe keeps the thread reading (and
    its writes from blocking) until it exits or rollout does.
    """

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._kept = b""
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._drain, name="run-output", daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        try:
            while chunk := os.read(self._fd, 64 * 1024):
                with self._lock:
                    self._kept = (self._kept + chunk)[-OUTPUT_KEPT:]
        except OSError:
            pass
        finally:
            os.close(self._fd)

    def last_line(self, settle_s: float) -> str:
        """The last line so far, after up to `settle_s` for what the process wrote just before it ended."""
        self._thread.join(settle_s)
        with self._lock:
            lines = self._kept.decode("utf-8", errors="replace").strip().splitlines()
        return lines[-1].strip() if lines else ""


def _end_group(proc: subprocess.Popen[bytes], grace_s: float) -> None:
    """SIGTERM the process's group, SIGKILL it after `grace_s`, then reap the process.

    The process is reaped only at the end: until then its pid (the group's id)
    cannot be handed to another program, so the signals reach only its group.
    """
    _signal_only_group(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if os.waitid(os.P_PID, proc.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
            break
        time.sleep(0.02)
    # Whatever is left in the group (a child that ignores SIGTERM) goes too.
    _signal_only_group(proc.pid, signal.SIGKILL)
    proc.wait()


def _signal_only_group(pgid: int, sig: signal.Signals) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def pid_exists(pid: int) -> bool:
    """Whether the kernel knows `pid` (it may be another program's by now: see ProcessRecord.alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, it is just not ours to signal
    return True


def boot_id() -> str | None:
    """This boot's random id: a pid or a start time recorded before a reboot means nothing after it."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def pid_namespace() -> str | None:
    """Our pid namespace (`pid:[4026531836]`): a pid means a process only inside the namespace it was read in."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return None


@dataclass(frozen=True)
class ProcessIdentity:
    """Who a process is, beyond its pid: the pid is only unique within one pid namespace and one boot."""

    pid: int
    start_ticks: int | None
    boot_id: str | None
    pid_namespace: str | None

    @classmethod
    def current(cls) -> ProcessIdentity:
        stat = _proc_stat(os.getpid())
        return cls(os.getpid(), stat[1] if stat else None, boot_id(), pid_namespace())

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ProcessIdentity:
        ticks = data.get("start_ticks")
        return cls(
            pid=int(data["pid"]),
            start_ticks=int(ticks) if isinstance(ticks, int) else None,
            boot_id=str(data["boot_id"]) if data.get("boot_id") else None,
            pid_namespace=str(data["pid_namespace"]) if data.get("pid_namespace") else None,
        )

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """`pid N`, qualified where that pid would name another process here."""
        here = ProcessIdentity.current()
        if self.boot_id != here.boot_id:
            return f"pid {self.pid}, before the last reboot"
        if self.pid_namespace != here.pid_namespace:
            return f"pid {self.pid} in another pid namespace ({self.pid_namespace or 'unknown'}), e.g. a container"
        return f"pid {self.pid}"


def tail_file(path: Path, lines: int = 20) -> list[str]:
    """The last `lines` lines of a log file (read from the end, so a big log costs nothing)."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 64 * 1024))
            data = handle.read()
    except OSError:
        return []
    return data.decode("utf-8", errors="replace").splitlines()[-lines:] if lines > 0 else []


def command_line(pid: int) -> str | None:
    """Process `pid`'s command line, its arguments joined by spaces (the first 4 KiB); None: gone, or none
    (a kernel thread, a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()[:4096]
    except OSError:
        return None
    return " ".join(part.decode(errors="replace") for part in raw.split(b"\0") if part) or None


def environment_of(pid: int) -> dict[str, str] | None:
    """Process `pid`'s environment as it started (the first 256 KiB of /proc/PID/environ); None: not readable."""
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()[:256 * 1024]
    except OSError:
        return None
    pairs = (part.decode(errors="replace").partition("=") for part in raw.split(b"\0") if part)
    return {name: value for name, _, value in pairs}


def started_at(pid: int) -> float | None:
    """When process `pid` started, as a Unix time (within about a second: the boot time has whole seconds).

    None when /proc does not know the pid (gone, or no /proc here) or it is a zombie.
    """
    stat = _proc_stat(pid)
    if stat is None or stat[0] in ("Z", "X"):
        return None
    try:
        boot = next(int(line.split()[1]) for line in Path("/proc/stat").read_text().splitlines()
                    if line.startswith("btime "))
    except (OSError, StopIteration, IndexError, ValueError):
        return None
    return boot + stat[1] / os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) from /proc/PID/stat, or None."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after the last ')'.
    fields = raw[raw.rfind(")") + 2 :].split()
    try:
        return fields[0], int(fields[19])
    except (IndexError, ValueError):
        return None


def _signal_group(pid: int, sig: signal.Signals) -> None:
    # The process leads its own session (start_new_session), so its group id
    # is its pid: signalling the group also stops what it forked (uvicorn workers).
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def _reap(pid: int) -> None:
    """Collect the exit status if the process happens to be our child; harmless otherwise."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except (ChildProcessError, OSError):
        pass
