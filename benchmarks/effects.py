"""Time from `rollout rollback --level 1` to the sample app's last request through the gateway, per app runtime.

A sandbox (process gateway) with its sample app at 10% under 25 req/s, as a
process and as a container bind-mounting .env and flags.json one by one. Each
run starts the rollback as a whole `rollout` process; the figure is when the
app's last request through the gateway left (from the app's own request log),
counted from the process start, and the whole command's wall time (it includes
verify.traffic's 5 s quiet period). Prints the median of N runs per runtime
(default 3); exits 1 when a median misses the integration plan's promise:
level 1 in 30 s.
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

from rollout_cli.sandbox import world  # noqa: E402 - after the sys.path line, so a checkout without install works
from rollout_cli.sandbox.app import AppControl, load_app, start_app  # noqa: E402
from rollout_cli.sandbox.sample_app import env_text, flagd_text  # noqa: E402
from rollout_cli.simulator import GATEWAY_ALIASES  # noqa: E402

RUNS = int(sys.argv[1]) if len(sys.argv) > 1 else 3
GOAL_S = 30.0
ROLLOUT = shutil.which("rollout", path=str(Path(sys.executable).parent)) or "rollout"


def at_stage(root: Path, gateway_url: str, percentage: int = 10) -> None:
    """Both of the sandbox app's files at `percentage`, written in place (a container holds their inodes)."""
    for path, text in ((root / "app" / ".env", env_text(percentage, True, gateway_url)),
                       (root / "app" / "flags.json", flagd_text(percentage))):
        with open(path, "r+") as handle:
            handle.write(text)
            handle.truncate()


def one(root: Path, gateway_url: str, control: AppControl) -> tuple[float, float]:
    at_stage(root, gateway_url)
    control.load(25, 60, "glm-4.5-air", GATEWAY_ALIASES["glm-4.5-air"])
    time.sleep(3)
    started = time.time()
    proc = subprocess.run([ROLLOUT, "-w", str(root), "rollback", "--level", "1", "--yes"],
                          capture_output=True, text=True)
    wall = time.time() - started
    if proc.returncode != 0:
        raise SystemExit(f"rollback exited {proc.returncode}: {proc.stderr or proc.stdout}")
    gateway = [r["t"] for r in control.requests(started - 5) if r["path"] == "gateway"]
    control.load(0, 0, "glm-4.5-air", GATEWAY_ALIASES["glm-4.5-air"])
    return max(0.0, max(gateway) - started) if gateway else 0.0, wall


def main() -> int:
    root = Path(tempfile.mkdtemp(prefix="rollout-effects-")) / "sb"
    info = world.up(root, runtime="process", gateway_port=0, simulator_port=0, timeout=120, app_runtime="none")
    failed = False
    try:
        for runtime in ("process", "docker"):
            start_app(root, runtime=runtime)
            record = load_app(root)
            assert record is not None
            control = AppControl(record.url)
            runs = [one(root, info.gateway_url, control) for _ in range(RUNS)]
            stopped = statistics.median(r[0] for r in runs)
            wall = statistics.median(r[1] for r in runs)
            print(f"{runtime:8s} rollback -> app's last gateway request: median {stopped:.2f} s "
                  f"(runs {', '.join(f'{r[0]:.2f}' for r in runs)}); whole command {wall:.1f} s")
            failed |= wall > GOAL_S
    finally:
        world.down(root)
        shutil.rmtree(root.parent, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
