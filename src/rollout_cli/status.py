"""`rollout status`: the stage now, drift between env and flags, who moved it last."""

from __future__ import annotations

from typing import Any

from .audit import AuditLog
from .errors import ExitCode, RolloutError
from .result import Result
from .stage import read_stage
from .workspace import PERCENTAGE_KEY, Workspace


def container_summary(ws: Workspace) -> dict[str, Any] | None:
    """The gateway's container (or sandbox process) state, or why it cannot be read; None when none is named."""
    from .sandbox.state import load_state

    if not ws.gateway.container and load_state(ws.root) is None:
        return None
    from .gateway_runtime import runtime_for

    try:
        state = runtime_for(ws).state()
    except RolloutError as exc:
        return {"name": ws.gateway.container, "status": "unknown", "error": str(exc)}
    return state.as_dict()


def status(ws: Workspace) -> Result:
    stage = read_stage(ws)
    last = AuditLog(ws.state_dir).last_change(PERCENTAGE_KEY) or AuditLog(ws.state_dir).last_change(
        ws.app.flag_key
    )
    data: dict[str, Any] = {
        "workspace": str(ws.root),
        "env_file": str(ws.app.env_file),
        "flags_file": str(ws.app.flags_file) if ws.app.flags_file else None,
        "stage": stage.to_json(),
        "last_change": (
            {k: last.get(k) for k in ("time", "actor", "command", "reason")} if last else None
        ),
        "container": container_summary(ws),
    }
    code = ExitCode.FAILED if stage.drift else ExitCode.OK
    return Result("status", data, exit_code=code)


def history(ws: Workspace, limit: int | None) -> Result:
    records = AuditLog(ws.state_dir).records(limit)
    return Result("history", {"path": str(AuditLog(ws.state_dir).path), "records": records})
