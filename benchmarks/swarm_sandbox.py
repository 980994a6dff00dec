"""Wall time of `rollout sandbox up --runtime swarm --replicas 2`, the images already built.

Each run starts from a new, empty DIR (as on a fresh clone: the sandbox's swarm engine is new), is
timed as a whole process until `up` exits 0 with both replicas ready, then `sandbox down DIR` (not
timed) removes it all. The new engine copies both images from the machine's engine, unless the
machine's image cache holds them (docs/SETUP.md, "The image cache": any swarm sandbox's `down`
leaves it, so only the first run on a machine, or after an image was rebuilt, copies); each run
says whether the cache was there when it began (`image_cache`). The median of N runs is
compared with the goal (60 s). The figures are split with the step lines `up` prints (engine,
images and stack; replicas ready), and the load average before and after each run is printed:
two LiteLLM replicas starting at once share the machine's cores with whatever else runs.

Exit 0 when the median meets the goal, 1 otherwise.

Usage (root): .venv/bin/python benchmarks/swarm_sandbox.py [N]   (default 3)
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

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
GOAL_S = 60.0
IMAGE_CACHE = Path(os.environ.get("ROLLOUT_SWARM_IMAGE_CACHE", "/var/lib/docker-rollout-image-cache"))
ROLLOUT = shutil.which("rollout", path=str(Path(sys.executable).parent)) or "rollout"
ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "DOCKER_HOST")}


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def one_run(root: Path) -> dict[str, float]:
    started = time.perf_counter()
    marks: dict[str, float] = {}
    up = subprocess.Popen([ROLLOUT, "sandbox", "up", str(root), "--runtime", "swarm", "--replicas", "2",
                           "--gateway-port", "0", "--simulator-port", "0", "--timeout", "300"],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
    assert up.stdout is not None
    for line in up.stdout:  # the step lines, as they come
        if line.startswith("waiting for the gateway"):
            marks["engine_images_stack_s"] = time.perf_counter() - started
        if line.startswith("starting the sample app"):
            marks["replicas_ready_s"] = time.perf_counter() - started
    if up.wait(timeout=600) != 0:
        raise SystemExit(f"sandbox up failed (exit {up.returncode}); see {root}/.rollout/")
    marks["total_s"] = time.perf_counter() - started
    return marks


def main() -> int:
    if os.geteuid() != 0:
        raise SystemExit("run as root: the swarm sandbox makes a network namespace and a second dockerd")
    totals: list[float] = []
    with tempfile.TemporaryDirectory(prefix="swarm-bench-") as tmp:
        for run in range(1, RUNS + 1):
            root = Path(tmp) / f"sb{run}"
            before, cached = load(), (IMAGE_CACHE / "rollout-images").is_file()
            try:
                marks = one_run(root)
            finally:
                down = subprocess.run([ROLLOUT, "sandbox", "down", str(root), "--no-report", "--json"],
                                      capture_output=True, text=True, env=ENV, timeout=300)
            totals.append(marks["total_s"])
            print(json.dumps({"run": run, **{k: round(v, 1) for k, v in marks.items()}, "image_cache": cached,
                              "load_before": before, "load_after": load(), "down_exit": down.returncode}),
                  flush=True)
    median = statistics.median(totals)
    verdict = "meets" if median <= GOAL_S else "misses"
    print(f"sandbox up --runtime swarm --replicas 2: median {median:.1f} s of {RUNS} "
          f"(min {min(totals):.1f}, max {max(totals):.1f}); goal <= {GOAL_S:g} s: {verdict}; "
          f"{os.cpu_count()} cores, load {load()}")
    return 0 if median <= GOAL_S else 1


if __name__ == "__main__":
    sys.exit(main())
