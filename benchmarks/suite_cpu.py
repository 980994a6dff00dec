"""Where a command's CPU goes on this machine, by kind of process: the suite's, for one.

    .venv/bin/python benchmarks/suite_cpu.py [--json FILE] -- ./scripts/test -q

Runs the command and, every 0.3 s until it ends, reads every process's CPU seconds
(/proc/PID/stat: user + system) and command line, the Docker engine's containers
included (they are processes of this machine). Prints the CPU seconds the command's
run cost, by kind (LiteLLM as a process, LiteLLM in a container, the pytest workers,
the `rollout` commands they start, the simulator, the sample app, Prometheus, ...), then
the 25 costliest processes. A process that lives less than 0.3 s is missed or counted
short, so the total is a floor. The command's own exit code is this script's.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")
KINDS = (  # the first pattern a command line matches names its kind
    ("LiteLLM, process", r"\.venv/bin/litellm"),
    ("LiteLLM, container", r"^/opt/litellm/|^runc init"),  # a container's first process is `runc init` until it execs
    ("pytest workers", r"^\[pytest-xdist|import sys;exec\(eval\(sys\.stdin\.readline\(\)\)\)"),
    ("simulator", r"rollout_cli\.simulator"),
    ("sample app", r"sandbox/app_main\.py"),
    ("rollout commands", r"rollout_cli|bin/rollout\b"),
    ("prometheus, promtool, node_exporter", r"prometheus|promtool"),
    ("chromium", r"chrom"),
    ("docker engine", r"dockerd|containerd|docker-proxy"),
    ("git", r"(^|/)git\b"),
    ("other python", r"python"),
    ("other", r""),
)


def kind(cmd: str) -> str:
    return next(name for name, pattern in KINDS if re.search(pattern, cmd))


def read(pid: str) -> tuple[str, float, str] | None:
    """(start ticks, CPU seconds, command line) of one process, or None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return fields[19], (int(fields[11]) + int(fields[12])) / TICK, cmd or stat[stat.index("(") + 1:stat.rindex(")")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="also write every process's CPU seconds and command line here")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to measure after --")
    before = {(pid, seen[0]): seen[1] for pid in os.listdir("/proc") if pid.isdigit() and (seen := read(pid))}
    cpu: dict[tuple[str, str], list] = {}  # (pid, start ticks) -> [CPU seconds of this run, command line]
    started = time.monotonic()
    proc = subprocess.Popen(command)
    while proc.poll() is None:
        for pid in os.listdir("/proc"):
            if pid.isdigit() and (seen := read(pid)):
                key = (pid, seen[0])
                cpu[key] = [seen[1] - before.get(key, 0.0), seen[2] if kind(seen[2]) != "other" else
                            cpu.get(key, [0, seen[2]])[1]]  # keep a better name than a later anonymous one
        time.sleep(0.3)
    wall = time.monotonic() - started
    total = sum(c for c, _ in cpu.values())
    by_kind: dict[str, list[float]] = {}
    for seconds, cmd in cpu.values():
        entry = by_kind.setdefault(kind(cmd), [0.0, 0])
        entry[0] += seconds
        entry[1] += 1
    print(f"\nsuite_cpu: {total:.0f} CPU seconds in {wall:.0f} s of wall ({total / wall:.2f} cores busy on average, "
          f"{os.cpu_count()} cores), {len(cpu)} processes seen")
    for name, (seconds, count) in sorted(by_kind.items(), key=lambda kv: -kv[1][0]):
        print(f"{seconds:8.0f} s  {100 * seconds / max(total, 1e-9):5.1f} %  {count:5} processes  {name}")
    print("\ncostliest processes: CPU s, command line")
    for seconds, cmd in sorted(cpu.values(), key=lambda v: -v[0])[:25]:
        print(f"{seconds:8.1f}  {cmd[:150]}")
    if args.json:
        args.json.write_text(json.dumps([[round(s, 2), c] for s, c in cpu.values() if s >= 0.05]))
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
