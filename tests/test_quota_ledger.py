"""The quota ledger under concurrency, bad lines, a huge file, a clock step and midnight (issue 23, 14 and 15).

Through the real `rollout` command: concurrent runs are real subprocesses
against a real sandbox (simulator + the real LiteLLM proxy); the ledger's bad
lines are written by hand, as a hand edit or another tool would.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from support import make_world, rollout
from test_json_contract import valid

ROLLOUT = str(Path(sys.executable).parent / "rollout")
SANDBOX_QUOTA = "openrouter:\n  daily_limit: 100000\n  rollout_share: 1.0\n"


def today(ts: float | None = None) -> str:
    return datetime.fromtimestamp(time.time() if ts is None else ts, UTC).strftime("%Y-%m-%d")


def ledger(ws: Path, day: str | None = None) -> Path:
    path = ws / ".rollout" / "quota" / f"{day or today()}.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def boot() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def writer(pid: int, start_ticks: int) -> dict:
    """A reservation's writer, as `rollout` records it (io/process.py ProcessIdentity)."""
    return {"pid": pid, "start_ticks": start_ticks, "boot_id": boot(), "pid_namespace": os.readlink("/proc/self/ns/pid")}


def quota(ws: Path, code: int = 0) -> dict:
    result = rollout("-w", str(ws), "quota", "--json")
    assert result.exit_code == code, result.output
    return valid("quota", json.loads(result.stdout))


# --- 14: the share holds when runs start together ----------------------------------------------


@pytest.fixture
def box(sandbox: Any) -> Iterator[Any]:
    """The session sandbox (tests/conftest.py, rule 5): its rollout.yaml and today's ledger are put back after the
    test, so the bad lines and the dead run's reservation written here never reach the next test on the worker."""
    config, spent = sandbox.root / "rollout.yaml", ledger(sandbox.root)
    original, before = config.read_text(), spent.read_bytes() if spent.exists() else b""
    try:
        yield sandbox
    finally:
        config.write_text(original)
        spent.write_bytes(before)


@pytest.mark.gateway
def test_four_health_runs_started_together_never_spend_past_the_share(box: Any) -> None:
    config = box.root / "rollout.yaml"
    original = config.read_text()
    assert SANDBOX_QUOTA in original
    used = quota(box.root)["used"]
    config.write_text(original.replace(SANDBOX_QUOTA, f"openrouter: {{daily_limit: {used + 8}, rollout_share: 1.0}}\n"))
    sent_before = box.admin.stats()["total"]
    try:
        runs = [subprocess.Popen([ROLLOUT, "-w", str(box.root), "health", "--json"], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(4)]
        ended = [(run.wait(timeout=120), *run.communicate(timeout=10)) for run in runs]
        codes = sorted(code for code, _, _ in ended)
        after = quota(box.root)
        # 5 models a run, 8 left: one run fits, the other three are refused before sending anything.
        assert codes == [0, 3, 3, 3], ended
        assert after["used"] == used + 5 and after["held"] == 0, after
        assert box.admin.stats()["total"] - sent_before == 5
        refused = [err for code, _, err in ended if code == 3]
        assert all("refused: health would send 5 request(s)" in err for err in refused), refused
    finally:
        config.write_text(original)


@pytest.mark.gateway
def test_a_killed_runs_reservation_goes_back_to_the_share(box: Any) -> None:
    path = ledger(box.root)
    used = quota(box.root)["used"]
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                          check=True, timeout=30)
    with path.open("a") as handle:  # a run killed after reserving: its pid is gone
        handle.write(json.dumps({"ts": time.time(), "reserve": 90000, "run": "killed", "command": "health",
                                 "writer": writer(int(dead.stdout), 1)}) + "\n")
    shown = quota(box.root)
    assert shown["used"] == used and shown["held"] == 0
    assert rollout("-w", str(box.root), "health", "--json").exit_code == 0


# --- 15: a malformed line is skipped and counted, never a crash --------------------------------


BAD_LINES = [
    {"ts": "abc", "model": "glm-4.5-air", "status": 200},
    {"ts": 1, "model": "glm-4.5-air", "status": 200, "ratelimit": "garbage"},
    {"ts": 1, "model": "glm-4.5-air", "status": 429, "ratelimit": {"limit": 50, "remaining": 0, "reset": "soon"}},
    {"ts": float("nan"), "model": "glm-4.5-air", "status": 200},
    {"ts": 1, "model": ["x"], "status": "200"},
    {"ts": 1, "reserve": "lots", "run": "x", "pid": 1},
    ["not", "a", "record"],
]


@pytest.mark.parametrize("bad", BAD_LINES, ids=lambda b: json.dumps(b)[:40])
def test_a_ledger_line_of_the_wrong_type_is_skipped_and_counted(tmp_path: Path, bad: Any) -> None:
    world = make_world(tmp_path)
    good = {"ts": time.time(), "model": "glm-4.5-air", "status": 200}
    ledger(world.ws).write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n{torn\n")
    shown = quota(world.ws)
    assert shown["used"] == 1 and shown["skipped_lines"] == 2
    assert shown["account_exhausted"] is False
    assert any("skipped 2 line(s) that are not ledger records" in m for m in shown["messages"])
    # every command that reads the ledger goes on: report judges the quota gate from it
    report = world.cli("report", "--json")
    assert "internal error" not in report.stderr and report.exit_code in (1, 3), report.output
    quota_gate = next(g for g in json.loads(report.stdout)["gates"] if g["name"] == "quota")
    assert quota_gate["value"] == "rollout used 1 today"


def test_a_samples_line_of_the_wrong_type_is_skipped(tmp_path: Path) -> None:
    world = make_world(tmp_path)  # at 10 %: report judges the window from the samples
    samples = world.ws / ".rollout" / "samples.jsonl"
    samples.parent.mkdir()
    samples.write_text(json.dumps({"time": "2026-01-01T00:00:00Z", "ts": "soon", "stage": 10, "metrics": {}}) + "\n"
                       + json.dumps({"time": 5, "ts": time.time(), "stage": 10, "metrics": "garbage"}) + "\n")
    report = world.cli("report", "--json")
    assert "internal error" not in report.stderr, report.output
    gates = {g["name"]: g for g in json.loads(report.stdout)["gates"]}
    assert gates["fallback rate"]["status"] == "inconclusive"


def test_a_ledger_over_its_size_cap_refuses_spending_without_being_read(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    with ledger(world.ws).open("w") as handle:
        handle.truncate(9 << 20)  # 9 MiB of nothing: its size alone refuses it
    result = world.cli("quota")
    assert result.exit_code == 3, result.output
    assert result.output.strip() == (
        f"rollout: error: refused: the quota ledger {ledger(world.ws)} holds 9 MiB, more than a day of rollout's own requests ever "
        "writes (8 MiB): something else writes to it, or sends in a loop; find what, then move the file away "
        "(rollout counts today from zero then)")
    ledger(world.ws).unlink()
    assert world.cli("quota").exit_code == 0


def test_a_ledger_just_under_its_size_cap_is_read_in_constant_memory(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    line = json.dumps({"ts": time.time(), "model": "glm-4.5-air", "status": 200}) + "\n"
    count = 7 * 1024 * 1024 // len(line)
    with ledger(world.ws).open("w") as handle:
        for _ in range(count // 10_000):
            handle.write(line * 10_000)
        handle.write("x" * (512 * 1024) + "\n")  # and one 512 KB line, which is nobody's record
    # A subprocess, so its peak memory is its own: holding every parsed line costs about ten times the file
    # (a 72 MB ledger took 750 MB before it was streamed; over 8 MiB it is now refused unread). Its
    # peak is taken against the same command's on an empty ledger, so what the interpreter, the imports and
    # a first compile of the modules cost (they vary from machine to machine, coverage or not) is left out.
    probe = ("import resource, sys; from rollout_cli.cli.app import main; sys.argv = ['rollout'] + sys.argv[1:]\n"
             "try:\n    main()\nexcept SystemExit as e:\n    code = e.code\n"
             "print('peak_kb', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); sys.exit(code)")

    def quota(ws: Path) -> tuple[subprocess.CompletedProcess[str], float]:
        done = subprocess.run([sys.executable, "-c", probe, "-w", str(ws), "quota", "--json"],
                              capture_output=True, text=True, timeout=300)
        return done, int(done.stderr.split("peak_kb")[1].split()[0]) / 1024

    (tmp_path / "empty").mkdir()
    empty = make_world(tmp_path / "empty")
    _, baseline_mb = quota(empty.ws)
    done, peak_mb = quota(world.ws)
    assert peak_mb - baseline_mb < 25, f"peak {peak_mb:.0f} MB, {baseline_mb:.0f} MB on an empty ledger"
    assert done.returncode == 3, done.stderr  # 100000s of requests: the share is spent
    shown = json.loads(done.stdout)
    assert shown["used"] == count // 10_000 * 10_000 and shown["skipped_lines"] == 1


# --- 18: "last minute" by the clock that does not step, and across 00:00 UTC ----------------------


def test_last_minute_follows_the_monotonic_clock_across_a_wall_clock_step(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    now, mono = time.time(), time.monotonic()
    entries = [
        # written 10 minutes ago, before the wall clock stepped back an hour: stamped "in the future"
        *({"ts": now + 3000 + i, "mono": mono - 600, "boot": boot(), "model": "glm-4.5-air", "status": 200}
          for i in range(3)),
        # written 10 seconds ago, after the clock stepped forward an hour: stamped "an hour ago"
        *({"ts": now - 3590 + i, "mono": mono - 10, "boot": boot(), "model": "glm-4.5-air", "status": 200}
          for i in range(2)),
    ]
    ledger(world.ws).write_text("".join(json.dumps(e) + "\n" for e in entries))
    assert quota(world.ws)["per_minute"]["used"] == 2


def test_last_minute_counts_the_requests_sent_just_before_midnight_utc(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    mono = time.monotonic()
    # Sent 5 s ago by the monotonic clock, filed under the day before (as at 23:59:58 when it is 00:00:03).
    yesterday = today(time.time() - 86_400)
    entry = {"ts": time.time() - 86_400, "mono": mono - 5, "boot": boot(), "model": "glm-4.5-air", "status": 200}
    ledger(world.ws, yesterday).write_text(json.dumps(entry) + "\n")
    shown = quota(world.ws)
    assert shown["used"] == 0  # today's count starts at 00:00 UTC...
    assert shown["per_minute"]["used"] == 1  # ...the per-minute limit does not


@pytest.mark.gateway
def test_checks_that_spend_the_quota_read_past_malformed_ledger_lines(box: Any) -> None:
    path = ledger(box.root)
    with path.open("a") as handle:
        for bad in BAD_LINES:
            handle.write(json.dumps(bad) + "\n")
    for args in (["health"], ["smoke", "--model", "glm-4.5-air"], ["watch", "--probe", "--count", "1"]):
        result = rollout("-w", str(box.root), *args, "--json")
        assert result.exit_code == 0 and "internal error" not in result.stderr, (args, result.output)
    assert quota(box.root)["skipped_lines"] >= len(BAD_LINES)


def test_a_running_runs_reservation_counts_for_every_other_run(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    (world.ws / "rollout.yaml").write_text((world.ws / "rollout.yaml").read_text().replace(
        "daily_limit: 100000\n  rollout_share: 1.0", "daily_limit: 10\n  rollout_share: 1.0"))
    stat = Path("/proc/self/stat").read_text()
    ticks = int(stat[stat.rfind(")") + 2:].split()[19])
    ledger(world.ws).write_text(json.dumps({"ts": time.time(), "reserve": 3, "run": "alive", "command": "smoke",
                                            "writer": writer(os.getpid(), ticks)}) + "\n"
                                + json.dumps({"ts": time.time(), "model": "glm-4.5-air", "status": 200,
                                              "run": "alive"}) + "\n")
    shown = quota(world.ws)
    assert (shown["used"], shown["held"], shown["left"]) == (1, 2, 7)
    human = world.cli("quota")
    assert "held by checks running now" in human.stdout and "2 more held by rollout checks running now" in human.stdout


def test_a_reservation_from_another_pid_namespace_holds_for_a_bounded_time(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    elsewhere = {**writer(1, 5), "pid_namespace": "pid:[1]"}  # rollout in a container: its pid 1 is not ours
    ledger(world.ws).write_text("".join(
        json.dumps({"ts": ts, "reserve": 4, "run": run, "command": "health", "writer": elsewhere}) + "\n"
        for run, ts in (("now", time.time() - 5), ("stale", time.time() - 3600))))
    assert quota(world.ws)["held"] == 4
