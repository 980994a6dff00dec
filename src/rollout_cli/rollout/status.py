"""`rollout status`: the stage now, drift between env and flags, who moved it last."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rollout_cli.core.audit import AuditLog, unfinished_operation
from rollout_cli.core.result import Result
from rollout_cli.core.stage import Stage, read_stage
from rollout_cli.core.stagemetrics import refresh_stage_metrics
from rollout_cli.core.workspace import PERCENTAGE_KEY, Workspace
from rollout_cli.errors import ExitCode
from rollout_cli.gateway.control import count_replicas, replica_evidence
from rollout_cli.gateway.runtime import runtime_summary
from rollout_cli.io.lock import read_holder
from rollout_cli.io.process import pid_exists
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
    unfinished: dict[str, Any] | None = None  # time, actor, command, reason, running: started, never finished
    observed: dict[str, Any] | None = None  # the app's traffic share through the gateway (app.metrics_url)
    replicas: dict[str, Any] | None = None  # a swarm service's replicas, each probed (None: container or process)

    def to_json(self) -> dict[str, Any]:
        return {
            "workspace": self.workspace,
            "env_file": self.env_file,
            "flags_file": self.flags_file,
            "stage": self.stage.to_json(),
            "last_change": self.last_change,
            "container": self.container,
            "unfinished": self.unfinished,
            "observed": self.observed,
            "replicas": self.replicas,
        }


def _replicas(ws: Workspace) -> dict[str, Any] | None:
    """Each replica of a swarm service probed, and whether all it desires are ready (reported, not judged here)."""
    found = replica_evidence(ws)
    if found is None:
        return None
    count = count_replicas(found, None)
    return {**found, "verdict": count.status, "value": count.value, "reason": count.reason}


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
    unfinished = _unfinished(ws, audit)
    if unfinished is not None:
        last = unfinished  # whatever the files say now, that operation may have written it, not an older one
    payload = StatusPayload(
        workspace=str(ws.root),
        env_file=str(ws.app.env_file),
        flags_file=str(ws.app.flags_file) if ws.app.flags_file else None,
        stage=stage,
        last_change={k: last.get(k) for k in ("time", "actor", "command", "reason")} if last else None,
        container=runtime_summary(ws),
        replicas=_replicas(ws),
        unfinished=unfinished,
        # only traffic since the stage last moved counts: what the app sent before a rollback is no alarm after it
        observed=observe_share(ws, since=_timestamp(last["time"]) if last else None),
    )
    interrupted = unfinished is not None and not unfinished["running"]
    stray = _stray_traffic(stage, payload.observed)
    code = ExitCode.FAILED if stage.drift or interrupted or stray else ExitCode.OK
    unwritten = refresh_stage_metrics(ws, payload.observed)
    messages = [*audit.skipped_note(), *filter(None, [stray, unwritten])]
    return Result("status", payload, messages, exit_code=code)


def _stray_traffic(stage: Stage, observed: dict[str, Any] | None) -> str | None:
    """Why the observed share contradicts a configured 0 %, or None.

    At 0 % no app request may reach the gateway; one that does means the app
    still reads an older stage, which is what a rollback exists to end.
    """
    share = (observed or {}).get("share")
    if stage.percentage != 0 or not isinstance(share, (int, float)) or not share > 0:
        return None
    return (f"the app still sends {share}% of its requests through the gateway while the files say 0%: it reads an "
            "older copy of its files (a container paused or restarted across the change?); reload it (app.reload "
            "in rollout.yaml) or restart it, then check again")


def _timestamp(iso: Any) -> float | None:
    try:
        return datetime.fromisoformat(str(iso).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _unfinished(ws: Workspace, audit: AuditLog) -> dict[str, Any] | None:
    """The operation that started and recorded no end, and whether its process still holds the lock."""
    record = unfinished_operation(audit)
    if record is None:
        return None
    holder = read_holder(ws.state_dir)
    running = holder is not None and holder.pid == record.get("pid") and pid_exists(holder.pid)
    return {**{k: record.get(k) for k in ("time", "actor", "command", "reason")}, "running": running}


def history(ws: Workspace, limit: int | None) -> Result[HistoryPayload]:
    """One record per operation: a "started" record is left out once its "finished" one exists."""
    audit = AuditLog(ws.state_dir)
    records = audit.records()
    ended = {r.get("op") for r in records if r.get("phase") == "finished"}
    shown = [r for r in records if not (r.get("phase") == "started" and r.get("op") in ended)]
    return Result("history", HistoryPayload(str(audit.path), shown[-limit:] if limit else shown), audit.skipped_note())
