"""The stage as Prometheus metrics: `.rollout/rollout.prom`, for node_exporter's textfile collector.

`rollout` is a command, not a server, so it leaves its state where node_exporter
(`--collector.textfile.directory=WORKSPACE/.rollout`) serves it to Prometheus.
Everything but the observed share is read afresh from the files on disk (the
stage from the env and flags files, the rest from the audit trail), so any
command rebuilds the same file. The observed share is known only to the command
that measured it (`status`); later writes carry it with its time, until the
stage moves after it.

The text is rendered here rather than with prometheus_client: its writer
(`prometheus_client.exposition`) loads http.server, wsgiref and ssl, which a
level-1 rollback must not wait for. tests/test_stage_metrics.py parses the file
with prometheus_client's parser, and the sandbox's node_exporter serves it.

The file is written atomically (temp file + rename in `.rollout/`; the temp
name does not end in `.prom`, so the collector never reads half a file).
"""

from __future__ import annotations

import re
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from rollout_cli.core.audit import AuditLog, stage_changes
from rollout_cli.core.stage import read_stage
from rollout_cli.core.workspace import Workspace
from rollout_cli.errors import RolloutError
from rollout_cli.io.atomic import atomic_write_text
from rollout_cli.io.lock import WorkspaceLock

FILE_NAME = "rollout.prom"
VERDICTS = ("GO", "HOLD", "NO-GO")
LEVELS = (1, 2, 3, 4)
OBSERVED = "rollout_traffic_observed_ratio"
OBSERVED_AT = "rollout_traffic_observed_timestamp_seconds"

# name -> (type, help): docs/API.md, "The stage as metrics", lists the same
FAMILIES = {
    "rollout_stage_configured_ratio": ("gauge", "Share of the app's traffic the env and flags files send through "
                                       "the gateway (0..1; the larger of the two when they disagree)."),
    "rollout_stage_drift": ("gauge", "1 when the env file and the flags file disagree on the stage, else 0."),
    OBSERVED: ("gauge", "Share of the app's requests seen going through the gateway (0..1), as rollout status "
               "last measured it since the stage last moved."),
    OBSERVED_AT: ("gauge", "Unix time of that measurement."),
    "rollout_last_verdict": ("gauge", "1 for the verdict of the last recorded advance decision, 0 for the others."),
    "rollout_last_decision_timestamp_seconds": ("gauge", "Unix time of the last recorded decision: an advance "
                                                "(GO, HOLD or NO-GO) or a rollback run."),
    "rollout_rollbacks_total": ("counter", "Rollback runs recorded in the audit trail, by the level asked for "
                                "(drills not counted)."),
}


def metrics_path(state_dir: Path) -> Path:
    return state_dir / FILE_NAME


def write_stage_metrics(ws: Workspace, observed: dict[str, Any] | None = None) -> str | None:
    """Rewrite `.rollout/rollout.prom` from the files now; call under the workspace lock.

    `observed`: `rollout status`'s measurement (share in %, None when unknown).
    Returns why the file could not be written (a bad env file, a read-only
    folder), or None: the metrics never fail the command that refreshes them.
    """
    try:
        atomic_write_text(metrics_path(ws.state_dir), render(ws, observed))
    except (RolloutError, OSError) as exc:
        return f"{metrics_path(ws.state_dir)} not refreshed: {exc}"
    return None


def refresh_stage_metrics(ws: Workspace, observed: dict[str, Any] | None = None) -> str | None:
    """`write_stage_metrics` for a command that holds no lock: skipped while another rollout holds it (that one
    refreshes the file when it is done, or the next command does), so a read-only command never waits."""
    if not ws.state_dir.is_dir():
        return None  # nothing recorded yet, and a read-only command creates no state folder
    try:
        with WorkspaceLock(ws.state_dir, command="rollout (refreshing rollout.prom)", timeout=0):
            return write_stage_metrics(ws, observed)
    except RolloutError:
        return None


def render(ws: Workspace, observed: dict[str, Any] | None) -> str:
    stage = read_stage(ws)
    audit = AuditLog(ws.state_dir)
    records = audit.records()
    values: dict[str, list[tuple[dict[str, str], float]]] = {
        "rollout_stage_configured_ratio": [({}, stage.percentage / 100)],
        "rollout_stage_drift": [({}, 1.0 if stage.drift else 0.0)],
    }
    moved = max((c.timestamp for c in stage_changes(audit)), default=0.0)
    share = _observation(observed) or _carried(metrics_path(ws.state_dir))
    if share is not None and share[1] >= moved + 1:  # the trail's times are whole seconds, rounded down
        values[OBSERVED], values[OBSERVED_AT] = [({}, share[0])], [({}, share[1])]
    decisions = [r for r in records if _is_decision(r)]
    verdicts = [r["decision"].get("verdict") for r in decisions if isinstance(r.get("decision"), dict)]
    values["rollout_last_verdict"] = [({"verdict": v}, 1.0 if verdicts and verdicts[-1] == v else 0.0)
                                      for v in VERDICTS]
    if decisions:
        values["rollout_last_decision_timestamp_seconds"] = [({}, _unix(decisions[-1]["time"]))]
    levels = [_rollback_level(r) for r in decisions]
    values["rollout_rollbacks_total"] = [({"level": str(n)}, float(levels.count(n))) for n in LEVELS]
    return exposition(values)


def exposition(values: dict[str, list[tuple[dict[str, str], float]]]) -> str:
    """Prometheus text format 0.0.4: HELP and TYPE for each family in FAMILIES' order, then its samples."""
    lines: list[str] = []
    for name, (kind, text) in FAMILIES.items():
        if name not in values:
            continue
        lines += [f"# HELP {name} {text}", f"# TYPE {name} {kind}"]
        lines += [f"{name}{_labels(labels)} {_number(value)}" for labels, value in values[name]]
    return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    """`0`, `1`, `0.1`, `1796291564`: Go's ParseFloat reads Python's shortest repr."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _labels(labels: dict[str, str]) -> str:
    # label values here are fixed words (verdicts, level numbers): nothing to escape
    return "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else ""


def _is_decision(record: dict[str, Any]) -> bool:
    """An advance that judged (written or not) or a rollback run: the finished record, or the only one."""
    command = str(record.get("command"))
    if record.get("phase") == "started" or command.endswith("--drill"):
        return False
    return command == "advance" or command.startswith("rollback --level ")


def _rollback_level(record: dict[str, Any]) -> int | None:
    found = re.fullmatch(r"rollback --level (\d+)", str(record.get("command")))
    return int(found.group(1)) if found else None


def _unix(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _observation(observed: dict[str, Any] | None) -> tuple[float, float] | None:
    """(share 0..1, Unix time) of a measurement made now, or None when there is no number."""
    share = (observed or {}).get("share")
    if isinstance(share, bool) or not isinstance(share, (int, float)):
        return None
    return share / 100, time.time()


def _carried(path: Path) -> tuple[float, float] | None:
    """The observation an earlier write put in the file (ours: `name value` lines), or None."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    found: dict[str, float] = {}
    for line in lines:
        name, _, value = line.partition(" ")
        if name in (OBSERVED, OBSERVED_AT):
            try:
                found[name] = float(value)
            except ValueError:
                return None
    return (found[OBSERVED], found[OBSERVED_AT]) if len(found) == 2 else None
