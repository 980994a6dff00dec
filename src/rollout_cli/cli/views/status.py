"""Human renderings of `rollout status` and `rollout history` (rich)."""

from __future__ import annotations

from typing import Any

from rollout_cli.cli.render import RUNTIME_NOUN, esc, human, new_table, status_text
from rollout_cli.core.result import Result
from rollout_cli.core.stage import format_setting
from rollout_cli.gateway.control import replica_text
from rollout_cli.rollout.status import HistoryPayload, StatusPayload


@human(StatusPayload)
def status_view(out: Any, result: Result[StatusPayload]) -> None:
    d = result.data
    stage = d["stage"]
    out.print(f"[bold]stage[/] {esc(stage['percentage'])}% through the gateway")
    if d.get("observed"):
        out.print(f"  traffic    configured {esc(stage['percentage'])}%, {esc(d['observed']['text'])}")
    out.print(
        f"  env file   {esc(d['env_file'])}: LITELLM_ENABLED={esc(format_setting(stage['env_enabled']))} "
        f"LITELLM_ROLLOUT_PERCENTAGE={esc(format_setting(stage['env_percentage']))}"
    )
    if d["flags_file"]:
        out.print(
            f"  flags file {esc(d['flags_file'])}: {esc(format_setting(stage['flags_percentage']))}% "
            f"(enabled={esc(format_setting(stage['flags_enabled']))})"
        )
    if stage["drift"]:
        out.print(f"[bold red]DRIFT[/] {esc(stage['drift'])}; set both with `rollout rollback --level 1` or fix by hand")
    last = d["last_change"]
    undone = d.get("unfinished")
    if undone and undone["running"]:
        out.print(f"  in progress: `{esc(undone['command'])}` started {esc(undone['time'])} by {esc(undone['actor'])}")
    elif undone:
        out.print(f"[bold red]UNFINISHED[/] `{esc(undone['command'])}` started {esc(undone['time'])} by "
                  f"{esc(undone['actor'])} and recorded no end (killed or crashed part-way): the files may have "
                  "changed without a record; check them, then run it again to finish it")
    if last:
        out.print(f"  since {esc(last['time'])} by {esc(last['actor'])} ({esc(last['command'])}"
                  + (f": {esc(last['reason'])}" if last.get("reason") else "") + ")")
    else:
        out.print("  no change recorded in the audit trail yet")
    box = d["container"]
    if box:
        noun = RUNTIME_NOUN.get(str(box.get("runtime")), "container")
        if box.get("error"):
            out.print(f"  {noun} {esc(box['name'])}: unknown ({esc(box['error'])})")
        else:
            out.print(f"  {noun} {esc(box['name'])}: {esc(box['status'])}"
                      + (f", health {esc(box['health'])}" if box.get("health") else ""))
    replicas = d.get("replicas")
    if replicas:
        out.print(f"  replicas: {esc(replicas['reason'])}")
        for replica in replicas["replicas"]:
            out.print(f"    {esc(replica_text(replica))}")


@human(HistoryPayload)
def history_view(out: Any, result: Result[HistoryPayload]) -> None:
    records = result.payload.records
    if not records:
        out.print(f"no history yet in {esc(result.payload.path)}")
        return
    table = new_table("time", "actor", "command", "result", "changes", "reason")
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
