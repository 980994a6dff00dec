"""Start-up of the commands an operator needs fastest: `rollout rollback --level 1` and `rollout --help`.

Each is timed as a whole process (wall clock, and the CPU time it used, which
moves less when the machine is busy), `N` rounds interleaved (level 1, then
--help, then level 1, ...), and the medians compared against the goals:
level 1 <= 0.3 s, --help <= 0.2 s. Level 1 runs on a workspace whose env file
has about 200 lines and starts from 10 % each round (that set-up is not timed),
so every run really edits both files and prints its plain-text report, as an
operator at a terminal sees it. The processes get bytecode as a pip install
has it (PYTHONDONTWRITEBYTECODE is unset for them: the first, untimed run
writes what is missing).

It also checks what level 1 loads (`python -X importtime`): none of rich,
pydantic, httpx, docker (their import alone costs more than the rollback).

Exit 0 when every goal is met, 1 otherwise. The load average before and after
is printed: other work on the machine moves the wall-clock figures.

Usage: .venv/bin/python benchmarks/rollback.py [N]   (default 21)
"""

from __future__ import annotations

import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

from rollout_cli.sandbox.sample_app import (  # noqa: E402 - after the sys.path line, so a checkout without install works
    env_text,
    flagd_text,
    workspace_yaml,
    write_sample_app,
)

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 21
ROLLOUT = shutil.which("rollout", path=str(Path(sys.executable).parent)) or "rollout"
GOALS = {"level1": 0.3, "help": 0.2}  # median wall-clock seconds, whole process (issue 8)
MUST_NOT_LOAD = ("rich", "pydantic", "pydantic_core", "httpx", "docker")
# what a user's shell gives it: bytecode caches used and written
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def big_env(percentage: int) -> str:
    filler = "".join(f"SERVICE_{i:03d}_URL=https://svc{i}.internal.example/api  # service {i}\n" for i in range(190))
    return "# generated for the benchmark\n" + filler + env_text(percentage, enabled=True)


def timed(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the process) for one run, which must exit 0."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, env=ENV)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def loaded_packages(argv: list[str]) -> set[str]:
    """Top-level packages a run imports, from `python -X importtime`."""
    proc = subprocess.run([sys.executable, "-X", "importtime", ROLLOUT, *argv[1:]], capture_output=True,
                          text=True, env=ENV)
    names = set()
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and line.count("|") == 2:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    return names


def summary(label: str, runs: list[tuple[float, float]], goal: float) -> bool:
    wall = [w for w, _ in runs]
    cpu = [c for _, c in runs]
    median = statistics.median(wall)
    ok = median <= goal
    print(f"{label}: median {median:.3f} s wall over {len(runs)} runs (min {min(wall):.3f}, max {max(wall):.3f}), "
          f"median CPU {statistics.median(cpu):.3f} s; goal <= {goal} s: {'met' if ok else 'MISSED'}")
    return ok


def main() -> int:
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} CPUs)")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        app = write_sample_app(root / "app", percentage=10)
        (root / "ws").mkdir()
        (root / "ws" / "rollout.yaml").write_text(workspace_yaml())
        level1_argv = [ROLLOUT, "-w", str(root / "ws"), "rollback", "--level", "1", "--yes",
                       "--reason", "benchmark"]
        help_argv = [ROLLOUT, "--help"]

        def reset() -> None:
            app.env_file.write_text(big_env(10))
            app.flags_file.write_text(flagd_text(10))

        reset()
        timed(level1_argv)  # warm-up, untimed: writes any missing bytecode, fills the page cache
        timed(help_argv)
        reset()
        found = loaded_packages(level1_argv)
        level1, help_runs = [], []
        for _ in range(RUNS):
            reset()
            level1.append(timed(level1_argv))
            help_runs.append(timed(help_argv))
        lines = len(big_env(10).splitlines())
    ok = summary(f"rollout rollback --level 1 ({lines}-line env file, plain-text report)", level1, GOALS["level1"])
    ok = summary("rollout --help", help_runs, GOALS["help"]) and ok
    heavy = sorted(set(MUST_NOT_LOAD) & found)
    print(f"level 1 loads {'none of ' + ', '.join(MUST_NOT_LOAD) if not heavy else 'ALSO ' + ', '.join(heavy)}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0 if ok and not heavy else 1


if __name__ == "__main__":
    sys.exit(main())
