"""Wall time of `rollout advance --dry-run` and `rollout report` on a healthy sandbox.

Each as a whole process (start-up included), median of N runs (default 7).
Goals: `advance --dry-run` <= 1 s, `report` <= 2 s; exit 1 when one is missed.
The check requests one evaluation sends (and the answers its checks share)
are read from `advance --dry-run --json` and printed.
The sandbox uses the docker runtime when the engine and image are there, else
the process runtime; pass `process` or `docker` as the second argument to choose.
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
from pathlib import Path

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 7
RUNTIME = sys.argv[2] if len(sys.argv) > 2 else "auto"
ROLLOUT = shutil.which("rollout", path=str(Path(sys.executable).parent)) or "rollout"


def timed(argv: list[str], ok: tuple[int, ...]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode not in ok:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip() or proc.stdout[-500:]}")
    return elapsed


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        sb = str(Path(tmp) / "sandbox")
        subprocess.run([ROLLOUT, "sandbox", "up", sb, "--runtime", RUNTIME, "--gateway-port", "0",
                        "--simulator-port", "0"], check=True, capture_output=True)
        try:
            runtime = subprocess.run([ROLLOUT, "-w", sb, "sandbox", "status", "--json"],
                                     capture_output=True, text=True).stdout
            timed([ROLLOUT, "-w", sb, "health"], (0,))  # warm the gateway once
            counted = json.loads(subprocess.run([ROLLOUT, "-w", sb, "advance", "--dry-run", "--json"],
                                                capture_output=True, text=True).stdout)
            advance = [timed([ROLLOUT, "-w", sb, "advance", "--dry-run"], (0,)) for _ in range(RUNS)]
            report = [timed([ROLLOUT, "-w", sb, "report"], (0,)) for _ in range(RUNS)]
        finally:
            subprocess.run([ROLLOUT, "sandbox", "down", sb], capture_output=True)
    kind = "docker" if '"runtime": "docker"' in runtime else "process"
    sent, shared = counted["requests_sent"], counted.get("requests_shared", 0)
    advance_met = statistics.median(advance) <= 1.0
    report_met = statistics.median(report) <= 2.0
    print(f"sandbox runtime: {kind}; each figure: whole process, median of {RUNS} runs; "
          f"load averages {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    print(f"rollout advance --dry-run (healthy, 0% -> 10%, {sent} check requests sent, {shared} answers shared): "
          f"median {statistics.median(advance):.2f} s (min {min(advance):.2f}, max {max(advance):.2f}); "
          f"goal <= 1 s: {'met' if advance_met else 'MISSED'}")
    print(f"rollout report (gates + 4 rollback drills): median {statistics.median(report):.2f} s "
          f"(min {min(report):.2f}, max {max(report):.2f}); goal <= 2 s: {'met' if report_met else 'MISSED'}")
    return 0 if advance_met and report_met else 1


if __name__ == "__main__":
    raise SystemExit(main())
