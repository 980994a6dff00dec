"""`rollout autopilot`: ticks every `interval` under the workspace's lease until SIGTERM or SIGINT.

The loop only sleeps and handles signals (the tick decides and acts): a signal
sets a flag, the tick under way finishes (never a half-written file), the
lease is released and the command exits 0.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rollout_cli.autopilot.lease import Lease
from rollout_cli.autopilot.tick import ACTOR, TickPayload, run_tick
from rollout_cli.core.result import Result
from rollout_cli.core.workspace import Workspace
from rollout_cli.errors import ExitCode, RolloutError
from rollout_cli.notify import Event, notify
from rollout_cli.rollout.plan import load_plan

OnTick = Callable[[Result[TickPayload]], None]
SLICE_S = 0.2  # how soon a signal is noticed between ticks


@contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGTERM and SIGINT set `stop` instead of raising mid-tick (main thread only: elsewhere, no handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(ws: Workspace, *, once: bool, on_tick: OnTick, on_start: Callable[[list[str]], Any],
        on_error: Callable[[RolloutError], Any]) -> ExitCode:
    """Tick until stopped (or once); the exit code of the last tick with `once`, else 0 on a signal.

    A tick that fails (a file being edited, a lock held too long) is reported through
    `on_error` and the service ticks again; with `once` the error is the command's.
    """
    plan = load_plan(ws.playbooks)  # a bad `autopilot:` (or plan) is exit 2 before anything starts
    lease = Lease(ws.state_dir)
    lease.acquire()  # a second autopilot: LeaseHeld, exit 4, naming the first
    stop = threading.Event()
    code = ExitCode.OK
    try:
        notes = [f"autopilot pid {lease.holder.pid if lease.holder else '?'}: interval "
                 f"{plan.autopilot.interval_s:g} s, rollback level {plan.autopilot.on_breach} after "
                 f"{plan.autopilot.failure_threshold} breached ticks"]
        if lease.taken_over is not None:
            notes.append(f"took over the lease of a dead autopilot: {lease.taken_over.describe()}")
        on_start(notes)
        if not once:
            notify(ws, Event("autopilot.started", "info", notes[0], ACTOR))
        with stop_on_signals(stop):
            while True:
                try:
                    result = run_tick(ws, plan)
                except RolloutError as exc:
                    if once:
                        raise
                    on_error(exc)
                else:
                    code = result.exit_code
                    on_tick(result)
                lease.beat()
                if once or stop.is_set():
                    break
                deadline = time.monotonic() + plan.autopilot.interval_s
                while not stop.is_set() and (left := deadline - time.monotonic()) > 0:
                    stop.wait(min(SLICE_S, left))
                if stop.is_set():
                    break
        if not once:
            notify(ws, Event("autopilot.stopped", "info", "autopilot stopped (signal)", ACTOR))
            code = ExitCode.OK
    finally:
        lease.release()
    return code
