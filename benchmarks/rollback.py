"""Wall time of `rollout rollback --level 1` and `rollout --help`, each as a whole process.

Level 1 runs on a workspace whose env file has about 200 lines. Each level-1
run starts from 10% again (the set-up between runs is not timed), so every run
really edits both files. Prints the median of N runs (default 15).
"""

from __future__ import annotations

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

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 15
ROLLOUT = shutil.which("rollout", path=str(Path(sys.executable).parent)) or "rollout"


def big_env(percentage: int) -> str:
    filler = "".join(f"SERVICE_{i:03d}_URL=https://svc{i}.internal.example/api  # service {i}\n" for i in range(190))
    return "# generated for the benchmark\n" + filler + env_text(percentage, enabled=True)


def timed(argv: list[str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}: {proc.stderr.strip()}")
    return elapsed


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        app = write_sample_app(root / "app", percentage=10)
        (root / "ws").mkdir()
        (root / "ws" / "rollout.yaml").write_text(workspace_yaml())
        lines = len(big_env(10).splitlines())
        level1 = []
        for _ in range(RUNS):
            app.env_file.write_text(big_env(10))
            app.flags_file.write_text(flagd_text(10))
            level1.append(timed([ROLLOUT, "-w", str(root / "ws"), "rollback", "--level", "1", "--yes", "--json"]))
        help_times = [timed([ROLLOUT, "--help"]) for _ in range(RUNS)]
    print(f"rollout rollback --level 1 ({lines}-line env file): median {statistics.median(level1):.3f} s "
          f"over {RUNS} runs (min {min(level1):.3f}, max {max(level1):.3f}); goal <= 0.5 s, budget 30 s")
    print(f"rollout --help: median {statistics.median(help_times):.3f} s over {RUNS} runs "
          f"(min {min(help_times):.3f}, max {max(help_times):.3f}); goal <= 0.3 s")


if __name__ == "__main__":
    main()
