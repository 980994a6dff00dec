"""Human renderings of each command's Result (rich). JSON needs none."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rollout_cli.cli.render import esc, human, status_text
from rollout_cli.core.playbooks import format_duration
from rollout_cli.core.result import Result
from rollout_cli.playbook.levels import RollbackPayload
from rollout_cli.rollout.status import HistoryPayload, StatusPayload

if TYPE_CHECKING:  # rich itself is imported lazily, where it is used (start-up time)
    from rich.table import Table


def _table(*columns: str, title: str | None = None) -> Table:
    from rich.table import Table

    table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False)
    for column in columns:
        table.add_column(column)
    return table


@human(StatusPayload)
def status_view(out: Any, result: Result[StatusPayload]) -> None:
    d = result.data
    stage = d["stage"]
    out.print(f"[bold]stage[/] {stage['percentage']}% through the gateway")
    out.print(
        f"  env file   {esc(d['env_file'])}: LITELLM_ENABLED={_v(stage['env_enabled'])} "
        f"LITELLM_ROLLOUT_PERCENTAGE={_v(stage['env_percentage'])}"
    )
    if d["flags_file"]:
        out.print(
            f"  flags file {esc(d['flags_file'])}: {_v(stage['flags_percentage'])}% "
            f"(enabled={_v(stage['flags_enabled'])})"
        )
    if stage["drift"]:
        out.print(f"[bold red]DRIFT[/] {esc(stage['drift'])}; set both with `rollout rollback --level 1` or fix by hand")
    last = d["last_change"]
    if last:
        out.print(f"  since {last['time']} by {esc(last['actor'])} ({esc(last['command'])}"
                  + (f": {esc(last['reason'])}" if last.get("reason") else "") + ")")
    else:
        out.print("  no change recorded in the audit trail yet")
    box = d["container"]
    if box:
        if box.get("error"):
            out.print(f"  container {esc(box['name'])}: unknown ({esc(box['error'])})")
        else:
            out.print(f"  container {esc(box['name'])}: {esc(box['status'])}"
                      + (f", health {esc(box['health'])}" if box.get("health") else ""))


def _v(value: object) -> str:
    if value is None:
        return "unset"
    return str(value).lower() if isinstance(value, bool) else str(value)


@human(HistoryPayload)
def history_view(out: Any, result: Result[HistoryPayload]) -> None:
    records = result.payload.records
    if not records:
        out.print(f"no history yet in {esc(result.payload.path)}")
        return
    table = _table("time", "actor", "command", "result", "changes", "reason")
    for r in records:
        changes = ", ".join(
            f"{c.get('key') or c.get('container') or c.get('action')}: {c.get('before')} -> {c.get('after')}"
            if "key" in c or "container" in c else f"{c.get('action')} {str(c.get('after', ''))[:10]}"
            for c in r.get("changes", [])
        )
        table.add_row(
            esc(r.get("time", "")), esc(r.get("actor", "")), esc(r.get("command", "")),
            status_text(r.get("result", "")), esc(changes or "-"), esc(r.get("reason") or ""),
        )
    out.print(table)


@human(RollbackPayload)
def rollback_view(out: Any, result: Result[RollbackPayload]) -> None:
    d = result.data
    verb = {"run": "rollback", "dry-run": "dry run of rollback", "drill": "drill of rollback"}[d["mode"]]
    for level in d["levels"]:
        title = f"level {level['level']}: {level['name']} (budget {format_duration(level['budget_s'])})"
        table = _table("#", "step", "status", "time", "detail", title=title)
        for step in level["steps"]:
            table.add_row(
                str(step["index"]), esc(step["type"]), status_text(step["status"]),
                format_duration(step["duration_s"]) if d["mode"] != "dry-run" else "",
                esc(step["detail"]),
            )
        out.print(table)
        if d["mode"] == "dry-run":
            for step in level["steps"]:
                if step.get("diff"):
                    out.print(esc(step["diff"].rstrip("\n")), style="cyan")
        if d["mode"] == "drill":
            for step in level["steps"]:
                for check in step.get("checks", []):
                    mark = "[green]pass[/]" if check["ok"] else "[bold red]fail[/]"
                    out.print(f"  {mark} {esc(check['name'])}: {esc(check['detail'])}")
        if d["mode"] == "run":
            verdict = "within" if level["within_budget"] else "[bold red]OVER[/]"
            out.print(f"  took {format_duration(level['duration_s'])}, {verdict} its "
                      f"{format_duration(level['budget_s'])} budget")
        out.print()
    ok = int(result.exit_code) == 0
    head = "[green]done[/]" if ok else f"[bold red]failed (exit {int(result.exit_code)})[/]"
    out.print(f"{verb} to level {d['level']}: {head} in {format_duration(d['duration_s'])} "
              f"(budget {format_duration(d['budget_s'])})")
    if d["mode"] == "run":
        if d["took_effect"]:
            out.print("took effect:")
            for line in d["took_effect"]:
                out.print(f"  - {esc(line)}")
        else:
            out.print("nothing needed changing: already rolled back to this level")
