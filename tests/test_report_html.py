"""`rollout report --html FILE` (issue 21): one self-contained page, opened in real headless Chromium.

The browser checks run through tests/browser.py (Debian's chromium over the
DevTools pipe); the first test proves its detectors see a console error and a
request leaving the page, so "none seen" in the others means something.
The sandbox run (0 -> 10 -> 50, a rollback, 10 again) reads the charts' data
from the page's embedded JSON.
"""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import ClassVar

import pytest
from PIL import Image

from browser import artifacts_dir, visit
from rollout_cli.core.audit import AuditLog, append_line
from rollout_cli.core.workspace import PERCENTAGE_KEY
from support import NO_GATEWAY, QuietServer, make_world, process_sandbox, rollout, wait_until

CHARTS = ("share", "requests", "errors", "latency", "fallbacks")
HOSTILE = '<script>alert("pwned")</script><img src=x onerror=alert(2)>'

# What the page shows, read by the browser: the verdict, every chart's SVG and its box on the page.
PROBE = """(() => {
  const box = e => { const r = e.getBoundingClientRect(); return [r.left + scrollX, r.top + scrollY, r.width, r.height]; };
  return {
    verdict: (document.getElementById('verdict') || {}).textContent || null,
    charts: Object.fromEntries([...document.querySelectorAll('figure.chart')].map(f => [f.dataset.chart,
      {svg: !!f.querySelector('svg'), box: f.querySelector('svg') ? box(f.querySelector('svg')) : null,
       text: f.textContent}])),
    scripts: [...document.scripts].map(s => s.type),
    images: document.images.length,
    why: (document.getElementById('why') || {}).textContent || '',
    changes: (document.getElementById('stage-changes') || {}).textContent || '',
    missing: (document.getElementById('missing') || {}).textContent || '',
  };
})()"""


def embedded(page: Path) -> dict:
    found = re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page.read_text(), re.DOTALL)
    assert found, "the page embeds no report data"
    return json.loads(found.group(1))


def open_page(page: Path, shot: str, pdf: bool = False):  # type: ignore[no-untyped-def]
    """The page in Chromium: no console error, no request but the file itself; the screenshot (and print) kept."""
    seen = visit(page.resolve().as_uri(), PROBE, pdf=pdf)
    (artifacts_dir(page.parent) / shot).write_bytes(seen.screenshot)
    if pdf:
        (artifacts_dir(page.parent) / shot.replace(".png", ".pdf")).write_bytes(seen.pdf)
    assert seen.console_errors == [], seen.console_errors
    assert seen.requests == [page.resolve().as_uri()], seen.requests
    return seen


def not_blank(screenshot: bytes, box: list[float]) -> bool:
    """Whether the chart's area of the screenshot holds a drawing: many non-white pixels, several colours."""
    image = Image.open(io.BytesIO(screenshot)).convert("RGB")
    left, top, width, height = (int(v) for v in box)
    area = image.crop((left, top, left + width, top + height))
    pixels = list(area.get_flattened_data())
    inked = sum(1 for p in pixels if sum(p) < 700)
    return width > 300 and height > 100 and inked > 0.01 * len(pixels) and len(set(pixels)) > 8


# --- the detectors ------------------------------------------------------------------------


class Recorder(BaseHTTPRequestHandler):
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        Recorder.seen.append(self.path)
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_the_browser_detectors_see_a_console_error_an_exception_and_a_request_leaving_the_page(tmp_path):
    server = QuietServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        leak = f"http://127.0.0.1:{server.server_address[1]}/leak.png"
        bad = tmp_path / "bad.html"
        bad.write_text(f'<!DOCTYPE html><html><head><link rel="stylesheet" href="{leak}.css"></head><body>'
                       f'<h1 id="verdict">GO</h1><img src="{leak}">'
                       '<script>console.error("planted error"); undefinedFunction();</script></body></html>')
        seen = visit(bad.as_uri(), PROBE)
    finally:
        server.shutdown()
        server.server_close()
    assert {leak, f"{leak}.css"} <= set(seen.requests) and sorted(Recorder.seen) == ["/leak.png", "/leak.png.css"]
    assert any("planted error" in e for e in seen.console_errors), seen.console_errors
    assert any("undefinedFunction" in e for e in seen.console_errors), seen.console_errors
    assert seen.probe["verdict"] == "GO" and seen.probe["charts"] == {}
    good = tmp_path / "good.html"
    good.write_text('<!DOCTYPE html><html><body><h1 id="verdict">HOLD</h1></body></html>')
    clean = visit(good.as_uri(), PROBE)
    assert clean.console_errors == [] and clean.requests == [good.as_uri()] and clean.probe["verdict"] == "HOLD"
    assert clean.screenshot.startswith(b"\x89PNG") and not not_blank(clean.screenshot, [0, 100, 600, 300])


# --- bad input: no audit trail, a dead gateway, no samples ------------------------------------


def test_the_html_of_a_bad_input_renders_saying_what_is_missing_with_reports_exit_code(tmp_path):
    world = make_world(tmp_path)  # at 10 %, its gateway answers nowhere, no audit trail, no samples
    plain = world.cli("report")
    page = tmp_path / "report.html"
    result = world.cli("report", "--html", str(page))
    assert result.exit_code == plain.exit_code == 1, result.output  # NO-GO: the gateway does not answer
    assert f"wrote {page}" in result.stdout
    data = embedded(page)
    assert data["report"]["verdict"] == "NO-GO"
    timeline = data["timeline"]
    assert timeline["source"]["source"] == "samples" and timeline["events"] == []
    assert any("no stage change in the audit trail" in m for m in timeline["missing"])
    assert any("no samples recorded" in m for m in timeline["missing"])
    seen = open_page(page, "report-bad-input.png")
    assert seen.probe["verdict"] == "NO-GO"
    assert set(seen.probe["charts"]) == set(CHARTS) and all(c["svg"] for c in seen.probe["charts"].values())
    assert "gateway" in seen.probe["why"] and "no stage change in the audit trail" in seen.probe["missing"]
    assert "no data" in seen.probe["charts"]["requests"]["text"]
    assert seen.probe["scripts"] == ["application/json"] and seen.probe["images"] == 0
    # a Prometheus that does not answer: every chart says so, the page still renders with the same exit code
    with (world.ws / "rollout.yaml").open("a") as config:
        config.write(f"metrics: {{source: prometheus, url: {NO_GATEWAY}}}\n")
    dead = tmp_path / "dead-prometheus.html"
    assert world.cli("report", "--html", str(dead)).exit_code == plain.exit_code
    charts = embedded(dead)["timeline"]["charts"]
    assert all(charts[name]["rollout"]["problem"].startswith(f"Prometheus cannot be queried: Prometheus {NO_GATEWAY}")
               for name in CHARTS), charts
    assert dead.read_text().count("no data: Prometheus cannot be queried") == 5 * 2  # two spans at 10 %
    # a replayed snapshot has no series: the page says so, and keeps the verdict of the replay
    snapshot = tmp_path / "snap.json"
    snapshot.write_text(world.cli("report", "--json").stdout)
    replayed = tmp_path / "replayed.html"
    again = world.cli("report", "--replay", str(snapshot), "--html", str(replayed))
    assert again.exit_code == 1 and "not drawn for a replayed snapshot" in replayed.read_text()
    # a page that cannot be written is bad input, named, nothing left behind
    missing_dir = world.cli("report", "--html", str(tmp_path / "no" / "such" / "r.html"))
    assert missing_dir.exit_code == 2 and str(tmp_path / "no" / "such") in missing_dir.stderr
    assert not (tmp_path / "no").exists()


def test_a_hostile_reason_and_actor_in_the_audit_trail_are_escaped(tmp_path):
    world = make_world(tmp_path)
    AuditLog(world.ws / ".rollout").append("advance", actor=HOSTILE, reason=HOSTILE,
                                           changes=[{"key": PERCENTAGE_KEY, "before": "0", "after": "10"}])
    page = tmp_path / "report.html"
    world.cli("report", "--html", str(page))
    text = page.read_text()
    assert "<script>alert" not in text and "<img src=x" not in text
    assert text.count("&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;") == 2  # who and why in the table
    assert text.count("<script") == 1  # the inert JSON only
    seen = open_page(page, "report-hostile.png")
    assert seen.probe["scripts"] == ["application/json"] and seen.probe["images"] == 0
    assert HOSTILE in seen.probe["changes"]  # shown as text, exactly
    assert embedded(page)["timeline"]["events"][0]["reason"] == HOSTILE


def _summary(requests: float, failed: float, fallbacks: float, slow: float, started: float) -> dict:
    """A /metrics/ summary as `rollout watch` stores it: counters since the gateway started, overhead buckets."""
    return {"requests": requests, "failed": failed, "check_requests": 0.0, "fallbacks": fallbacks,
            "failed_fallbacks": 0.0, "overhead_buckets": {"0.005": requests - slow, "0.5": requests, "+Inf": requests},
            "latency_buckets": {}, "deployment_state": {}, "models": {}, "has_litellm_metrics": True,
            "started": started}


def test_without_prometheus_the_charts_come_from_rollouts_own_samples(tmp_path):
    """No metrics.source: watch's samples and status's traffic readings, each pair one point; a restart between
    two samples counts from zero (the counters began again)."""
    world = make_world(tmp_path)  # at 10 %
    state = world.ws / ".rollout"
    now = datetime.now(UTC).timestamp()

    def iso(ts: float) -> str:
        return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    AuditLog(state).append("advance", time=iso(now - 400), reason="first step",
                           changes=[{"key": PERCENTAGE_KEY, "before": "0", "after": "10"}])
    samples = [(now - 300, _summary(0, 0, 0, 0, 1.0)), (now - 240, _summary(100, 2, 1, 0, 1.0)),
               (now - 180, _summary(250, 2, 1, 30, 1.0)), (now - 120, _summary(40, 4, 1, 0, 2.0))]  # restarted
    for ts, summary in samples:
        append_line(state / "samples.jsonl", {"time": iso(ts), "ts": ts, "stage": 10, "metrics": summary})
    for ts, gateway, app in ((now - 300, 0, 0), (now - 200, 10, 100), (now - 100, 40, 300)):
        append_line(state / "traffic.jsonl", {"ts": ts, "gateway": gateway, "app": app})
    page = tmp_path / "report.html"
    world.cli("report", "--html", str(page))
    timeline = embedded(page)["timeline"]
    assert timeline["source"]["source"] == "samples" and timeline["missing"] == []
    panels = {name: timeline["charts"][name]["rollout"] for name in CHARTS}

    def values(name: str, line: str) -> list[float]:
        return [v for _, v in panels[name]["series"][line]]

    assert values("requests", "gateway") == [100.0, 150.0, 40.0]  # per minute; the restart counts from zero
    assert values("errors", "gateway") == [2.0, 0.0, 10.0]  # percent
    assert values("fallbacks", "fallback rate") == [1.0, 0.0, 2.5]
    # p95 interpolated in its bucket: all 100 under 5 ms; 30 of 150 between 5 and 500 ms; all 40 under 5 ms
    assert values("latency", "added p95") == [4.75, pytest.approx(5 + 495 * 22.5 / 30), 4.75]
    assert values("share", "observed") == [10.0, 15.0]  # from status's readings: gateway / app
    assert values("requests", "direct") == [54.0, 102.0]
    assert "direct path is not in rollout's samples" not in (panels["requests"]["note"] or "")
    assert "direct path is not in rollout's samples" in panels["errors"]["note"]
    assert [e["ts"] for e in timeline["events"]] == [float(int(now - 400))]


# --- a real run: 0 -> 10 -> 50, a rollback, 10 again ------------------------------------------

# a 10 s soak (each stage lasts longer: no advance waits for it), a relaxed latency limit and few requests to
# judge: each step a GO on this loaded machine. At 10 % of 25 rps a 10 s window holds about 25 gateway requests
# (a 5 s soak's dozen fell under 5 once: HOLD).
PLAN = "kind: rollout\nstages: [10, 50, 100]\nsoak: 10s\ngates: {max_added_latency_p95_ms: 5000, min_requests: 5}\n"
SETTLE_S = 12.0  # the app's reload (1-3 s), the rate's range (4 gateway scrapes of 2 s), an app scrape (1 s)
STAY_S = 17.0  # at each stage: at least 5 of the share's 1 s points after SETTLE_S, and more than the soak


@pytest.mark.slow(200)
def test_a_sandbox_run_0_10_50_rollback_10_is_charted_and_opens_clean_in_chromium(tmp_path):
    root = tmp_path / "sb"
    with process_sandbox(root):
        # `sandbox up` wrote `playbooks:` and `metrics:` with its Prometheus: the plan goes in its playbooks
        (root / "playbooks" / "rollout.yaml").write_text(PLAN)
        load = subprocess.Popen([sys.executable, "-m", "rollout_cli", "-w", str(root), "sandbox", "traffic",
                                 "--rps", "25", "--duration", "150"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        try:
            moves = [("advance", "--yes", "--reason", "test: first step"),
                     ("advance", "--yes", "--reason", "test: second step"),
                     ("rollback", "--level", "1", "--yes", "--reason", "test: back out <b>now</b>"),
                     ("advance", "--yes", "--reason", "test: again")]
            wait_for_traffic(root)
            for move in moves:
                result = rollout("-w", str(root), *move)
                assert result.exit_code == 0, result.output[-3000:]
                settle(STAY_S)
            page = tmp_path / "run.html"
            report = rollout("-w", str(root), "report", "--html", str(page))
            assert report.exit_code in (0, 1, 3), report.output[-3000:]
        finally:
            load.terminate()
            load.wait(timeout=30)
        seen = open_page(page, "report-sandbox-run.png", pdf=True)
        # `sandbox down` writes the run's report first, and says where (issue 21 item 4)
        down = rollout("sandbox", "down", str(root), "--json")
        assert down.exit_code == 0, down.output[-2000:]
        assert json.loads(down.stdout)["report"] == str(root / "report.html")
        assert len(embedded(root / "report.html")["timeline"]["events"]) == 4
    data = embedded(page)
    timeline = data["timeline"]
    assert timeline["source"]["source"] == "prometheus"
    records = AuditLog(root / ".rollout").records()
    began = {r["op"]: r["time"] for r in records if r.get("phase") == "started"}
    trail = [(began[r["op"]], c["before"], c["after"]) for r in records
             for c in r.get("changes", []) if c.get("key") == PERCENTAGE_KEY]
    events = timeline["events"]
    assert [(e["from"], e["to"], e["kind"]) for e in events] == [
        (0, 10, "advance"), (10, 50, "advance"), (50, 0, "rollback"), (0, 10, "advance")]
    # marked when each operation began to change the files (its "started" record): a rollback records its end
    # only after the app's traffic went quiet through the gateway, seconds later
    assert [e["time"] for e in events] == [t for t, _, _ in trail]
    assert events[2]["time"] < events[2]["recorded"]
    assert events[2]["reason"] == "test: back out <b>now</b>" and "&lt;b&gt;now" in page.read_text()
    share_svg = re.search(r'<figure class="chart" id="chart-share".*?</figure>', page.read_text(), re.DOTALL)
    assert share_svg is not None
    for n, e in enumerate(events, 1):  # every change marked on the share chart, numbered as in the table
        assert f"{n}: {e['from']}→{e['to']}%" in share_svg.group(0)
    configured = timeline["configured"]
    assert [v for _, v in configured[1:-1]] == [10.0, 50.0, 0.0, 10.0]
    assert [t for t, _ in configured[1:-1]] == [e["ts"] for e in events]
    # the observed share follows the configured stage once each change has settled
    observed = timeline["charts"]["share"]["rollout"]["series"]["observed"]
    # (the app's users are bucketed at random: a share over a few seconds of traffic is binomial, hence the bands)
    ends = [e["ts"] for e in events[1:]] + [timeline["now"]]
    means = []
    for event, end in zip(events, ends, strict=True):
        points = [v for t, v in observed if event["ts"] + SETTLE_S <= t <= end]
        assert len(points) >= 5, (event, observed)
        means.append(sum(points) / len(points))
    at_10, at_50, at_0, at_10_again = means
    assert 0 < at_10 <= 30 and 0 < at_10_again <= 30 and 25 <= at_50 <= 75 and at_50 > max(at_10, at_10_again) + 10
    assert at_0 == 0 and max(v for t, v in observed if events[2]["ts"] + SETTLE_S <= t <= events[3]["ts"]) == 0
    requests = timeline["charts"]["requests"]["rollout"]["series"]
    assert {"gateway", "direct"} <= requests.keys()
    errors = timeline["charts"]["errors"]["rollout"]["series"]
    assert {"gateway", "direct"} <= errors.keys()
    assert timeline["charts"]["latency"]["rollout"]["series"]["added p95"]
    assert timeline["charts"]["fallbacks"]["rollout"]["series"]["fallback rate"]
    # it prints: Chromium makes an A4 PDF of a few pages of it (kept beside the screenshot)
    assert seen.pdf.startswith(b"%PDF") and 2 <= len(re.findall(rb"/Type\s*/Page\b", seen.pdf)) <= 12
    # the browser: the verdict, every chart drawn, no blank chart area
    assert seen.probe["verdict"] == data["report"]["verdict"]
    assert set(seen.probe["charts"]) == set(CHARTS)
    for name, chart in seen.probe["charts"].items():
        assert chart["svg"] and not_blank(seen.screenshot, chart["box"]), name


def wait_for_traffic(root: Path) -> None:
    """The app's first requests are in Prometheus: the whole rollout's chart starts with traffic."""
    from rollout_cli.core.workspace import load_workspace
    from rollout_cli.rollout.promql import Prometheus

    url = load_workspace(root).metrics.url
    assert url
    prom = Prometheus(url)
    wait_until(lambda: prom.query("sum(llm_requests_total)", datetime.now(UTC).timestamp()), 30,
               "the app's requests in Prometheus", poll=0.5)
    settle(5.0)


def settle(seconds: float) -> None:
    """A stretch of time at one stage: the chart is asserted on it (a quiet period, not a wait for an event)."""
    time.sleep(seconds)
