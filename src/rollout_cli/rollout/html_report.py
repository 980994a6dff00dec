"""`rollout report --html FILE`: the report as one self-contained page, with charts.

Self-contained: no script, no external style sheet, font or image; the charts
are static SVG drawn by matplotlib and written inline, so the page opens
offline, as a mail attachment, and prints. The data the charts show is
embedded too, as inert JSON (`<script type="application/json">`, never run).

Every string that comes from outside (reasons, actors, model names, gateway
answers, file paths) passes through `html.escape` (and through matplotlib's
own XML escaping inside a chart): the audit trail's `--reason` is the
operator's free text.

matplotlib is imported here at the top on purpose: this module is imported
only for `--html` (lazily, by rollout/report.py), never on a fast path.
"""

from __future__ import annotations

import io
import json
import re
import warnings
from datetime import UTC, datetime
from html import escape
from typing import Any

import matplotlib
from matplotlib import dates as mdates
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from rollout_cli.core.playbooks import format_duration

# matplotlib's layout advice (e.g. "AutoDateLocator was unable to pick an appropriate interval", seen on a window of
# a few seconds) is for the chart's author, not for the operator reading `report --html`'s output; the chart is
# drawn anyway. This module is imported only for --html.
warnings.filterwarnings("ignore", category=UserWarning, module=r"matplotlib(\.|$)")

matplotlib.rcParams.update({
    "svg.fonttype": "none",  # text stays text: small, selectable, in the DOM; the page's font draws it
    "font.family": "sans-serif",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e5e5e5",
    "svg.image_inline": True,
    # a fixed title position: placing it automatically measures every tick label of every axes (a third of the time)
    "axes.titley": 1.0,
    "axes.titlepad": 4.0,
})

CHART_TITLES = {
    "share": ("Configured stage and observed share", "% of the app's requests through the gateway"),
    "requests": ("Requests per minute by path", "requests / min"),
    "errors": ("Error rate, gateway path against direct path", "% of requests failed"),
    "latency": ("Gateway's added latency p95 against its limit", "ms"),
    "fallbacks": ("Fallback rate", "% of requests"),
}
LINE_COLORS = {"gateway": "#1f77b4", "direct": "#7f7f7f", "observed": "#1f77b4", "added p95": "#9467bd",
               "fallback rate": "#ff7f0e", "gateway (its /metrics/)": "#1f77b4"}
ADVANCE_COLOR, ROLLBACK_COLOR, CONFIGURED_COLOR, LIMIT_COLOR = "#2ca02c", "#d62728", "#222222", "#d62728"
VERDICT_CLASS = {"GO": "go", "HOLD": "hold", "NO-GO": "nogo"}

STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; color: #222;
       margin: 0 auto; padding: 1.5rem; max-width: 1200px; line-height: 1.4; }
h1 { font-size: 1.5rem; margin: 0 0 .3rem; } h2 { font-size: 1.15rem; margin: 1.6rem 0 .5rem;
     border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
.verdict { display: inline-block; padding: .15rem .7rem; border-radius: .3rem; font-weight: bold; color: #fff; }
.go { background: #2a7d2e; } .hold { background: #b07d00; } .nogo { background: #b3261e; }
.meta { color: #555; font-size: .9rem; }
table { border-collapse: collapse; width: 100%; font-size: .88rem; margin: .4rem 0; }
th, td { border: 1px solid #ddd; padding: .25rem .45rem; text-align: left; vertical-align: top; }
th { background: #f4f4f4; }
td.pass, td.ok, td.healthy, td.yes { color: #2a7d2e; font-weight: 600; }
td.fail, td.down, td.no { color: #b3261e; font-weight: 600; }
td.inconclusive, td.skipped { color: #8a6500; font-weight: 600; }
figure.chart { margin: 1rem 0; page-break-inside: avoid; break-inside: avoid; }
figure.chart svg { width: 100%; height: auto; display: block; }
figcaption { font-size: .85rem; color: #444; }
.problem { color: #8a6500; }
.missing { background: #fff7e0; border: 1px solid #e8c86a; padding: .5rem .8rem; border-radius: .3rem; }
code { font-size: .85em; word-break: break-all; }
@media print { body { max-width: none; padding: 0; font-size: 10pt; } h2 { page-break-after: avoid; } }
"""


def to_html(data: dict[str, Any], timeline: dict[str, Any] | None, charts: str | None = None) -> str:
    """The whole page: verdict and why, gates, models, charts, stage changes, rollback readiness, sources.

    `charts`: the section `charts_section(timeline)` drew (drawn apart, while the checks ran).
    """
    verdict = str(data["verdict"])
    nxt = f"{data['next']}%" if data.get("next") is not None else "complete"
    generated = _utc(timeline["now"]) if timeline else _utc(datetime.now(UTC).timestamp())
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>rollout report: {escape(verdict)} at {escape(str(data['current']))}%</title>",
        f"<style>{STYLE}</style></head><body>",
        f'<h1>rollout report <span id="verdict" class="verdict {VERDICT_CLASS.get(verdict, "hold")}">'
        f"{escape(verdict)}</span></h1>",
        f'<p class="meta">stage {escape(str(data["current"]))}% → {escape(nxt)} · workspace '
        f"<code>{escape(str(data['workspace']))}</code> · generated {escape(generated)}"
        + (f" · replayed from <code>{escape(str(data['replayed']))}</code>" if data.get("replayed") else "")
        + "</p>",
        _why(data),
        _gates(data),
        _models(data),
        charts if charts is not None else charts_section(timeline),
        _history(data, timeline),
        _readiness(data),
        _sources(data, timeline),
        '<script type="application/json" id="report-data">' + _inert_json({"report": data, "timeline": timeline})
        + "</script>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _inert_json(value: Any) -> str:
    """JSON that cannot end its <script> element or open a comment: `<`, `>` and `&` as \\u escapes."""
    text = json.dumps(value, default=str)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _utc(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _cell(value: Any, status: bool = False) -> str:
    text = "-" if value is None else str(value)
    klass = f' class="{escape(re.sub(r"[^a-z-]", "", text.lower()))}"' if status else ""
    return f"<td{klass}>{escape(text)}</td>"


def _table(headers: list[str], rows: list[str], table_id: str) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(f"<tr>{row}</tr>" for row in rows) or f'<tr><td colspan="{len(headers)}">none</td></tr>'
    return f'<table id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _why(data: dict[str, Any]) -> str:
    out = ['<section id="why"><h2>Why</h2>']
    reasons = data.get("reasons") or []
    out.append("<ul>" + "".join(f"<li>{escape(str(r))}</li>" for r in reasons) + "</ul>" if reasons
               else "<p>every gate passes</p>")
    lines = []
    if data.get("error_rate_gate"):
        lines.append(f"error rate decided by: {data['error_rate_gate']}")
    if data.get("shared_failures"):
        lines.append("shared with the direct path (the provider's failure, HOLD, no rollback): "
                     + ", ".join(str(f) for f in data["shared_failures"]))
    lines += [f"warning: {w}" for w in data.get("warnings") or []]
    out += [f"<p>{escape(line)}</p>" for line in lines]
    return "\n".join(out) + "</section>"


def _gates(data: dict[str, Any]) -> str:
    rows = [_cell(g["name"]) + _cell(g["status"], status=True) + _cell(g["value"]) + _cell(g["threshold"])
            + _cell(g["source"]) for g in data.get("gates") or []]
    return ('<section><h2>Gates</h2>' + _table(["gate", "status", "value", "threshold", "source"], rows, "gates")
            + "</section>")


def _models(data: dict[str, Any]) -> str:
    rows = []
    for r in data.get("matrix") or []:
        latency = f"{r['latency_ms']:.0f} ms" if r.get("latency_ms") is not None else "-"
        rows.append(_cell(r["alias"]) + _cell(r["role"]) + _cell(r["health"], status=True) + _cell(r["detail"])
                    + _cell(latency) + _cell(r["smoke"], status=True) + _cell(r["verdict"], status=True))
    return ('<section><h2>Models</h2>'
            + _table(["model", "role", "health", "detail", "latency", "smoke", "verdict"], rows, "models")
            + "</section>")


def _history(data: dict[str, Any], timeline: dict[str, Any] | None) -> str:
    """Every stage change, numbered as the marks on the charts."""
    events = (timeline or {}).get("events")
    if events is None:
        events = [{"time": h["time"], "from": h["from"], "to": h["to"], "actor": h["actor"], "command": h["command"],
                   "reason": h.get("reason")} for h in data.get("history") or []]
    rows = [_cell(n) + _cell(e["time"]) + _cell(f"{_pct(e['from'])} → {_pct(e['to'])}") + _cell(e.get("actor"))
            + _cell(e.get("command")) + _cell(e.get("reason")) for n, e in enumerate(events, 1)]
    return ('<section><h2>Stage changes</h2>'
            + _table(["#", "time (UTC)", "change", "who", "command", "why"], rows, "stage-changes")
            + "</section>")


def _pct(value: Any) -> str:
    """A stage for a label: `10%`, or `?` where the audit trail has no number (a key written for the first time)."""
    return f"{value}%" if value is not None else "?"


def _readiness(data: dict[str, Any]) -> str:
    rows = []
    for r in data.get("rollback_readiness") or []:
        budget = format_duration(r["budget_s"]) if r.get("budget_s") else "-"
        rows.append(_cell(r["level"]) + _cell("yes" if r["ready"] else "no", status=True) + _cell(budget)
                    + _cell("; ".join(str(p) for p in r["problems"]) or "-"))
    note = "" if rows or not data.get("replayed") else "<p>not drilled for a replayed snapshot</p>"
    return ('<section><h2>Rollback readiness</h2><p class="meta">each level\'s drill: every precondition checked, '
            "nothing changed</p>" + note + _table(["level", "ready", "budget", "problems"], rows, "readiness")
            + "</section>")


def _sources(data: dict[str, Any], timeline: dict[str, Any] | None) -> str:
    out = ['<section id="sources"><h2>Where the data came from</h2><ul>']
    snapshot = data.get("snapshot") or {}
    judged = snapshot.get("metrics") or {}
    window = snapshot.get("window") or {}
    if window.get("start") is not None:
        out.append(f"<li>gates judged the soak window {escape(_utc(window['start']))} to "
                   f"{escape(_utc(window.get('end') or window['start']))} from "
                   f"{escape(str(window.get('label') or judged.get('source')))}</li>")
    if timeline:
        out.append(f"<li>charts: {escape(timeline['source']['label'])}"
                   f" ({timeline['source']['queries']} queries)</li>")
        for name, span in (("whole rollout", timeline["spans"]["rollout"]), ("soak window", timeline["spans"]["window"])):
            if span:
                out.append(f"<li>{name}: {escape(_utc(span['start']))} to {escape(_utc(span['end']))} "
                           f"({escape(format_duration(span['end'] - span['start']))})</li>")
            else:
                out.append(f"<li>{name}: none (no soak window at 0%)</li>")
    out.append("</ul>")
    missing = (timeline or {}).get("missing") or []
    if missing:
        out.append('<div class="missing" id="missing"><strong>Missing:</strong><ul>'
                   + "".join(f"<li>{escape(m)}</li>" for m in missing) + "</ul></div>")
    return "\n".join(out) + "</section>"


# --- charts ----------------------------------------------------------------------------


def charts_section(timeline: dict[str, Any] | None) -> str:
    """Every chart, each an inline SVG in a <figure id="chart-NAME">."""
    if timeline is None:
        return ('<section id="charts"><h2>Charts</h2><p class="problem">not drawn for a replayed snapshot: '
                "the recorded evidence holds no series</p></section>")
    out = ['<section id="charts"><h2>Over time</h2><p class="meta">left: the whole rollout (the current soak '
           "window shaded); right: the soak window. Marks: each stage change, numbered as in "
           '"Stage changes" (green an advance, red a rollback).</p>']
    for name in CHART_TITLES:
        out.append(_chart(name, timeline))
    return "\n".join(out) + "</section>"


def _chart(name: str, timeline: dict[str, Any]) -> str:
    title, unit = CHART_TITLES[name]
    panels = timeline["charts"][name]
    spans = timeline["spans"]
    fig = Figure(figsize=(11.5, 3.0))
    # fixed margins: a constrained layout draws each figure three times over (a second per chart)
    fig.subplots_adjust(left=0.07, right=0.99, bottom=0.13, top=0.88, wspace=0.06)
    axes = fig.subplots(1, 2, sharey=True, width_ratios=[3, 2]) if spans["window"] else [fig.subplots(1, 1)]
    notes = []
    for ax, span_name in zip(axes, ("rollout", "window"), strict=False):
        bounds, panel = spans[span_name], panels[span_name]
        _panel(ax, name, span_name, bounds, panel, timeline)
        label = "whole rollout" if span_name == "rollout" else "soak window"
        if panel and panel.get("problem"):
            notes.append(f'<span class="problem">{label}: no data: {escape(panel["problem"])}</span>')
        elif panel and panel.get("note"):
            notes.append(f'<span class="problem">{label}: {escape(panel["note"])}</span>')
    axes[0].set_ylabel(unit)
    buffer = io.StringIO()
    matplotlib.rcParams["svg.hashsalt"] = f"rollout-{name}"  # ids unique across the page's inline SVGs
    fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None})
    svg = _inline_svg(buffer.getvalue())
    caption = f"<figcaption><strong>{escape(title)}</strong>" + "".join(f"<br>{n}" for n in notes) + "</figcaption>"
    return f'<figure class="chart" id="chart-{name}" data-chart="{name}">{svg}{caption}</figure>'


def _inline_svg(text: str) -> str:
    """matplotlib's SVG file as an element of the page: no XML declaration, DOCTYPE (it names a URL) or metadata."""
    text = text[text.index("<svg"):]
    return re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.DOTALL)


def _dates(points: list[list[float]]) -> tuple[list[datetime], list[float]]:
    return [datetime.fromtimestamp(t, UTC) for t, _ in points], [v for _, v in points]


def _panel(ax: Any, name: str, span_name: str, bounds: dict[str, float], panel: dict[str, Any] | None,
           timeline: dict[str, Any]) -> None:
    start, end = datetime.fromtimestamp(bounds["start"], UTC), datetime.fromtimestamp(bounds["end"], UTC)
    ax.set_xlim(start, end)
    locator = mdates.AutoDateLocator(minticks=3, maxticks=6, tz=UTC)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=UTC))
    ax.set_title("whole rollout (UTC)" if span_name == "rollout" else "soak window (UTC)", fontsize=9, loc="left")
    window = timeline["spans"]["window"]
    if span_name == "rollout" and window:
        ax.axvspan(datetime.fromtimestamp(window["start"], UTC), end, color="#f0f0f0", zorder=0, label="soak window")
    if name == "share":
        x, y = _dates(timeline["configured"])
        ax.step(x, y, where="post", color=CONFIGURED_COLOR, linewidth=1.6, label="configured stage")
    limit = timeline["limits"].get(name)
    if limit is not None:
        ax.axhline(limit, color=LIMIT_COLOR, linestyle=":", linewidth=1.2, label=f"limit {limit:g}")
    for line, points in (panel or {}).get("series", {}).items():
        x, y = _dates(points)
        ax.plot(x, y, color=LINE_COLORS.get(line), linewidth=1.3, marker="." if len(points) < 30 else None,
                label=str(line))
    for n, event in enumerate(timeline["events"], 1):
        if not bounds["start"] <= event["ts"] <= bounds["end"]:
            continue
        when = datetime.fromtimestamp(event["ts"], UTC)
        color = ROLLBACK_COLOR if event["kind"] == "rollback" else ADVANCE_COLOR
        ax.axvline(when, color=color, linestyle="--", linewidth=1.0, alpha=0.8)
        if name != "share":
            continue  # numbered on the share chart; a label is a costly object to lay out, the line says enough
        ax.annotate(f"{n}: {_pct(event['from']).rstrip('%')}→{_pct(event['to'])}", (when, 1.0), xycoords=("data", "axes fraction"),
                    xytext=(2, -10), textcoords="offset points", fontsize=8, color=color)
    if name == "share":
        ax.set_ylim(-2, 105)
    else:
        ax.set_ylim(bottom=0)
    ax.yaxis.set_major_locator(MaxNLocator(nbins=5))  # every tick is an object to lay out: few of them
    if not (panel or {}).get("series"):
        ax.text(0.5, 0.5, "no data", transform=ax.transAxes, ha="center", va="center", color="#999", fontsize=11)
    if span_name == "rollout" and ax.get_legend_handles_labels()[0]:  # one legend a chart: the panels share it
        ax.legend(fontsize=7, loc="lower left", framealpha=0.8)


__all__ = ["charts_section", "to_html"]
