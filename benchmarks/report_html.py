"""Size and wall time of `rollout report --html` after a 3-stage rollout on a healthy sandbox; exits 1 on a missed goal.

The sandbox (its own Prometheus as `metrics.source`, the sample app under load
in the background) goes 0 -> 10 -> 50 -> 100 % through real `advance` runs
(a stage plan with a 5 s soak, a relaxed latency limit and 5 requests
enough to judge a window, so each step is a GO on a loaded machine), 15 s at each stage. Then `report --json` and
`report --json --html FILE` are timed as whole processes, median of N runs
each (default 7), alternating; the page's size is that of the last one.

Goals (issue 21): the page <= 2 MB; `report --html` <= 2 s median.

The report's own checks are most of its time (`report` alone is timed beside
it); the charts are drawn while they run.

Run: .venv/bin/python benchmarks/report_html.py [RUNS] [RUNTIME]
(ROLLOUT_KEEP_PAGE=FILE keeps a copy of the page.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rollout import ROLLOUT, Measured  # benchmarks/rollout.py: a timed whole-process run

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 7
RUNTIME = sys.argv[2] if len(sys.argv) > 2 else "auto"
PLAN = "kind: rollout\nstages: [10, 50, 100]\nsoak: 5s\ngates: {max_added_latency_p95_ms: 5000, min_requests: 5}\n"
AT_EACH_STAGE_S = 15
MAX_BYTES = 2 * 1024 * 1024


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        sb = Path(tmp) / "sandbox"
        subprocess.run([ROLLOUT, "sandbox", "up", str(sb), "--runtime", RUNTIME, "--gateway-port", "0",
                        "--simulator-port", "0"], check=True, capture_output=True)
        base = [ROLLOUT, "-w", str(sb)]
        load = None
        try:
            status = json.loads(subprocess.run([*base, "sandbox", "status", "--json"], capture_output=True,
                                               text=True).stdout)
            (sb / "books").mkdir()
            (sb / "books" / "rollout.yaml").write_text(PLAN)
            with (sb / "rollout.yaml").open("a") as config:
                config.write(f"playbooks: ./books\nmetrics: {{source: prometheus, url: {status['prometheus']['url']}}}\n")
            load = subprocess.Popen([*base, "sandbox", "traffic", "--rps", "20", "--duration", "600"],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(AT_EACH_STAGE_S)
            for n in range(3):
                moved = subprocess.run([*base, "advance", "--yes", "--reason", f"benchmark: step {n + 1}"],
                                       capture_output=True, text=True)
                if moved.returncode != 0:
                    print(f"advance {n + 1} failed (exit {moved.returncode}): {moved.stdout[-800:]}{moved.stderr}")
                    return 1
                time.sleep(AT_EACH_STAGE_S)
            code = subprocess.run([*base, "report", "--json"], capture_output=True).returncode
            plain = Measured("rollout report (for comparison)", float("inf"))
            html = Measured("rollout report --html", 2.0)
            page = Path(tmp) / "report.html"
            for _ in range(RUNS):
                plain.run([*base, "report", "--json"], ok=code)
                html.run([*base, "report", "--json", "--html", str(page)], ok=code)
            size = page.stat().st_size if page.exists() else None
            if os.environ.get("ROLLOUT_KEEP_PAGE"):  # to look at it afterwards
                Path(os.environ["ROLLOUT_KEEP_PAGE"]).write_bytes(page.read_bytes())
            text = page.read_text() if page.exists() else ""
        finally:
            if load is not None:
                load.terminate()
                load.wait(timeout=30)
            subprocess.run([ROLLOUT, "sandbox", "down", str(sb), "--no-report"], capture_output=True)

    print(f"sandbox runtime: {status.get('runtime', '?')}; a 3-stage rollout (0 -> 10 -> 50 -> 100 %, "
          f"{AT_EACH_STAGE_S} s at each), the app at 20 req/s; report exit {code}; medians of {RUNS} runs; "
          f"load averages {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    ok = True
    for measured in (plain, html):
        line, met = measured.verdict()
        ok = ok and (met or measured is plain)
        print(line)
    if size is None:
        print("report --html wrote no page: MISSED")
        return 1
    charts = text.count('<figure class="chart"')
    met = size <= MAX_BYTES and charts == 5
    print(f"page: {size / 1024:.0f} KiB, {charts} charts, {html.counts(lambda o: o['verdict'])} verdict; "
          f"goal <= {MAX_BYTES // (1024 * 1024)} MB {'met' if met else 'MISSED'}")
    return 0 if ok and met else 1


if __name__ == "__main__":
    raise SystemExit(main())
