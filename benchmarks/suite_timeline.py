"""Where the whole suite's wall time goes, from a timeline the tests wrote.

    ROLLOUT_TEST_TIMELINE=/tmp/timeline.jsonl ./scripts/test -q
    .venv/bin/python benchmarks/suite_timeline.py /tmp/timeline.jsonl [--top 30]

Prints the pytest wall (first test's start to the last test's end), each worker's busy
seconds and when it ran out of work, the modules by seconds (and on how many workers they
ran), the slowest tests, and the tests that cost their worker the most CPU. tests/conftest.py
writes one JSON line per test: its worker, node id, start and end (epoch seconds; setup and
teardown included) and the CPU seconds of the worker and of the subprocesses it waited for
(what a test starts detached, a sandbox's gateway for one, is not in them).
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("timeline", type=Path)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    rows = [json.loads(line) for line in args.timeline.read_text().splitlines() if line.strip()]
    if not rows:
        raise SystemExit(f"{args.timeline}: no test recorded")
    first = min(row["start"] for row in rows)
    last = max(row["end"] for row in rows)
    print(f"tests: {len(rows)}, test-seconds: {sum(r['end'] - r['start'] for r in rows):.0f}, "
          f"pytest wall (first start to last end): {last - first:.0f} s, "
          f"worker CPU seconds: {sum(r['cpu'] for r in rows if 'cpu' in r):.0f}"
          + ("" if all("cpu" in r for r in rows) else " (not recorded for every test)"))

    workers: dict[str, list[dict]] = defaultdict(list)
    for row in rows:
        workers[row["worker"]].append(row)
    print("\nworker  tests  busy s  done at s")
    for name in sorted(workers):
        own = workers[name]
        busy = sum(r["end"] - r["start"] for r in own)
        print(f"{name:6}  {len(own):5}  {busy:6.0f}  {max(r['end'] for r in own) - first:9.0f}")

    modules: dict[str, float] = defaultdict(float)
    module_workers: dict[str, set[str]] = defaultdict(set)
    module_span: dict[str, list[float]] = {}
    for row in rows:
        module = row["test"].split("::", 1)[0]
        modules[module] += row["end"] - row["start"]
        module_workers[module].add(row["worker"])
        span = module_span.setdefault(module, [row["start"], row["end"]])
        span[0], span[1] = min(span[0], row["start"]), max(span[1], row["end"])
    print(f"\nmodules by seconds (top {args.top}): seconds, workers, from s .. to s")
    for module, seconds in sorted(modules.items(), key=lambda kv: -kv[1])[: args.top]:
        lo, hi = module_span[module]
        print(f"{seconds:7.0f}  {len(module_workers[module])}  {lo - first:5.0f} .. {hi - first:5.0f}  {module}")

    print(f"\nslowest tests (top {args.top}): seconds, worker, from s")
    for row in sorted(rows, key=lambda r: r["start"] - r["end"])[: args.top]:
        print(f"{row['end'] - row['start']:7.1f}  {row['worker']:5}  {row['start'] - first:5.0f}  {row['test']}")

    print(f"\nmost worker CPU (top {args.top}): CPU s, seconds, worker, from s")
    for row in sorted(rows, key=lambda r: -r.get("cpu", 0.0))[: args.top]:
        print(f"{row.get('cpu', 0.0):7.1f}  {row['end'] - row['start']:7.1f}  {row['worker']:5}  "
              f"{row['start'] - first:5.0f}  {row['test']}")


if __name__ == "__main__":
    main()
