"""Human renderings of `rollout models` (the catalog watchdog, `--replace`) and `rollout quota` (rich)."""

from __future__ import annotations

from rich.console import Console

from rollout_cli.checks.models import ModelsPayload, ReplacePayload
from rollout_cli.cli.render import esc, human, new_table, status_text
from rollout_cli.core.quota import QuotaPayload
from rollout_cli.core.result import Result


@human(ModelsPayload)
def render_models(out: Console, result: Result[ModelsPayload]) -> None:
    d = result.data
    wanted = ", ".join(d["requires"]) or "nothing (app.requires is empty)"
    out.print(f"[bold]catalog[/] {esc(', '.join(c['url'] for c in d['catalogs']) or '-')}; app requires {esc(wanted)}")
    table = new_table("model", "role", "status", "OpenRouter id", "price (prompt/completion)", "context",
                      "missing", "reason")
    for m in d["models"]:
        price = "-" if not m["pricing"] else f"{m['pricing'].get('prompt', '?')}/{m['pricing'].get('completion', '?')}"
        context = f"{m['context_length']:,}" if m["context_length"] else "-"
        table.add_row(esc(m["alias"]), esc(m["role"]), status_text(m["status"]), esc(m["model"]), esc(price),
                      context, esc(", ".join(m["missing"]) or "-"), esc(m["reason"]))
    out.print(table)
    for m in d["models"]:
        if not m["replacements"]:
            continue
        offers = new_table("rank", "replacement", "context", "why", title=f"free replacements for {m['alias']}")
        for rank, r in enumerate(m["replacements"], 1):
            offers.add_row(str(rank), esc(r["id"]), f"{r['context_length'] or 0:,}", esc(r["why"]))
        out.print(offers)


@human(ReplacePayload)
def render_replace(out: Console, result: Result[ReplacePayload]) -> None:
    d = result.data
    for line in d["diff"]:
        style = "green" if line.startswith("+") and not line.startswith("+++") else \
            "red" if line.startswith("-") and not line.startswith("---") else "dim"
        out.print(f"[{style}]{esc(line)}[/]")


@human(QuotaPayload)
def render_quota(out: Console, result: Result[QuotaPayload]) -> None:
    d = result.data
    table = new_table("", "today (UTC " + d["day"] + ")")
    table.add_row("rollout used", f"{d['used']} of {d['allowance']} ({d['rollout_share'] * 100:g}% of {d['daily_limit']})")
    if d["held"]:
        table.add_row("held by checks running now", str(d["held"]))
    table.add_row("left", str(d["left"]) if d["left"] else status_text("inconclusive") + " 0")
    table.add_row("last minute", f"{d['per_minute']['used']} of {d['per_minute']['limit']}")
    account = d["account"]
    if account:
        table.add_row("account (last seen)", esc(", ".join(f"{k} {v}" for k, v in account.items())))
    table.add_row("resets at", esc(d["resets_at"]))
    for model, count in sorted(d["by_model"].items()):
        table.add_row(f"  {esc(model)}", str(count))
    out.print(table)
