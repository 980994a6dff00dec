"""Human rendering of `rollout rollback` (rich): each level's steps, time against budget, what took effect."""

from __future__ import annotations

from typing import Any

from rollout_cli.cli.render import esc, human, new_table, status_text
from rollout_cli.core.playbooks import format_duration
from rollout_cli.core.result import Result
from rollout_cli.playbook.levels import RollbackPayload


@human(RollbackPayload)
def rollback_view(out: Any, result: Result[RollbackPayload]) -> None:
    d = result.data
    verb = {"run": "rollback", "dry-run": "dry run of rollback", "drill": "drill of rollback"}[d["mode"]]
    for level in d["levels"]:
        title = f"level {level['level']}: {level['name']} (budget {format_duration(level['budget_s'])})"
        table = new_table("#", "step", "status", "time", "detail", title=title)
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
        elif ok:
            out.print("nothing needed changing: already rolled back to this level")
        else:
            out.print("nothing took effect")
