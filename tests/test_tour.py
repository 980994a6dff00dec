"""The README's main-job command, `scripts/tour`, works start to finish (docker runtime)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from support import plausible_share

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
    # the traffic moves: direct at 0%, about 10% through the gateway after advance, stopped by the rollback
    shares = [float(share) for share in re.findall(r"^observed split: ([\d.]+)% through the gateway", out, re.MULTILINE)]
    assert len(shares) == 3 and shares[0] == 0.0 and 0.0 < shares[1] <= 40.0 and shares[2] == 0.0, shares
    assert re.search(r"files at 0% at \+\d+\.\d+ s; (app traffic through the gateway stopped at|no app request)", out)
    assert "glm-4.5-air: down (http-500)" in out
    assert "0% -> 10%  by" in out and "10% -> 0%  by" in out
    # every step ran, in the README's order (the closing line is printed unconditionally: not evidence)
    ran = re.findall(r"\x1b\[1m\$ rollout (.*?)\x1b\[0m", out)
    sb = str(tmp_path / "sandbox")
    assert [step.replace(sb, "DIR") for step in ran] == [
        "sandbox up DIR --runtime docker --gateway-port 0 --simulator-port 0",
        "-w DIR health",
        "-w DIR advance --yes --reason tour: first step, 0% -> 10%",
        "-w DIR sandbox traffic --rps 10 --duration 3",
        "-w DIR report",
        "-w DIR sandbox fault glm-4.5-air --status 500",
        "-w DIR health",
        "-w DIR rollback --level 1 --yes --reason tour: primary answering 500",
        "-w DIR status",
        "-w DIR sandbox fault --clear",
        "-w DIR report",
        "-w DIR history",
        "sandbox down DIR",
    ]
    sent = re.search(r"sent (\d+) requests in \S+ s: (\d+) via the gateway \(0 failed\), (\d+) direct \(0 failed\)", out)
    assert sent, out
    total, through, direct = (int(n) for n in sent.groups())
    assert total == through + direct > 0 and plausible_share(through, total, 10)
    assert "rollback to level 1: done in " in out
    # down left nothing running
    name = re.search(r"^stopped sample app container \S+, gateway container ([^,\s]+),", out, re.MULTILINE).group(1)
    running = subprocess.run(["docker", "ps", "-q", "--filter", f"name=^{name}$"], capture_output=True, text=True)
    assert running.returncode == 0 and running.stdout.strip() == ""
