"""Human renderings of `rollout health` and `rollout smoke` (rich)."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.text import Text

from rollout_cli.checks.health import HealthReport
from rollout_cli.checks.smoke import SmokePlanPayload, SmokeReport
from rollout_cli.cli.render import RUNTIME_NOUN, esc, human, live, new_table, status_text
from rollout_cli.core.result import Result
from rollout_cli.gateway.control import replica_text


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f} ms"


@live(HealthReport)
def health_renderable(result: Result[HealthReport]) -> Group:
    """The health report as one rich renderable: also what `--watch` refreshes."""

    d = result.data
    gw = d["gateway"]
    parts: list[Any] = []

    def probe(name: str, p: dict[str, Any] | None) -> str:
        if p is None:
            return f"{name} [dim]-[/]"
        mark = "[green]ok[/]" if p["ok"] else f"[bold red]{esc(p['status'] or 'no answer')}[/]"
        return f"{name} {mark}"

    parts.append(Text.from_markup(
        f"[bold]gateway[/] {esc(gw['url'])}  {probe('live', gw['liveliness'])}  "
        f"{probe('ready', gw['readiness'])}  {probe('key', gw['auth'])}"
    ))
    box = d.get("container")
    replicas = d.get("replicas")
    if box:
        noun = RUNTIME_NOUN.get(str(box.get("runtime")), "container")
        line = f"[bold]{noun}[/] {esc(box.get('name'))}: {status_text(str(box.get('status')))}"
        if box.get("health"):
            line += f", health {esc(box['health'])}"
        if box.get("error"):
            line += f" [dim]({esc(box['error'])})[/]"
        parts.append(Text.from_markup(line))
    if replicas:
        parts.append(Text.from_markup(f"[bold]replicas[/] {status_text(replicas['verdict'])}: {esc(replicas['reason'])}"))
        for replica in replicas["replicas"]:
            parts.append(Text.from_markup(f"  {esc(replica_text(replica))}"))
    if d.get("fallbacks") and d.get("primary"):
        chain = [d["primary"], *d["fallbacks"].get(d["primary"], [])]
        parts.append(Text.from_markup(f"[bold]fallback chain[/] {esc(' -> '.join(chain))}"))
    table = new_table("model", "status", "latency", "HTTP", "error", "served by")
    for m in d["models"]:
        served = m["served_by"] or "-"
        served = f"[bold red]{esc(served)}[/]" if m["served_by"] and m["served_by"] != m["alias"] else esc(served)
        table.add_row(
            esc(m["alias"]), status_text(m["status"]), _ms(m["latency_ms"]),
            esc(m["http_status"] if m["http_status"] is not None else "-"), esc(m["error_class"] or "-"), served,
        )
    parts.append(table)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(d["counts"].items()))
    parts.append(Text.from_markup(
        f"{status_text(result.payload.verdict)} (exit {int(result.exit_code)}): {esc(counts or 'no models')}; "
        f"{d['requests'].get('sent', 0)} request(s) in {d['duration_ms'] / 1000:.2f} s"
    ))
    return Group(*parts)


@human(HealthReport)
def health_view(out: Any, result: Result[HealthReport]) -> None:
    out.print(health_renderable(result))


@human(SmokePlanPayload)
def smoke_plan_view(out: Any, result: Result[SmokePlanPayload]) -> None:
    _plan_view(out, result.payload.plan.to_json())


@human(SmokeReport)
def smoke_view(out: Any, result: Result[SmokeReport]) -> None:
    d = result.data
    checks = d["checks"]
    cases = d["plan"]["cases"]
    gateway = next((c for c in checks if c["model"] == "gateway" and c["check"] == "gateway"), None)
    if gateway:
        out.print(f"[bold]gateway[/] {esc(d['gateway']['url'])}: {status_text(gateway['status'])}")
    by_key = {(c["model"], c["check"]): c for c in checks}
    table = new_table("model", *map(esc, cases), "cost")
    cost_models = [m["alias"] for m in (d.get("cost") or {}).get("models", [])]
    for model in list(dict.fromkeys(d["plan"]["models"] + cost_models)):
        cells = []
        for column in [*cases, "cost"]:
            check = by_key.get((model, column))
            cells.append(status_text(check["status"]) if check else "[dim]-[/]")
        table.add_row(esc(model), *cells)
    out.print(table)
    drill = by_key.get((d["plan"]["drill"]["model"], "fallback-drill")) if d["plan"].get("drill") else None
    if drill:
        out.print(f"[bold]fallback drill[/] {status_text(drill['status'])}: {esc(drill['detail'])}")
    counts = d["counts"]
    req = d["requests"]
    out.print(
        f"{status_text(result.payload.verdict)} (exit {int(result.exit_code)}): {counts['pass']} passed, "
        f"{counts['fail']} failed, {counts['inconclusive'] + counts['not-verifiable']} inconclusive, "
        f"{counts['skipped']} skipped; {req.get('sent', 0)} request(s) sent ({req.get('retries', 0)} retries) "
        f"+ {req.get('catalog', 0)} catalog read(s) in {d['duration_ms'] / 1000:.2f} s"
    )
    for key in ("junit_xml", "markdown"):
        if d.get(key):
            out.print(f"wrote {esc(d[key])}")


def _plan_view(out: Any, plan: dict[str, Any]) -> None:
    table = new_table("model", "requests", "checks")
    for model, n in plan["per_model"].items():
        table.add_row(esc(model), str(n), esc(", ".join(plan["cases"])))
    if plan["drill"]:
        drill = plan["drill"]
        table.add_row(
            esc(drill["model"]), str(drill["requests"]),
            esc(f"fallback drill (expects {drill['expected'] or 'a fallback'})"),
        )
    out.print(table)
    cap = f" of --max-requests {plan['cap']}" if plan["cap"] is not None else ""
    out.print(
        f"plan: {plan['completions']} completion request(s){cap} through the gateway, "
        f"+ {plan['catalog_requests']} read(s) of OpenRouter's /models for the cost guard; nothing sent"
    )
