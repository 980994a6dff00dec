"""How fast are the checks? `rollout health` and `rollout smoke` as whole processes, timed.

With every model made 300 ms slow in the simulator (the global latency fault),
`rollout health` over five models should cost about one slow answer, not five:
goal <= 1.2 s of wall time including interpreter start-up, against >= 1.5 s
for a one-at-a-time run (ROLLOUT_CHECKS_SEQUENTIAL=1). With one model hanging,
`rollout health --timeout 1.5` must not wait on it longer than its timeout:
goal <= 3.0 s (the speed claim the health test used to make inside the suite).
The smoke suite's wall time and request count are printed too.

Only runs that exit as expected are timed (health 0, or 1 with a model
hanging; smoke 0); any other run is counted, printed, and fails the benchmark.
The exit code is 1 when a goal is missed or a run failed.

Run: .venv/bin/python benchmarks/checks.py [--rounds N] [--latency-ms MS]
It starts its own sandbox (simulator + real LiteLLM proxy, process runtime) in
a temporary folder and stops it at the end.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROLLOUT = str(Path(sys.executable).with_name("rollout"))


def timed(argv: list[str], env: dict[str, str]) -> tuple[float, int]:
    started = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True)
    took = time.perf_counter() - started
    return took, done.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="runs of each measurement (median reported)")
    parser.add_argument("--latency-ms", type=int, default=300, help="latency added to every model")
    args = parser.parse_args()

    from rollout_cli.sandbox import world

    with tempfile.TemporaryDirectory(prefix="rollout-bench-") as tmp:
        root = Path(tmp) / "sb"
        print("starting a sandbox (simulator + LiteLLM proxy)...", flush=True)
        info = world.up(root, runtime="process", gateway_port=0, simulator_port=0, timeout=90)
        try:
            env = {**os.environ, "OPENROUTER_API_BASE": info.simulator_url + "/api/v1"}
            env.pop("ROLLOUT_CHECKS_SEQUENTIAL", None)
            base = [ROLLOUT, "-w", str(root)]
            info.admin.clear()
            # warm-up: the first request through a fresh proxy pays its lazy set-up
            subprocess.run([*base, "health"], env=env, capture_output=True)
            startup = [timed([ROLLOUT, "--help"], env)[0] for _ in range(args.rounds)]
            info.admin.set_fault("*", latency_ms=args.latency_ms)

            concurrent = [timed([*base, "health"], env) for _ in range(args.rounds)]
            sequential_env = {**env, "ROLLOUT_CHECKS_SEQUENTIAL": "1"}
            sequential = [timed([*base, "health"], sequential_env) for _ in range(args.rounds)]

            info.admin.reset_stats()
            smoke = [timed([*base, "smoke"], env) for _ in range(args.rounds)]
            smoke_requests = info.admin.stats()["total"] / args.rounds
            info.admin.clear()
            info.admin.set_fault("kimi-k2", mode="hang")
            hanging = [timed([*base, "health", "--timeout", "1.5"], env) for _ in range(args.rounds)]
            info.admin.clear()
        finally:
            world.down(root)

    def ok_times(runs: list[tuple[float, int]], expected: int) -> list[float]:
        return [t for t, code in runs if code == expected]

    def line(name: str, runs: list[tuple[float, int]], expected: int = 0) -> str:
        times = ok_times(runs, expected)
        bad = sorted(code for _, code in runs if code != expected)
        failed = f"; {len(bad)} run(s) exited {bad}, not timed" if bad else ""
        if not times:
            return f"{name:<34} no run exited {expected}{failed}"
        return (f"{name:<34} median {statistics.median(times):5.2f} s  "
                f"(min {min(times):.2f}, max {max(times):.2f}; {len(times)} runs exit {expected}{failed})")

    print(f"\nevery model {args.latency_ms} ms slow, 5 models, {args.rounds} runs each, whole processes:")
    print(f"{'rollout --help (start-up only)':<34} median {statistics.median(startup):5.2f} s")
    print(line("rollout health (concurrent)", concurrent))
    print(line("rollout health (sequential)", sequential))
    print(line("rollout smoke (default suite)", smoke))
    print(f"{'smoke requests per run':<34} {smoke_requests:.0f} upstream (simulator count; plan: 5 x 2 + 1 drill)")
    print("no latency fault, kimi-k2 hanging:")
    print(line("rollout health --timeout 1.5", hanging, expected=1))

    def median_of(runs: list[tuple[float, int]], expected: int = 0) -> float | None:
        times = ok_times(runs, expected)
        return statistics.median(times) if times else None

    goals = [
        ("health (concurrent) <= 1.2 s", median_of(concurrent), lambda m: m <= 1.2),
        ("sequential health >= 1.5 s (the concurrency is real)", median_of(sequential), lambda m: m >= 1.5),
        ("health with a hanging model <= 3.0 s", median_of(hanging, 1), lambda m: m <= 3.0),
        ("smoke ran", median_of(smoke), lambda m: True),
    ]
    print()
    ok = True
    for name, median, judge in goals:
        met = median is not None and judge(median)
        ok = ok and met
        shown = f"{median:.2f} s" if median is not None else "no successful run"
        print(f"goal {name}: {shown}: {'met' if met else 'MISSED'}")
    failed_runs = sum(code != 0 for _, code in concurrent + sequential + smoke) + sum(code != 1 for _, code in hanging)
    if failed_runs:
        print(f"{failed_runs} run(s) exited unexpectedly: the figures above leave them out")
    return 0 if ok and not failed_runs else 1


if __name__ == "__main__":
    raise SystemExit(main())
