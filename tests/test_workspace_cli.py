"""init, status, history and workspace validation, through the real `rollout` command."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from rollout_cli.sandbox.sample_app import env_text, flagd_text
from support import make_world, rollout

ROLLOUT = str(Path(sys.executable).parent / "rollout")


def test_init_writes_a_config_that_loads_and_refuses_to_overwrite(tmp_path):
    target = tmp_path / "ws"
    result = rollout("init", str(target))
    assert result.exit_code == 0, result.output
    text = (target / "rollout.yaml").read_text()
    assert "# rollout workspace" in text and "master_key_env: LITELLM_MASTER_KEY" in text
    # the written file validates: status fails only because ../app/.env does not exist
    status = rollout("-w", str(target), "status")
    assert status.exit_code == 2 and "not found" in status.stderr
    (target / "rollout.yaml").write_text("app:\n  env_file: x\n")
    again = rollout("init", str(target))
    assert again.exit_code == 2 and "already exists; pass --force" in again.stderr
    assert (target / "rollout.yaml").read_text() == "app:\n  env_file: x\n"
    assert rollout("init", str(target), "--force").exit_code == 0
    assert (target / "rollout.yaml").read_text() == text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("app:\n  env_file: .env\n  colour: blue\n", "unknown key 'app.colour'"),
        ("app:\n  env_file: .env\nextra: 1\n", "unknown key 'extra'"),
        ("app:\n  flags_file: f.json\n", "missing required key 'app.env_file'"),
        ("app:\n  env_file: .env\n  router_paths: server/x.ts\n", "'app.router_paths' must be a list of strings"),
        ("app:\n  env_file: .env\n  flags_format: toml\n", "'app.flags_format' is 'toml'; use one of env, json, yaml, flagd"),
        ("app:\n  env_file: .env\ngateway:\n  url: localhost:4000\n", "'gateway.url' must be an http:// or https:// URL"),
        ("app: [\n", "is not valid YAML (line 2"),
        ("- just a list\n", "expected a mapping"),
    ],
)
def test_rollout_yaml_validation_names_the_key(tmp_path, content, message):
    (tmp_path / "rollout.yaml").write_text(content)
    result = rollout("-w", str(tmp_path), "status")
    assert result.exit_code == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_workspace_from_environment_variable(tmp_path):
    world = make_world(tmp_path, percentage=10)
    result = rollout("status", "--json", env={"ROLLOUT_WORKSPACE": str(world.ws)})
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["stage"]["percentage"] == 10


def test_status_reports_stage_and_who_moved_it(tmp_path):
    world = make_world(tmp_path, percentage=10, container="")
    assert world.cli("rollback", "--level", "1", "--yes", "--reason", "429 storm",
                     env={"ROLLOUT_ACTOR": "alice@oncall"}).exit_code == 0
    result = world.cli("status", "--json")
    assert result.exit_code == 0
    data = json.loads(result.stdout)
    assert data["stage"]["percentage"] == 0 and data["stage"]["drift"] is None
    assert data["last_change"]["actor"] == "alice@oncall"
    assert data["last_change"]["reason"] == "429 storm"
    human = world.cli("status")
    assert "stage 0% through the gateway" in human.stdout and "alice@oncall" in human.stdout


def test_status_calls_out_drift(tmp_path):
    world = make_world(tmp_path, percentage=10, container="")
    world.app.flags_file.write_text(flagd_text(50))
    result = world.cli("status")
    assert result.exit_code == 1
    assert "DRIFT env file says 10%" in result.stdout and "flags file says 50%" in result.stdout


def test_percentage_outside_range_in_env_file(tmp_path):
    world = make_world(tmp_path, percentage=10, container="")
    world.app.env_file.write_text(env_text(10, True).replace("=10", "=150"))
    result = world.cli("status")
    assert result.exit_code == 2
    assert "LITELLM_ROLLOUT_PERCENTAGE=150 is outside 0..100" in result.stderr


def test_percentage_outside_range_in_playbook(tmp_path):
    world = make_world(tmp_path, percentage=10, container="")
    (world.ws / "books").mkdir()
    (world.ws / "books" / "rollback-1.yaml").write_text(
        "kind: rollback\nlevel: 1\nbudget: 30s\nsteps:\n  - type: flag.set\n    percentage: 150\n"
    )
    (world.ws / "rollout.yaml").write_text((world.ws / "rollout.yaml").read_text() + "playbooks: ./books\n")
    snap = world.snapshot()
    result = world.cli("rollback", "--level", "1", "--yes")
    assert result.exit_code == 2 and "percentage 150 is outside 0..100" in result.stderr
    assert world.snapshot() == snap


def test_history_table_json_and_limit(tmp_path):
    world = make_world(tmp_path, percentage=10, container="")
    for reason in ("first", "second", "third"):
        assert world.cli("rollback", "--level", "1", "--yes", "--reason", reason).exit_code == 0
    result = world.cli("history", "--json", "--limit", "2")
    records = json.loads(result.stdout)["records"]
    assert [r["reason"] for r in records] == ["second", "third"]
    table = world.cli("history")
    assert "LITELLM_ROLLOUT_PERCENTAGE: 10 -> 0" in table.stdout and "first" in table.stdout
    assert world.cli("history", "--limit", "0").exit_code == 2


def test_level_1_does_not_import_docker_or_httpx(tmp_path):
    world = make_world(tmp_path, percentage=10)
    proc = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "rollout_cli", "-w", str(world.ws),
         "rollback", "--level", "1", "--yes"],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr[-500:]
    imported = {line.split("|")[-1].strip() for line in proc.stderr.splitlines() if "|" in line}
    assert "typer" in imported  # the probe sees imports at all
    assert not {"docker", "httpx"} & imported


def test_concurrent_audit_appends_stay_whole_lines(tmp_path):
    state = tmp_path / ".rollout"
    code = (
        "import sys; from pathlib import Path; from rollout_cli.core.audit import AuditLog\n"
        "log = AuditLog(Path(sys.argv[1]))\n"
        "for i in range(200): log.append('test', writer=sys.argv[2], i=i, pad='x' * 3000)\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", code, str(state), str(n)]) for n in range(4)]
    assert all(p.wait() == 0 for p in procs)
    lines = (state / "history.jsonl").read_text().splitlines()
    assert len(lines) == 800
    records = [json.loads(line) for line in lines]  # raises on any torn line
    assert {r["writer"] for r in records} == {"0", "1", "2", "3"}


def test_kill_9_mid_rollback_leaves_files_whole_and_next_run_works(tmp_path):
    """SIGKILL a real level-1 rollback the moment its own temp file appears, i.e. mid-write.

    The kill is triggered by an event (a temp file named with the rollback's pid beside the
    app's files), not a random sleep, and each outcome is classified; the test proves that
    kills did land during a write (a temp file left behind, or the env new and the flags old),
    and that every file is still whole, old or new.
    """
    world = make_world(tmp_path, percentage=10, container="")
    old_env = world.app.env_file.read_text()
    new_env = old_env.replace("PERCENTAGE=10 ", "PERCENTAGE=0 ")
    old_flags = world.app.flags_file.read_text()
    app = world.app.repo
    seen = {"before": 0, "mid-write": 0, "between": 0, "after": 0}
    for _ in range(40):
        world.app.env_file.write_text(old_env)
        world.app.flags_file.write_text(old_flags)
        proc = subprocess.Popen([ROLLOUT, "-w", str(world.ws), "rollback", "--level", "1", "--yes"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        mine = f".{proc.pid}."
        while proc.poll() is None and not any(mine in name and name.endswith(".tmp") for name in os.listdir(app)):
            pass
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        env = world.app.env_file.read_text()
        flags = world.app.flags_file.read_text()
        assert env in (old_env, new_env)
        json.loads(flags)  # whole JSON, old or new
        assert flags in (old_flags, flagd_text(0))
        left = [name for name in os.listdir(app) if mine in name and name.endswith(".tmp")]
        if left:
            seen["mid-write"] += 1
        elif env == new_env and flags == old_flags:
            seen["between"] += 1
        elif env == new_env:
            seen["after"] += 1
        else:
            seen["before"] += 1
        if seen["mid-write"] + seen["between"] >= 3:
            break
    assert seen["mid-write"] + seen["between"] >= 3, seen  # kills did land while files were being written
    result = world.cli("rollback", "--level", "1", "--yes", env={"ROLLOUT_LOCK_TIMEOUT": "2"})
    assert result.exit_code == 0, result.output
    assert world.app.env_file.read_text() == new_env and world.app.flags_file.read_text() == flagd_text(0)
    # every temp file a killed writer left is swept by the next write
    leftovers = [p.name for p in app.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_orphan_temp_file_of_a_dead_writer_is_swept(tmp_path):
    from rollout_cli.io.atomic import atomic_write_text

    target = tmp_path / ".env"
    target.write_text("A=1\n")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    orphan = tmp_path / f"..env.{dead.pid}.abc123.tmp"
    orphan.write_text("half")
    live = tmp_path / f"..env.{os.getpid()}.def456.tmp"
    live.write_text("in progress")
    atomic_write_text(target, "A=2\n")
    assert target.read_text() == "A=2\n"
    assert not orphan.exists() and live.exists()
