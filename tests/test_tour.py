"""The README's main-job command, `scripts/tour`, works start to finish (docker runtime)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import pytest

from support import plausible_share

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.slow(300)
@pytest.mark.timeout(600)  # the manual part, then the autopilot's own 0 -> 10 -> 50 and rollback
@pytest.mark.docker
def test_the_readme_tour_runs_end_to_end(tmp_path, docker_engine):
    proc = subprocess.run(
        [str(REPO / "scripts" / "tour"), str(tmp_path / "sandbox")],
        capture_output=True, text=True, timeout=560,
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
        "sandbox up DIR --runtime docker --gateway-port 0 --simulator-port 0 --timeout 180",
        "-w DIR sandbox app status",
        "-w DIR health",
        "-w DIR sandbox traffic --rps 20 --duration 3",
        "-w DIR advance --yes --reason tour: first step, 0% -> 10%",
        "-w DIR report",
        "-w DIR sandbox traffic --rps 10 --duration 6",
        "-w DIR status",
        "-w DIR sandbox fault glm-4.5-air --status 500",
        "-w DIR health",
        "-w DIR rollback --level 1 --yes --reason tour: primary answering 500",
        "-w DIR sandbox traffic --rps 20 --duration 3",
        "-w DIR status",
        "-w DIR sandbox fault --clear",
        "-w DIR report",
        "-w DIR history",
        "-w DIR autopilot resume --reason tour: from here the autopilot runs the stages",
        "-w DIR autopilot   # in the background",
        "-w DIR sandbox fault glm-4.5-air --status 500 --via gateway",
        "-w DIR autopilot status",
        "-w DIR sandbox notifications",
        "sandbox down DIR",
    ]
    # the autopilot, unattended: 0 -> 10 -> 50 by itself, then one rollback of its own after the fault
    assert re.search(r"Z 0% promote -> 10%", out) and re.search(r"Z 10% promote -> 50%", out), out[-4000:]
    assert len(re.findall(r"Z 50% rollback 2/2 \(level 1, took", out)) == 1, out[-4000:]
    assert re.search(r"^fault -> (the app's last request through the gateway: [\d.]+ s|no app request)", out, re.MULTILINE)
    # what the sample app sent at each of the three traffic steps: all direct at 0%, a binomial ~10% after
    # advance (nothing failed on either path: no fault yet), all direct again after the rollback (where the
    # primary's fault is still on, so its direct calls fail: the app has no fallbacks of its own)
    sent = re.findall(r"^the sample app \(docker\) sent (\d+) requests in [\d.]+ s: "
                      r"(\d+) via the gateway \((\d+) failed\), (\d+) direct \((\d+) failed\)$", out, re.MULTILINE)
    assert len(sent) == 3, out
    counts = [tuple(int(n) for n in row) for row in sent]
    for total, through, _, direct, _ in counts:
        assert total == through + direct > 0
    at_0, at_10, after_rollback = counts
    assert at_0[1] == 0 and at_0[2] == at_0[4] == 0, counts
    assert plausible_share(at_10[1], at_10[0], 10) and at_10[2] == at_10[4] == 0, counts
    assert after_rollback[1] == 0 and after_rollback[4] == after_rollback[0], counts
    assert "rollback to level 1: done in " in out
    # down wrote the run's HTML report first, and the tour ends with its path (issue 21)
    page = tmp_path / "sandbox" / "report.html"
    assert out.rstrip().endswith(f"the HTML report of this run (open it in a browser): {page}")
    text = page.read_text()
    assert 'id="report-data"' in text and text.count('<figure class="chart"') == 5
    assert "tour: primary answering 500" in text  # the rollback's reason, in the stage changes
    # down left nothing running
    # (the line is wrapped at 80 columns: any space may be a line break)
    stopped = re.search(r"^stopped\s+prometheus\s+process\s+(\d+),\s+node_exporter\s+process\s+(\d+),\s+sample\s+app"
                        r"\s+container\s+\S+,\s+gateway\s+container\s+([^,\s]+),", out, re.MULTILINE)
    assert stopped is not None, out[-2000:]
    assert _gone(int(stopped.group(1))) and _gone(int(stopped.group(2)))
    name = stopped.group(3)
    running = subprocess.run(["docker", "ps", "-q", "--filter", f"name=^{name}$"], capture_output=True, text=True)
    assert running.returncode == 0 and running.stdout.strip() == ""


def _gone(pid: int) -> bool:
    """No such process, or only its zombie (a detached process's parent, PID 1 here, may not reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return True
    return state in ("Z", "X")
