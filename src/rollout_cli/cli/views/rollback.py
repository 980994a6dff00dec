"""Human rendering of `rollout rollback`: each level's steps, time against budget, what took effect.

Plain text (`@text`, no rich): a level-1 rollback is the command an operator needs
fastest, and loading rich would cost more than the rollback itself.
"""

from __future__ import annotations

from rollout_cli.cli.render import TextOut, plain, text
from rollout_cli.core.playbooks import format_duration
from rollout_cli.core.result import Result
from rollout_cli.playbook.levels import RollbackPayload


@text(RollbackPayload)
def rollback_view(out: TextOut, result: Result[RollbackPayload]) -> None:
    d = result.data
    verb = {"run": "rollback", "dry-run": "dry run of rollback", "drill": "drill of rollback"}[d["mode"]]
    for level in d["levels"]:
        title = f"level {level['level']}: {level['name']} (budget {format_duration(level['budget_s'])})"
        rows = [
            [str(step["index"]), step["type"], step["status"],
             format_duration(step["duration_s"]) if d["mode"] != "dry-run" else "", step["detail"]]
            for step in level["steps"]
        ]
        out.table(["#", "step", "status", "time", "detail"], rows, title=title, status_column=2)
        if d["mode"] == "dry-run":
            for step in level["steps"]:
                for line in (step.get("diff") or "").splitlines():  # a diff is lines: each one made safe alone
                    out.print(out.style(plain(line), "cyan"))
        if d["mode"] == "drill":
            for step in level["steps"]:
                for check in step.get("checks", []):
                    mark = out.status("pass" if check["ok"] else "fail")
                    out.print(f"  {mark} {plain(check['name'])}: {plain(check['detail'])}")
        if d["mode"] == "run":
            verdict = "within" if level["within_budget"] else out.style("OVER", "bold red")
            out.print(f"  took {format_duration(level['duration_s'])}, {verdict} its "
                      f"{format_duration(level['budget_s'])} budget")
        out.print()
    ok = int(result.exit_code) == 0
    head = out.style("done", "green") if ok else out.style(f"failed (exit {int(result.exit_code)})", "bold red")
    out.print(f"{verb} to level {d['level']}: {head} in {format_duration(d['duration_s'])} "
              f"(budget {format_duration(d['budget_s'])})")
    if d["mode"] == "run":
        if d["took_effect"]:
            out.print("took effect:")
            for line in d["took_effect"]:
                out.print(f"  - {plain(line)}")
        elif ok:
            out.print("nothing needed changing: already rolled back to this level")
        else:
            out.print("nothing took effect")
