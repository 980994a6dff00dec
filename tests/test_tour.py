"""The README's main-job command, `scripts/tour`, works start to finish (docker runtime)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.docker
def test_the_readme_tour_runs_end_to_end(tmp_path, docker_engine):
    proc = subprocess.run(
        [str(REPO / "scripts" / "tour"), str(tmp_path / "sandbox")],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "ROLLOUT_TOUR_SKIP_SETUP": "1", "ROLLOUT_TOUR_RUNTIME": "docker"},
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    out = proc.stdout
    assert "(runtime docker)" in out
    assert "advanced 0% -> 10%" in out
    assert "glm-4.5-air: down (http-500)" in out
    assert "0% -> 10%  by" in out and "10% -> 0%  by" in out
    assert out.rstrip().endswith("rolled back in one command.")
    # down left nothing running
    name = out.split("stopped gateway container ")[1].split(",")[0].strip()
    running = subprocess.run(["docker", "ps", "-q", "--filter", f"name=^{name}$"], capture_output=True, text=True)
    assert running.returncode == 0 and running.stdout.strip() == ""
