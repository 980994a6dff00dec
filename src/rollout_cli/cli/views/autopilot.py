"""`rollout autopilot`: one plain line per tick; `status`, `pause`, `resume`, `approve` as plain text."""

from __future__ import annotations

from typing import Any

from rollout_cli.autopilot.controls import AutopilotStatus, ControlPayload
from rollout_cli.cli.render import TextOut, plain, text
from rollout_cli.core.playbooks import format_duration
from rollout_cli.core.result import Result


def tick_line(tick: dict[str, Any]) -> str:
    """`2026-12-03T10:00:00Z 50% soak (12.0 s left)`, `... 50% breach 1/2: primary ...`."""
    head = f"{tick['time']} {tick['stage']}% {tick['action']}"
    if tick["action"] == "soak" and tick["soak_left_s"] is not None:
        head += f" ({format_duration(tick['soak_left_s'])} left)"
    if tick["action"] in ("breach", "rollback"):
        head += f" {tick['consecutive_failures']}/{tick['failure_threshold']}"
    if tick.get("advance"):
        head += f" -> {tick['next']}%"
    if tick.get("rollback"):
        head += f" (level {tick['rollback']['level']}, took {tick['rollback']['duration_s']:.1f} s)"
    parts = [head, *tick["reasons"]]
    if tick.get("recovered"):
        parts.append(tick["recovered"])
    return ": ".join(parts[:2]) + ("; " + "; ".join(parts[2:]) if len(parts) > 2 else "")


@text(AutopilotStatus)
def _status(out: TextOut, result: Result[Any]) -> None:
    d = result.data
    soak = "n/a" if d["stage"] == 0 else ("unknown" if d["soak_left_s"] is None else format_duration(d["soak_left_s"]))
    running = d["running"]
    rows = [
        ["stage", f"{d['stage']}%" + (f" (next {d['next']}%)" if d["next"] is not None else " (complete)")],
        ["running", f"pid {running['pid']} on {running['host']}" + ("" if running["alive"] else " (dead)")
         if running else "no"],
        ["paused", f"by {d['paused']['actor']} at {d['paused']['time']}: {d['paused']['reason'] or d['paused']['command']}"
         if d["paused"] else "no"],
        ["soak left", soak],
        ["last tick", f"{d['last_tick']['time']} {d['last_tick']['action']}" if d["last_tick"] else "none yet"],
        ["consecutive failures", f"{d['consecutive_failures']} of {d['failure_threshold']}"],
        ["next action", d["next_action"]],
        ["pending approval", f"advancing to {d['pending_approval']['to']}%" if d["pending_approval"] else "none"],
        ["failed deliveries", str(len(d["failed_deliveries"]))],
    ]
    out.table(["", ""], rows)
    for failure in d["failed_deliveries"][-5:]:  # the newest few; `--json` has them all
        out.print(plain(f"  delivery failed: {failure.get('time')} {failure.get('event')} ({failure.get('severity')}) "
                        f"to {failure.get('sink')}: {failure.get('error')}"))


@text(ControlPayload)
def _control(out: TextOut, result: Result[Any]) -> None:
    record = result.data["record"]
    out.print(plain(f"recorded `{record['command']}` by {record['actor']} at {record['time']}: {record['reason']}"))
