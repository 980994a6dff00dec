"""The core of `rollout sandbox up|down|status|fault`: each returns one Result."""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

from ..errors import ExitCode, InputError, UnavailableError
from ..result import Result
from . import world
from .state import load_state


def next_steps(root: Path) -> list[str]:
    """What to try next, with this sandbox's folder spelled out."""
    w = shlex.quote(str(root))
    implied = root == Path(world.DEFAULT_DIR).absolute() and not os.environ.get("ROLLOUT_WORKSPACE")
    fault_w = "" if implied else f"-w {w} "
    return [
        f"rollout -w {w} health",
        f"rollout -w {w} status",
        f"rollout -w {w} rollback --level 1 --drill",
        f"rollout {fault_w}sandbox fault glm-4.5-air --status 500",
        f"rollout sandbox down {w}",
    ]


def _next_lines(root: Path) -> list[str]:
    return ["next, try:", *(f"  {command}" for command in next_steps(root))]


def up(root: Path, *, progress: Any = None, step: Any = None, **options: Any) -> Result:
    """Start the sandbox; a gateway that does not come up is exit 4 with its last log lines."""
    from ..gateway_control import GatewayNotHealthy

    try:
        info = world.up(root, progress=progress, step=step, **options)
    except GatewayNotHealthy as exc:
        data = {"dir": str(root), "up": False, "error": exc.message, "log_lines": exc.log_lines,
                "waited_s": exc.waited_s}
        return Result("sandbox up", data, [exc.message + "; everything it started was stopped"],
                      ExitCode.UNAVAILABLE)
    data = {**info.to_json(), "up": True, "next": next_steps(info.root)}
    if info.already_up:
        messages = [f"the sandbox in {info.root} is already up and healthy: nothing to do "
                    f"(`rollout sandbox down {shlex.quote(str(info.root))}` stops it)"]
    else:
        messages = [f"sandbox up in {info.took_s:g} s: gateway {info.gateway_url} ({info.runtime}), "
                    f"simulator {info.simulator_url}"]
    return Result("sandbox up", data, messages + _next_lines(info.root))


def down(root: Path) -> Result:
    """Stop what `up` recorded; harmless (exit 0) when nothing is up."""
    stopped = world.down(root)
    if stopped:
        messages = [f"stopped {', '.join(stopped)}; the files in {root} stay "
                    f"(`rollout sandbox up {shlex.quote(str(root))}` starts it again)"]
    else:
        messages = [f"nothing to stop: no sandbox is running in {root}"]
    return Result("sandbox down", {"dir": str(root), "stopped": stopped}, messages)


def status(root: Path) -> Result:
    data = world.status(root)
    if not data["up"]:
        return Result("sandbox status", data, [f"no sandbox is up in {root}; start one with "
                                               f"`rollout sandbox up {shlex.quote(str(root))}`"],
                      ExitCode.UNAVAILABLE)
    data["next"] = next_steps(root)
    if data["healthy"]:
        return Result("sandbox status", data, _next_lines(root))
    return Result("sandbox status", data, [
        f"the sandbox in {root} is not healthy; `rollout sandbox up {shlex.quote(str(root))}` restarts it cleanly"
    ], ExitCode.UNAVAILABLE)


def fault(
    root: Path,
    model: str | None,
    *,
    clear: bool = False,
    status: int | None = None,
    rate: float | None = None,
    latency_ms: int | None = None,
    retry_after: int | None = None,
    mode: str | None = None,
) -> Result:
    """Set, clear or list the simulator's faults; model names are checked before any request."""
    from ..simulator import FaultBook, SimulatorAdmin

    state = load_state(root)
    if state is None:
        raise UnavailableError(f"no sandbox is up in {root}; start one with `rollout sandbox up`"
                               " (or pass -w DIR)")
    if model is not None:
        FaultBook.canonical(model)  # unknown name: InputError listing the known ones
    admin = SimulatorAdmin(state.simulator_url)
    fields = {"status": status, "rate": rate, "latency_ms": latency_ms, "retry_after": retry_after, "mode": mode}
    given = {k: v for k, v in fields.items() if v is not None}
    if clear:
        if given:
            raise InputError(f"--clear takes no {', '.join('--' + k.replace('_', '-') for k in given)}; drop them")
        admin.clear(model)
        message = f"cleared the fault of {model}" if model else "cleared every fault"
    elif model is None:
        if given:
            raise InputError("name the MODEL the fault is for, e.g. `rollout sandbox fault glm-4.5-air --status 500`")
        message = ""
    else:
        if not given:
            raise InputError("give the fault: --status CODE, --mode hang|malformed|empty or --latency-ms N")
        admin.set_fault(model, **given)
        message = f"set the fault of {model}; clear it with `rollout sandbox fault --clear {model}`"
    faults = admin.faults()
    data = {"dir": str(root), "simulator_url": state.simulator_url, "faults": faults}
    messages = [message] if message else []
    if not faults:
        messages.append("no fault in force")
    return Result("sandbox fault", data, messages)
