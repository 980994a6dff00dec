"""Human renderings of `advance` and `report`: the verdict, the matrix, every gate."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from rich.console import Group
from rich.text import Text

from rollout_cli.cli.render import console, esc, human, json_line, new_table, plain, status_text
from rollout_cli.core.playbooks import format_duration
from rollout_cli.core.result import Result
from rollout_cli.rollout.advance import AdvancePayload
from rollout_cli.rollout.report import ReportPayload

VERDICT_STYLE = {"GO": "bold green", "HOLD": "bold yellow", "NO-GO": "bold red"}


def _cell(value: object) -> str:
    return status_text("-" if value is None else str(value))


def decision_renderable(d: dict[str, Any]) -> Group:
    nxt = f"{d['next']}%" if d.get("next") is not None else "complete"
    head = Text.from_markup(
        f"[{VERDICT_STYLE[d['verdict']]}]{d['verdict']}[/]  {d['current']}% -> {nxt}"
        f"  ({d.get('requests_sent', 0)} check requests sent"
        + (f", {d['requests_shared']} answers shared between checks" if d.get("requests_shared") else "") + ")"
    )
    matrix = new_table("model", "role", "health", "detail", "latency", "smoke", "verdict", title="models")
    for r in d["matrix"]:
        latency = f"{r['latency_ms']:.0f} ms" if r["latency_ms"] is not None else "-"
        matrix.add_row(esc(r["alias"]), esc(r["role"]), _cell(r["health"]), esc(r["detail"]), latency,
                       _cell(r["smoke"]), _cell(r["verdict"]))
    gates = new_table("gate", "status", "value", "threshold", "source", title="gates")
    for g in d["gates"]:
        gates.add_row(esc(g["name"]), _cell(g["status"]), esc(g["value"]), esc(g["threshold"]), esc(g["source"]))
    parts: list[Any] = [head, matrix, gates]
    parts += [Text(plain(line)) for line in evidence_lines(d)]
    if d["reasons"]:
        parts.append(Text("why:"))
        parts += [Text(f"  - {plain(r)}") for r in d["reasons"]]
    if d["warnings"]:
        parts.append(Text("warnings:", style="yellow"))
        parts += [Text(f"  - {plain(w)}") for w in d["warnings"]]
    return Group(*parts)


def evidence_lines(d: dict[str, Any]) -> list[str]:
    """Which gate decided the error rate, what the app feels, and the failures the direct path shares."""
    lines = []
    if d.get("error_rate_gate"):
        lines.append(f"error rate decided by: {d['error_rate_gate']}")
    lat = d.get("app_latency")
    if lat:
        def ms(key: str) -> str:
            return f"{lat[key]:+.1f} ms" if lat.get(key) is not None else "-"
        lines.append(f"app-side latency, gateway path - direct path: p50 {ms('added_p50_ms')}, p95 {ms('added_p95_ms')}"
                     " (from the app's histograms; reported, not gated)")
    if d.get("shared_failures"):
        lines.append("shared with the direct path (the provider's failure, HOLD, no rollback): "
                     + ", ".join(d["shared_failures"]))
    return lines


@human(AdvancePayload)
def advance_view(out: Any, result: Result[AdvancePayload]) -> None:
    if result.payload.complete:
        return
    d = result.data
    out.print(decision_renderable(d))
    post = d.get("post_check")
    if post:
        style = "green" if post["ok"] else "bold red"
        out.print(f"post-check: [{style}]{'ok' if post['ok'] else 'FAILED'}[/] {esc(post['reason'])}")


@human(ReportPayload)
def report_view(out: Any, result: Result[ReportPayload]) -> None:
    d = result.data
    out.print(f"[bold]rollout report[/] for {esc(d['workspace'])}: stage {d['current']}%")
    out.print(decision_renderable(d))
    out.print("[bold]stage history[/]")
    if not d["history"]:
        out.print("  no stage change recorded yet")
    for h in d["history"]:
        out.print(f"  {esc(h['time'])}  {esc(h['from'])}% -> {esc(h['to'])}%  by {esc(h['actor'])} "
                  f"({esc(h['command'])})" + (f": {esc(h['reason'])}" if h.get("reason") else ""))
    table = new_table("level", "ready", "budget", "problems",
                      title="rollback readiness (drill: every precondition, nothing changed)")
    for r in d["rollback_readiness"]:
        table.add_row(str(r["level"]), _cell("pass" if r["ready"] else "fail"),
                      format_duration(r["budget_s"]) if r["budget_s"] else "-", esc("; ".join(r["problems"]) or "-"))
    out.print(table)


def _pct(value: float | None) -> str:
    return f"{value * 100:.2f}%" if value is not None else "-"


def _ms(value: float | None) -> str:
    return f"{value:.1f} ms" if value is not None else "-"


def watch_renderable(v: dict[str, Any]) -> Group:
    alive = "[green]alive[/]" if v["alive"] else "[bold red]NOT ANSWERING[/]"
    parts: list[Any] = [Text.from_markup(
        f"[bold]{esc(v['time'])}[/]  stage {v['stage']}%  soak {esc(v['soak']['text'])}  gateway {alive}"
    )]
    if v.get("drift"):
        parts.append(Text(f"DRIFT: {plain(v['drift'])}", style="bold red"))
    if v.get("metrics_error"):
        parts.append(Text(f"metrics: {plain(v['metrics_error'])}", style="yellow"))
    window = v.get("window")
    if window:
        figures = new_table("", "requests", "errors", "error rate", "latency p50", "latency p95", "added p95",
                            "fallbacks")
        for label, f in (("soak window", window), ("since last sample", v.get("since_last"))):
            if f:
                figures.add_row(label, f"{f['requests']:g}", f"{f['failed']:g}", _pct(f["error_rate"]),
                                _ms(f["latency_p50_ms"]), _ms(f["latency_p95_ms"]), _ms(f["overhead_p95_ms"]),
                                f"{f['fallbacks']:g}")
        parts.append(figures)
    models = v.get("models") or []
    if models:
        table = new_table("model", "state", "requests", "errors", "recent", "health probe", title="models")
        for m in models:
            recent = f"{m['recent_requests'] or 0:g} req, {m['recent_failed'] or 0:g} err" if m["recent_requests"] is not None else "-"
            probe = (v.get("health") or {}).get(m["model"])
            table.add_row(esc(m["model"]), _cell(m["state"]),
                          f"{m['requests']:g}", f"{m['failed']:g}", recent, _cell(probe))
        parts.append(table)
    return Group(*parts)


@contextmanager
def sample_display(json_output: bool) -> Iterator[Callable[[dict[str, Any]], None]]:
    """`rollout watch`'s display: each sample's view refreshed in place, or one JSON line per sample."""
    if json_output:
        yield lambda view: json_line("watch", view)
        return
    from rich.live import Live  # lazy: start-up time

    out = console()
    with Live(console=out, auto_refresh=False, transient=False) as display:
        yield lambda view: display.update(watch_renderable(view), refresh=True)
    out.print()
