"""`rollout status`: the stage now, drift between env and flags, who moved it last."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rollout_cli.core.audit import AuditLog
from rollout_cli.core.result import Result
from rollout_cli.core.stage import Stage, read_stage
from rollout_cli.core.workspace import PERCENTAGE_KEY, Workspace
from rollout_cli.errors import ExitCode
from rollout_cli.gateway.runtime import runtime_summary
from rollout_cli.playbook.traffic import observe_share


@dataclass(frozen=True)
class StatusPayload:
    """`rollout status`: the stage from both files, who moved it last, the gateway's container."""

    workspace: str
    env_file: str
    flags_file: str | None
    stage: Stage
    last_change: dict[str, Any] | None  # time, actor, command, reason of the newest audit record
    container: dict[str, Any] | None
    observed: dict[str, Any] | None = None  # the app's traffic share through the gateway (app.metrics_url)

    def to_json(self) -> dict[str, Any]:
        return {
            "workspace": self.workspace,
            "env_file": self.env_file,
            "flags_file": self.flags_file,
            "stage": self.stage.to_json(),
            "last_change": self.last_change,
            "container": self.container,
            "observed": self.observed,
        }


@dataclass(frozen=True)
class HistoryPayload:
    """`rollout history`: the audit trail's records, oldest first."""

    path: str
    records: list[dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "records": self.records}


def status(ws: Workspace) -> Result[StatusPayload]:
    stage = read_stage(ws)
    audit = AuditLog(ws.state_dir)
    last = audit.last_change(PERCENTAGE_KEY) or audit.last_change(ws.app.flag_key)
    payload = StatusPayload(
        workspace=str(ws.root),
        env_file=str(ws.app.env_file),
        flags_file=str(ws.app.flags_file) if ws.app.flags_file else None,
        stage=stage,
        last_change={k: last.get(k) for k in ("time", "actor", "command", "reason")} if last else None,
        container=runtime_summary(ws),
        observed=observe_share(ws),
    )
    code = ExitCode.FAILED if stage.drift else ExitCode.OK
    return Result("status", payload, exit_code=code)


def history(ws: Workspace, limit: int | None) -> Result[HistoryPayload]:
    audit = AuditLog(ws.state_dir)
    return Result("history", HistoryPayload(str(audit.path), audit.records(limit)))
