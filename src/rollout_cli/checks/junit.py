"""The smoke report as JUnit XML: one test case per model and check, for CI to publish.

Built from the report's JSON data, so it renders a saved `--json` as well.
Failed checks are <failure>; inconclusive, not verifiable and not sent are
<skipped> with the reason, because CI tools count skipped but do not fail on it.
Every name and detail passes through printable(): ElementTree escapes markup but
writes control characters as they are, which XML 1.0 forbids (a parser refuses
the file) and which a CI log would show raw.
"""

from __future__ import annotations

from typing import Any
from xml.etree import ElementTree as ET

from rollout_cli.core.text import printable

_SKIPPED = {"inconclusive", "not-verifiable", "skipped"}


def smoke_junit_xml(data: dict[str, Any]) -> str:
    checks: list[dict[str, Any]] = data.get("checks", [])
    root = ET.Element("testsuites", name="rollout smoke")
    groups: dict[str, list[dict[str, Any]]] = {}
    for check in checks:
        groups.setdefault(printable(check["model"]), []).append(check)
    for model, cases in groups.items():
        suite = ET.SubElement(root, "testsuite", name=model)
        for check in cases:
            case = ET.SubElement(
                suite, "testcase", classname=f"smoke.{model}", name=printable(check["check"]),
                time=f"{(check.get('latency_ms') or 0) / 1000:.3f}",
            )
            status, detail = check["status"], printable(check.get("detail") or "")
            if status == "fail":
                failure = ET.SubElement(case, "failure", message=detail[:500],
                                        type=printable(check.get("model_status") or "fail"))
                failure.text = detail
            elif status in _SKIPPED:
                ET.SubElement(case, "skipped", message=f"{status}: {detail}"[:500])
            else:
                out = ET.SubElement(case, "system-out")
                out.text = detail
        _count(suite, cases)
    _count(root, checks)
    root.set("time", f"{(data.get('duration_ms') or 0) / 1000:.3f}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


def _count(element: ET.Element, checks: list[dict[str, Any]]) -> None:
    element.set("tests", str(len(checks)))
    element.set("failures", str(sum(1 for c in checks if c["status"] == "fail")))
    element.set("errors", "0")
    element.set("skipped", str(sum(1 for c in checks if c["status"] in _SKIPPED)))
