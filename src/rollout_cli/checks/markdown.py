"""The smoke report as Markdown, for a pull-request comment; and Markdown-safe text for every report.

Model names, details and reasons come from the workspace, the gateway and the
operator (`--reason`): `md()` and `md_code()` keep them from adding headings,
links, images or raw HTML to a report, or new cells to a table.
"""

from __future__ import annotations

import re
from typing import Any

from rollout_cli.core.text import printable

_ICON = {"pass": "✅", "fail": "❌", "inconclusive": "⚠️", "not-verifiable": "⚠️", "skipped": "⏭️"}
_HEADLINE = {
    "passed": "✅ passed",
    "failed": "❌ failed",
    "inconclusive": "⚠️ inconclusive (rate-limited or not verifiable; nothing failed)",
    "unreachable": "❌ gateway unreachable",
    "auth-error": "❌ gateway refused the key",
}


def smoke_markdown(data: dict[str, Any]) -> str:
    checks: list[dict[str, Any]] = data.get("checks", [])
    counts = data.get("counts", {})
    requests = data.get("requests", {})
    lines = [
        f"### rollout smoke: {_HEADLINE.get(data.get('verdict', '')) or md(data.get('verdict', ''))}",
        "",
        f"{counts.get('pass', 0)} passed, {counts.get('fail', 0)} failed, "
        f"{counts.get('inconclusive', 0) + counts.get('not-verifiable', 0)} inconclusive, "
        f"{counts.get('skipped', 0)} skipped; {requests.get('sent', 0)} request(s) through the gateway "
        f"in {(data.get('duration_ms') or 0) / 1000:.1f} s (exit {data.get('exit_code')}).",
        "",
    ]
    case_names = [n for n in data.get("plan", {}).get("cases", [])]
    models = data.get("plan", {}).get("models", [])
    by_key = {(c["model"], c["check"]): c for c in checks}
    if models:
        columns = [*case_names, "cost"]
        lines.append("| model | " + " | ".join(md(c) for c in columns) + " |")
        lines.append("| --- |" + " --- |" * len(columns))
        for model in models:
            cells = []
            for column in columns:
                check = by_key.get((model, column))
                cells.append(_ICON.get(check["status"]) or md(check["status"]) if check else "")
            lines.append(f"| {md_code(model)} | " + " | ".join(cells) + " |")
        lines.append("")
    drill = next((c for c in checks if c["check"] == "fallback-drill"), None)
    if drill:
        lines.append(f"**Fallback drill** {_ICON.get(drill['status'], '')} {md(drill['status'])}: {md(drill['detail'])}")
        lines.append("")
    problems = [c for c in checks if c["status"] in ("fail", "inconclusive", "not-verifiable")]
    if problems:
        lines.append("<details><summary>Details</summary>")
        lines.append("")
        for c in problems:
            lines.append(f"- {_ICON.get(c['status'], '')} {md_code(c['model'])} {md(c['check'])}: {md(c['detail'])}")
        lines.append("")
        lines.append("</details>")
    return "\n".join(lines).rstrip() + "\n"


# Backslash-escaped wherever they stand: what could start emphasis, a link or image (no `[`,
# no link), raw HTML, a code span or a table cell. Line breaks are gone already (printable),
# so nothing can start a heading, a list or a block; `(`, `#` and `!` are inert mid-line and
# stay readable.
_MD_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")


def md(text: object) -> str:
    """`text` as inert Markdown: one line, no control characters, every markup character escaped."""
    return _MD_SPECIAL.sub(r"\\\1", printable(text))


def md_code(text: object) -> str:
    """`text` as a code span, for names; a backtick inside cannot end it, nor a pipe end a table cell."""
    return "`" + printable(text).replace("`", "'").replace("|", "\\|") + "`"
