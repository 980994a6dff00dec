"""The smoke report as Markdown, for a pull-request comment."""

from __future__ import annotations

from typing import Any

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
        f"### rollout smoke: {_HEADLINE.get(data.get('verdict', ''), data.get('verdict', ''))}",
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
        lines.append("| model | " + " | ".join(columns) + " |")
        lines.append("| --- |" + " --- |" * len(columns))
        for model in models:
            cells = []
            for column in columns:
                check = by_key.get((model, column))
                cells.append(_ICON.get(check["status"], check["status"]) if check else "")
            lines.append(f"| `{model}` | " + " | ".join(cells) + " |")
        lines.append("")
    drill = next((c for c in checks if c["check"] == "fallback-drill"), None)
    if drill:
        lines.append(f"**Fallback drill** {_ICON.get(drill['status'], '')} {drill['status']}: {_md(drill['detail'])}")
        lines.append("")
    problems = [c for c in checks if c["status"] in ("fail", "inconclusive", "not-verifiable")]
    if problems:
        lines.append("<details><summary>Details</summary>")
        lines.append("")
        for c in problems:
            lines.append(f"- {_ICON.get(c['status'], '')} `{c['model']}` {c['check']}: {_md(c['detail'])}")
        lines.append("")
        lines.append("</details>")
    return "\n".join(lines).rstrip() + "\n"


def _md(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")
