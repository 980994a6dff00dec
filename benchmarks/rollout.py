"""Wall time of `rollout advance --dry-run` and `rollout report` on a healthy sandbox; exits 1 on a missed goal.

Each as a whole process (start-up included), median of N successful runs
(default 7); a run that exits with another code than expected is counted and
reported, never timed. `advance --dry-run` is timed twice: at 0 % (the first
step: soak and metrics-window gates skipped) and at 10 % (after a real
advance: every gate runs, the /metrics/ scrape and the window included; the
verdict is HOLD, exit 3, because the 48 h soak has just begun). The request
and drill counts printed are measured from each run's `--json` output, not
assumed.

The sandbox's rollout.yaml reads its windows from the sandbox's Prometheus;
the first `advance --dry-run` at 10 % and `report` are timed with
`metrics: {source: gateway}` (the gateway's /metrics/ scrape), and a third
`advance --dry-run` at 10 % with `metrics.source: prometheus` (the sandbox's
own when it runs one, else Debian's /usr/bin/prometheus started here on a
free loopback port, scraping the gateway every second): its figure prints the
queries each run sent and how long each waited for Prometheus (only for a
target whose last scrape failed; a healthy sandbox's runs wait 0 s).

Goals: `advance --dry-run` <= 1 s (issue 11: one evaluation shares its
check answers), `report` <= 2 s; exit 1 when one is missed. The answers the
checks shared are printed beside the requests sent. The sandbox uses the docker runtime when the engine
and image are there, else the process runtime; pass `process` or `docker` as
the second argument to choose.

Run: .venv/bin/python benchmarks/rollout.py [RUNS] [RUNTIME]
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 7
RUNTIME = sys.argv[2] if len(sys.argv) > 2 else "auto"
ROLLOUT = shutil.which("rollout", path=str(Path(sys.executable).parent)) or "rollout"


@dataclass
class Measured:
    """Times of the runs that exited as expected, what their JSON said, and the runs that did not."""

    name: str
    goal_s: float
    times: list[float] = field(default_factory=list)
    outputs: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)

    def run(self, argv: list[str], ok: int) -> None:
        started = time.perf_counter()
        proc = subprocess.run(argv, capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        if proc.returncode != ok:
            self.failures.append(f"exit {proc.returncode}: {(proc.stderr.strip() or proc.stdout[-300:]).splitlines()[-1:]}")
            return
        self.times.append(elapsed)
        self.outputs.append(json.loads(proc.stdout))

    def counts(self, key: Any) -> str:
        """The distinct values of `key(output)` over the timed runs, e.g. '16' or '16, 17'."""
        return ", ".join(str(v) for v in sorted({key(o) for o in self.outputs})) or "-"

    def verdict(self) -> tuple[str, bool]:
        if not self.times:
            return f"{self.name}: no successful run ({len(self.failures)} failed); goal <= {self.goal_s:g} s MISSED", False
        median = statistics.median(self.times)
        met = median <= self.goal_s
        failed = f"; {len(self.failures)} run(s) failed and were not timed" if self.failures else ""
        return (f"{self.name}: median {median:.2f} s (min {min(self.times):.2f}, max {max(self.times):.2f}, "
                f"{len(self.times)} runs{failed}); goal <= {self.goal_s:g} s {'met' if met else 'MISSED'}"), met and not self.failures


def set_metrics(sb: Path, line: str) -> None:
    """The workspace's `metrics:` line replaced (`sandbox up` writes one when it runs Prometheus)."""
    config = sb / "rollout.yaml"
    kept = [x for x in config.read_text().splitlines() if not x.startswith("metrics:")]
    config.write_text("\n".join([*kept, line]) + "\n")


def use_prometheus(sb: Path, folder: Path) -> tuple[subprocess.Popen[bytes] | None, str]:
    """Point the sandbox's workspace at a Prometheus: the sandbox's own, else one started here (returned to stop)."""
    status = json.loads(subprocess.run([ROLLOUT, "-w", str(sb), "sandbox", "status", "--json"],
                                       capture_output=True, text=True).stdout)
    url, proc = status.get("prometheus_url") or (status.get("prometheus") or {}).get("url"), None
    if not url:
        import socket
        import urllib.parse
        import urllib.request

        with socket.socket() as s:  # a free loopback port (Prometheus cannot report one it chose itself)
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        gateway = urllib.parse.urlsplit(status.get("gateway_url") or status["gateway"]["url"])
        folder.mkdir()
        (folder / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s}\nscrape_configs:\n"
            f"  - job_name: litellm\n    metrics_path: /metrics/\n    static_configs: [{{targets: ['{gateway.netloc}']}}]\n"
            f"    authorization: {{credentials_file: {sb / '.rollout' / 'master.key'}}}\n")
        proc = subprocess.Popen(["/usr/bin/prometheus", f"--config.file={folder / 'prometheus.yml'}",
                                 f"--storage.tsdb.path={folder / 'data'}", f"--web.listen-address=127.0.0.1:{port}"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{port}"
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        for _ in range(100):
            try:
                opener.open(f"{url}/-/ready", timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        time.sleep(3)  # a few scrapes of the gateway
    set_metrics(sb, f"metrics: {{source: prometheus, url: {url}}}")
    return proc, url


def waits(measured: Measured) -> str:
    """Seconds each run waited for a good scrape of a failed target (`metrics.waited_s` in --json)."""
    seen = [(o.get("metrics") or {}).get("waited_s") for o in measured.outputs]
    known = [w for w in seen if w is not None]
    return f"median {statistics.median(known):.2f} s, max {max(known):.2f} s" if known else "not reported"


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        sb = str(Path(tmp) / "sandbox")
        subprocess.run([ROLLOUT, "sandbox", "up", sb, "--runtime", RUNTIME, "--gateway-port", "0",
                        "--simulator-port", "0"], check=True, capture_output=True)
        base = [ROLLOUT, "-w", sb]
        at_zero = Measured("rollout advance --dry-run at 0% (first step)", 1.0)
        at_ten = Measured("rollout advance --dry-run at 10% (every gate; metrics.source: gateway)", 1.0)
        report = Measured("rollout report at 10% (metrics.source: gateway)", 2.0)
        with_prom = Measured("rollout advance --dry-run at 10% with Prometheus (metrics.source: prometheus)", 1.0)
        prometheus = None
        try:
            runtime = json.loads(subprocess.run([*base, "sandbox", "status", "--json"],
                                                capture_output=True, text=True).stdout).get("runtime", "?")
            set_metrics(Path(sb), "metrics: {source: gateway}")
            subprocess.run([*base, "health"], capture_output=True)  # warm the gateway once
            for _ in range(RUNS):
                at_zero.run([*base, "advance", "--dry-run", "--json"], ok=0)
            moved = subprocess.run([*base, "advance", "--yes", "--reason", "benchmark"], capture_output=True, text=True)
            if moved.returncode != 0:
                print(f"advance 0% -> 10% failed (exit {moved.returncode}): {moved.stderr.strip()}")
                return 1
            for _ in range(RUNS):
                at_ten.run([*base, "advance", "--dry-run", "--json"], ok=3)  # HOLD: the soak has just begun
            for _ in range(RUNS):
                report.run([*base, "report", "--json"], ok=3)
            prometheus, url = use_prometheus(Path(sb), Path(tmp) / "prometheus")
            for _ in range(RUNS):
                with_prom.run([*base, "advance", "--dry-run", "--json"], ok=3)
        finally:
            if prometheus is not None:
                prometheus.terminate()
                prometheus.wait(timeout=15)
            subprocess.run([ROLLOUT, "sandbox", "down", sb], capture_output=True)

    print(f"sandbox runtime: {runtime}; each figure: whole process, median of the successful runs of {RUNS}; "
          f"load averages {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    print(f"  at 0%: {at_zero.counts(lambda o: o['requests_sent'])} check requests sent, "
          f"{at_zero.counts(lambda o: o.get('requests_shared', 0))} answers shared per run; gates run: "
          f"{at_zero.counts(lambda o: sum(g['status'] != 'skipped' for g in o['gates']))}")
    print(f"  at 10%: {at_ten.counts(lambda o: o['requests_sent'])} check requests sent, "
          f"{at_ten.counts(lambda o: o.get('requests_shared', 0))} answers shared per run; gates run: "
          f"{at_ten.counts(lambda o: sum(g['status'] != 'skipped' for g in o['gates']))}")
    print(f"  report: {report.counts(lambda o: o['requests_sent'])} check requests and "
          f"{report.counts(lambda o: len(o['rollback_readiness']))} rollback drills per run")
    print(f"  at 10% with Prometheus ({url}): {with_prom.counts(lambda o: (o.get('metrics') or {}).get('queries'))} "
          f"queries per run; window source {with_prom.counts(lambda o: (o.get('metrics') or {}).get('source'))}; "
          f"waited for a failed target's scrape: {waits(with_prom)}")
    ok = True
    for measured in (at_zero, at_ten, report, with_prom):
        line, met = measured.verdict()
        ok = ok and met
        print(line)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
