"""`rollout report`: the go/no-go report for now. Reads everything, changes nothing."""

from __future__ import annotations

import json
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollout_cli.checks.markdown import md
from rollout_cli.core.audit import AuditLog, stage_changes
from rollout_cli.core.playbooks import format_duration
from rollout_cli.core.result import Result
from rollout_cli.core.stage import Stage, read_stage
from rollout_cli.core.stagemetrics import refresh_stage_metrics
from rollout_cli.core.workspace import Workspace
from rollout_cli.errors import InputError, RolloutError
from rollout_cli.io.atomic import atomic_write_text
from rollout_cli.io.textfile import read_text
from rollout_cli.playbook import engine
from rollout_cli.playbook.context import StepContext
from rollout_cli.playbook.levels import LEVELS, load_levels
from rollout_cli.rollout.evaluate import evaluate
from rollout_cli.rollout.judge import Decision, judge
from rollout_cli.rollout.plan import StagePlan, load_plan
from rollout_cli.rollout.snapshot import Snapshot


def stage_history(ws: Workspace) -> list[dict[str, Any]]:
    """Every recorded move of the rollout percentage, oldest first."""
    return [change.to_json() for change in stage_changes(AuditLog(ws.state_dir))]


def rollback_readiness(ws: Workspace) -> list[dict[str, Any]]:
    """Each level's drill (every precondition checked, nothing changed) and budget."""
    try:
        plan = load_levels(ws, max(LEVELS))
    except RolloutError as exc:
        return [{"level": n, "ready": False, "budget_s": None, "problems": [str(exc)]} for n in LEVELS]
    reports = engine.drill(plan, StepContext(ws))
    out = []
    for level in reports:
        problems = [c["detail"] for s in level.steps for c in s.checks if not c["ok"]]
        out.append({"level": level.level, "name": level.name, "ready": not problems,
                    "budget_s": level.budget_s, "problems": problems})
    return out


@dataclass(frozen=True)
class ReportPayload:
    """`rollout report`: the decision for now, the stage history and each level's rollback readiness."""

    workspace: str
    stage: Stage
    plan: dict[str, Any]  # stages, soak_s of the current stage
    decision: Decision
    history: list[dict[str, Any]]
    rollback_readiness: list[dict[str, Any]]

    replayed: str | None = None  # the snapshot file judged again (`--replay`), else None: evidence gathered now

    def to_json(self) -> dict[str, Any]:
        snapshot = self.decision.snapshot
        return {
            "workspace": self.workspace,
            "stage": self.stage.to_json(),
            "plan": self.plan,
            **self.decision.to_json(),
            "history": self.history,
            "rollback_readiness": self.rollback_readiness,
            "replayed": self.replayed,
            "snapshot": snapshot.to_json() if snapshot else None,
        }


MAX_SNAPSHOT_BYTES = 8 * 1024 * 1024


def report(
    ws: Workspace, markdown: Path | None = None, replay: Path | None = None, html: Path | None = None,
) -> Result[ReportPayload]:
    """The decision for now; with `replay`, the decision on a recorded snapshot (no check sent, no drill run).

    `html`: also the page with charts (rollout/html_report.py), over the whole rollout and the soak window.
    """
    plan = load_plan(ws.playbooks)
    if replay is not None:
        try:
            text = read_text(replay, limit=MAX_SNAPSHOT_BYTES, label="--replay ")
        except FileNotFoundError:
            raise InputError(f"--replay {replay}: no such file; pass a file `rollout report --json` wrote") from None
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise InputError(f"--replay {replay}: not JSON ({exc}); pass a file `rollout report --json` wrote") from None
        snap = Snapshot.from_json(raw)
        decision = judge(snap, plan)
        stage, history, readiness = snap.stage, [], []
        charts = None
    else:
        stage = read_stage(ws)
        charts = draw_charts(ws, plan, stage) if html is not None else None
        decision = evaluate(ws, plan, stage)
        history, readiness = stage_history(ws), rollback_readiness(ws)
        refresh_stage_metrics(ws)
    payload = ReportPayload(
        workspace=str(ws.root),
        stage=stage,
        plan={"stages": list(plan.stages), "soak_s": plan.soak_for(stage.percentage)},
        decision=decision,
        history=history,
        rollback_readiness=readiness,
        replayed=str(replay) if replay is not None else None,
    )
    messages = [f"replayed the evidence of {payload.to_json()['snapshot']['time']} from {replay}"] if replay else []
    if markdown is not None:
        atomic_write_text(markdown, to_markdown(payload.to_json()))
        messages.append(f"wrote {markdown}")
    if html is not None:
        atomic_write_text(html, html_page(payload, charts))
        messages.append(f"wrote {html}")
    return Result("report", payload, messages, decision.verdict.exit_code)


def draw_charts(ws: Workspace, plan: StagePlan, stage: Stage) -> Future[tuple[dict[str, Any], str]]:
    """The timeline and its charts (rollout/html_report.py), in a thread of their own.

    Drawing is CPU work and the checks mostly wait for the gateway: run side by
    side, `report --html` takes about as long as `report`.
    """
    def draw() -> tuple[dict[str, Any], str]:
        from rollout_cli.rollout.html_report import charts_section  # lazy: matplotlib, only for --html
        from rollout_cli.rollout.timeline import gather_timeline

        timeline = gather_timeline(ws, plan, stage)
        return timeline, charts_section(timeline)

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="charts")
    future = pool.submit(draw)
    pool.shutdown(wait=False)  # the thread ends with its one job; the caller waits on the future
    return future


def html_page(payload: ReportPayload, charts: Future[tuple[dict[str, Any], str]] | None) -> str:
    """The report as one self-contained HTML page; a replayed snapshot has no series, so no charts."""
    from rollout_cli.rollout.html_report import to_html  # lazy: matplotlib, only for --html

    timeline, section = charts.result() if charts is not None else (None, None)
    return to_html(payload.to_json(), timeline, section)


def to_markdown(data: dict[str, Any]) -> str:
    """The report as Markdown, for a PR comment or a change ticket.

    Every value passes through md(): reasons, model details and readiness problems
    carry the operator's `--reason`, file contents and gateway answers.
    """
    nxt = f"{md(data['next'])}%" if data["next"] is not None else "complete"
    lines = [
        f"## rollout report: **{md(data['verdict'])}** ({md(data['current'])}% -> {nxt})",
        "",
    ]
    if data["reasons"]:
        lines += [f"- {md(r)}" for r in data["reasons"]] + [""]
    if data["warnings"]:
        lines += ["**Warnings**", ""] + [f"- {md(w)}" for w in data["warnings"]] + [""]
    lines += ["### Models", "", "| model | role | health | detail | latency | smoke | verdict |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    for r in data["matrix"]:
        latency = f"{r['latency_ms']:.0f} ms" if r["latency_ms"] is not None else "-"
        lines.append(_row(r["alias"], r["role"], r["health"], r["detail"], latency, r["smoke"] or "-", r["verdict"]))
    lines += ["", "### Gates", "", "| gate | status | value | threshold | source |", "| --- | --- | --- | --- | --- |"]
    for g in data["gates"]:
        lines.append(_row(g["name"], g["status"], g["value"], g["threshold"], g["source"]))
    if data.get("error_rate_gate"):
        lines += ["", f"Error rate decided by: {md(data['error_rate_gate'])}"]
    if data.get("shared_failures"):
        lines += ["", "Shared with the direct path (HOLD, no rollback): " + md(", ".join(data["shared_failures"]))]
    lines += ["", "### Stage history", ""]
    if data["history"]:
        lines += [f"- {md(h['time'])} {md(h['from'])}% -> {md(h['to'])}% by {md(h['actor'])} ({md(h['command'])})"
                  + (f": {md(h['reason'])}" if h.get("reason") else "") for h in data["history"]]
    else:
        lines.append("- no stage change recorded yet")
    lines += ["", "### Rollback readiness", "", "| level | ready | budget | problems |", "| --- | --- | --- | --- |"]
    for r in data["rollback_readiness"]:
        budget = format_duration(r["budget_s"]) if r["budget_s"] else "-"
        lines.append(_row(r["level"], "yes" if r["ready"] else "no", budget, "; ".join(r["problems"]) or "-"))
    return "\n".join(lines) + "\n"


def _row(*cells: object) -> str:
    return "| " + " | ".join(md(cell) for cell in cells) + " |"
