"""`rollout rollback` levels 1, 2 and 4 end to end: real files, a real git repo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from rollout_cli.sandbox.sample_app import git
from support import make_world


@pytest.fixture
def world(tmp_path):
    return make_world(tmp_path, percentage=10)


def test_level_1_sets_env_and_flags_to_zero_and_verifies(world):
    before_env = world.app.env_file.read_text()
    result = world.cli("rollback", "--level", "1", "--yes", "--reason", "primary down", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["levels"][0]["within_budget"] is True
    statuses = [s["status"] for s in data["levels"][0]["steps"]]
    assert statuses == ["ok", "ok", "ok", "unchanged", "ok"]  # app.reload: none; verify.traffic: no gateway there
    env = world.app.env_file.read_text()
    assert "LITELLM_ROLLOUT_PERCENTAGE=0  # share of users through the gateway\n" in env
    # every other line kept byte for byte
    assert [line for line in env.splitlines() if "PERCENTAGE" not in line] == [
        line for line in before_env.splitlines() if "PERCENTAGE" not in line
    ]
    flags = json.loads(world.app.flags_file.read_text())
    fractional = flags["flags"]["litellm-gateway"]["targeting"]["fractional"]
    assert fractional[1:] == [["on", 0], ["off", 100]]
    assert flags["flags"]["new-checkout"]["state"] == "ENABLED"
    record = world.history()[-1]
    assert record["command"] == "rollback --level 1" and record["reason"] == "primary down"
    keys = {(c["key"], c["before"], c["after"]) for c in record["changes"]}
    assert ("LITELLM_ROLLOUT_PERCENTAGE", "10", "0") in keys
    assert ("litellm-gateway", 10, 0) in keys
    assert all(c["sha256_before"] != c["sha256_after"] for c in record["changes"])


def test_level_1_twice_is_harmless(world):
    assert world.cli("rollback", "--level", "1", "--yes").exit_code == 0
    snap = world.snapshot()
    again = world.cli("rollback", "--level", "1", "--yes", "--json")
    assert again.exit_code == 0
    assert [s["status"] for s in json.loads(again.stdout)["levels"][0]["steps"]] == ["unchanged", "unchanged", "ok", "unchanged", "ok"]
    assert world.snapshot() == snap


def test_level_1_human_output_names_budget(world):
    result = world.cli("rollback", "--level", "1", "--yes")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert "level 1: feature flag to 0% (budget 30.0 s)" in lines[0]
    assert any(line.startswith("  took ") and line.endswith(" ms, within its 30.0 s budget") for line in lines)
    assert any(line.startswith("rollback to level 1: done in ") and line.endswith(" (budget 30.0 s)") for line in lines)
    assert lines[-3:] == [
        "took effect:",
        f"  - level 1 step 1: set LITELLM_ROLLOUT_PERCENTAGE=0 in {world.app.env_file} (temp file + rename)",
        f"  - level 1 step 2: set flag litellm-gateway to 0% in {world.app.flags_file} (temp file + rename)",
    ]


def test_dry_run_shows_diffs_and_changes_nothing(world):
    snap, head = world.snapshot(), world.head()
    result = world.cli("rollback", "--level", "4", "--dry-run")
    # no container named litellm here: level 3 would fail, and the dry run says so
    assert result.exit_code == 4, result.output
    assert "no container named 'litellm' or with compose service 'litellm' (docker ps -a); check " \
        "gateway.container in rollout.yaml" in result.stdout
    assert "dry run of rollback to level 4: failed (exit 4) in " in result.stdout
    assert "-LITELLM_ROLLOUT_PERCENTAGE=10" in result.stdout
    assert "+LITELLM_ROLLOUT_PERCENTAGE=0" in result.stdout
    assert "Route LLM calls through the LiteLLM gateway" in result.stdout
    assert world.snapshot() == snap and world.head() == head
    assert world.history() == []


def test_level_2_restores_router_and_commits(world):
    result = world.cli("rollback", "--level", "2", "--yes", "--json")
    assert result.exit_code == 0, result.output
    router = (world.app.repo / "server/model-router.ts").read_text()
    pre = git(world.app.repo, "show", "pre-gateway:server/model-router.ts")
    assert router == pre
    assert "restore router" in git(world.app.repo, "log", "-1", "--format=%s")
    assert git(world.app.repo, "status", "--porcelain", "--untracked-files=no").strip() == "M flags.json"
    # twice: no new commit
    head = world.head()
    again = world.cli("rollback", "--level", "2", "--yes", "--json")
    assert again.exit_code == 0 and world.head() == head


def test_level_4_reverts_integration_commit_twice_harmless(world):
    result = world.cli("rollback", "--level", "4", "--yes", "--json")
    # level 3 has no Docker container named litellm here: it fails (exit 4), level 4 still runs
    assert result.exit_code == 4, result.output
    data = json.loads(result.stdout)
    # level 1 ends with app.reload (none: unchanged) and verify.traffic (no gateway at :9: ok);
    # level 3 ends with verify.app, skipped: this world names no app.probe
    assert [[s["status"] for s in lvl["steps"]] for lvl in data["levels"]] == [
        ["ok", "ok", "ok", "unchanged", "ok"], ["ok", "ok"], ["failed", "failed", "skipped"], ["ok", "ok"]]
    assert data["levels"][2]["steps"][0]["detail"].startswith("no container named 'litellm'")
    level4 = data["levels"][3]
    assert level4["steps"][0]["status"] == "ok", level4
    assert not (world.app.repo / "server/litellm-client.ts").exists()
    subjects = git(world.app.repo, "log", "--format=%s").splitlines()
    assert subjects[0] == 'Revert "Route LLM calls through the LiteLLM gateway"'
    head = world.head()
    again = world.cli("rollback", "--level", "4", "--yes", "--json")
    assert again.exit_code == 4  # still no container: level 3 still fails, nothing else to do
    assert world.head() == head
    assert json.loads(again.stdout)["levels"][3]["steps"][0]["status"] == "unchanged"


def test_drill_checks_preconditions_and_changes_nothing(world):
    snap, head = world.snapshot(), world.head()
    result = world.cli("rollback", "--level", "2", "--drill", "--json")
    assert result.exit_code == 0, result.output
    checks = [c for lvl in json.loads(result.stdout)["levels"] for s in lvl["steps"] for c in s.get("checks", [])]
    assert {c["name"] for c in checks} >= {"pre-gateway ref exists", "git tree clean"}
    assert all(c["ok"] for c in checks)
    assert world.snapshot() == snap and world.head() == head


def test_drill_reports_missing_ref(world):
    (world.ws / "rollout.yaml").write_text(
        (world.ws / "rollout.yaml").read_text().replace("pre_gateway_ref: pre-gateway", "pre_gateway_ref: nope")
    )
    result = world.cli("rollback", "--level", "2", "--drill")
    assert result.exit_code == 2
    assert "git ref 'nope' does not exist" in result.stdout


# --- bad input ---------------------------------------------------------------


@pytest.mark.parametrize("level", ["0", "5"])
def test_unknown_level(world, level):
    snap = world.snapshot()
    result = world.cli("rollback", "--level", level, "--yes")
    assert result.exit_code == 2
    assert f"rollback level {level} does not exist; use --level 1, 2, 3 or 4" in result.stderr
    assert "Traceback" not in result.output
    assert world.snapshot() == snap


def test_no_rollout_yaml(tmp_path):
    from support import rollout

    result = rollout("-w", str(tmp_path), "rollback", "--level", "1", "--yes")
    assert result.exit_code == 2
    assert result.stderr.strip().count("\n") == 0
    assert "no rollout.yaml in" in result.stderr and "rollout init" in result.stderr


def test_malformed_env_line_is_named_before_any_step_and_nothing_changes(world):
    text = world.app.env_file.read_text() + "this is not an env line\n"
    world.app.env_file.write_text(text)
    snap = world.snapshot()
    result = world.cli("rollback", "--level", "1", "--yes", "--json")
    assert result.exit_code == 2
    assert "line 10: cannot parse" in json.loads(result.stdout)["error"]["message"]
    assert world.snapshot() == snap and world.history() == []  # the flag is not set to 0 either


def test_invalid_flags_json(world):
    world.app.flags_file.write_text('{"flags": {')
    snap = world.snapshot()
    result = world.cli("rollback", "--level", "1", "--yes", "--json")
    assert result.exit_code == 2
    assert "not valid JSON" in json.loads(result.stdout)["error"]["message"]
    assert world.snapshot() == snap  # the env file is not set to 0 first


def test_flag_key_missing(world):
    (world.ws / "rollout.yaml").write_text(
        (world.ws / "rollout.yaml").read_text().replace("flag_key: litellm-gateway", "flag_key: nope")
    )
    result = world.cli("rollback", "--level", "1", "--yes", "--json")
    assert result.exit_code == 2
    assert "flag 'nope' not found" in json.loads(result.stdout)["error"]["message"]


def test_dirty_tree_refuses_level_2_after_level_1(world):
    router = world.app.repo / "server/model-router.ts"
    router.write_text(router.read_text() + "// local hack\n")
    head = world.head()
    result = world.cli("rollback", "--level", "2", "--yes", "--json")
    assert result.exit_code == 1
    steps = json.loads(result.stdout)["levels"][1]["steps"]
    assert "uncommitted changes (server/model-router.ts)" in steps[0]["detail"]
    assert steps[1]["status"] == "skipped"
    assert world.head() == head and router.read_text().endswith("// local hack\n")


def test_pre_gateway_ref_missing(world):
    (world.ws / "rollout.yaml").write_text(
        (world.ws / "rollout.yaml").read_text().replace("pre_gateway_ref: pre-gateway", "pre_gateway_ref: v0-nope")
    )
    head = world.head()
    result = world.cli("rollback", "--level", "2", "--yes")
    assert result.exit_code == 2
    assert "git ref 'v0-nope' does not exist" in result.stdout
    assert world.head() == head


def _in_read_only_env(world, *args: str) -> subprocess.CompletedProcess[str]:
    """`rollout ARGS` in a private mount namespace where the app's .env is a read-only bind mount.

    Root ignores permission bits and `chattr +i` is not supported on every file
    system; a read-only mount stops root everywhere: os.access says EROFS and the
    atomic rename onto the mount point fails (EBUSY). The mount never leaves the namespace.
    """
    rollout_bin = str(Path(sys.executable).parent / "rollout")
    script = 'mount --bind -o ro "$1" "$1" && shift && exec "$@"'
    return subprocess.run(
        ["unshare", "--mount", "sh", "-c", script, "sh", str(world.app.env_file), rollout_bin, "-w", str(world.ws),
         *args], capture_output=True, text=True, timeout=120,
    )


def test_env_file_not_writable(world):
    snap = world.snapshot()
    result = _in_read_only_env(world, "rollback", "--level", "1", "--yes", "--json")
    assert result.returncode == 2, result.stderr
    steps = json.loads(result.stdout)["levels"][0]["steps"]
    assert steps[0]["status"] == "failed" and steps[0]["detail"].startswith(f"cannot write {world.app.env_file}")
    assert steps[1]["status"] == "ok"  # the flag still goes to 0
    after = world.snapshot()
    assert after["app/.env"] == snap["app/.env"]
    assert sorted(after) == sorted(snap)  # no temp file left behind
    drill = _in_read_only_env(world, "rollback", "--level", "1", "--drill")
    assert drill.returncode == 2
    assert f"{world.app.env_file} is not writable; fix its permissions" in drill.stdout.replace("\n", "")


def test_second_writer_gets_lock_error(world):
    holder = subprocess.Popen(
        [sys.executable, "-c",
         "import sys,time; from pathlib import Path; from rollout_cli.io.lock import WorkspaceLock;\n"
         "with WorkspaceLock(Path(sys.argv[1]), command='test holder'):\n"
         "    print('held', flush=True); time.sleep(30)",
         str(world.ws / ".rollout")],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        snap = world.snapshot()
        result = world.cli("rollback", "--level", "1", "--yes", env={"ROLLOUT_LOCK_TIMEOUT": "1"})
        assert result.exit_code == 4
        assert f"pid {holder.pid}" in result.stderr
        assert world.snapshot() == snap
    finally:
        holder.kill()
        holder.wait()
    assert world.cli("rollback", "--level", "1", "--yes").exit_code == 0


def test_non_interactive_without_yes_refuses(world):
    snap = world.snapshot()
    result = world.cli("rollback", "--level", "1")
    assert result.exit_code == 2 and "--yes" in result.stderr
    assert world.snapshot() == snap


def test_invalid_playbook_override_is_rejected_before_any_step(world):
    books = world.ws / "playbooks"
    books.mkdir()
    (books / "rollback-2.yaml").write_text(
        "kind: rollback\nlevel: 2\nbudget: 5m\nsteps:\n  - type: git.restore\n  - type: git.teleport\n"
    )
    (world.ws / "rollout.yaml").write_text((world.ws / "rollout.yaml").read_text() + "playbooks: ./playbooks\n")
    snap = world.snapshot()
    result = world.cli("rollback", "--level", "2", "--yes")
    assert result.exit_code == 2
    assert "rollback-2.yaml: step 2" in result.stderr and "unknown step type 'git.teleport'" in result.stderr
    assert world.snapshot() == snap


def test_playbook_mistyped_field(world):
    books = world.ws / "playbooks"
    books.mkdir()
    (books / "rollback-1.yaml").write_text(
        "kind: rollback\nlevel: 1\nbudget: 30s\nsteps:\n  - type: flag.set\n    percentage: half\n"
    )
    (world.ws / "rollout.yaml").write_text((world.ws / "rollout.yaml").read_text() + "playbooks: ./playbooks\n")
    result = world.cli("rollback", "--level", "1", "--yes")
    assert result.exit_code == 2
    assert "step 1 (flag.set): field 'percentage' must be a whole number, got 'half'" in result.stderr


def test_debug_shows_traceback(world):
    result = world.cli("--debug", "rollback", "--level", "7", "--yes")
    assert result.exit_code == 2 and "Traceback" in result.stderr


def test_dry_run_says_unchanged_when_already_rolled_back(world):
    assert world.cli("rollback", "--level", "2", "--yes").exit_code == 0
    data = json.loads(world.cli("rollback", "--level", "2", "--dry-run", "--json").stdout)
    statuses = [s["status"] for lvl in data["levels"] for s in lvl["steps"]]
    assert statuses == ["unchanged", "unchanged", "would-verify", "unchanged", "would-verify",
                        "unchanged", "would-verify"]


def test_declining_the_prompt_changes_nothing(world):
    import os
    import pty
    import sys
    from pathlib import Path

    snap = world.snapshot()
    leader, follower = pty.openpty()
    proc = subprocess.Popen(
        [str(Path(sys.executable).parent / "rollout"), "-w", str(world.ws), "rollback", "--level", "1"],
        stdin=follower, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    os.close(follower)
    os.write(leader, b"n\n")
    _out, err = proc.communicate(timeout=30)
    os.close(leader)
    assert proc.returncode == 2, err
    assert "Roll back to level 1" in err and "rollout: error: not confirmed; nothing changed" in err
    assert world.snapshot() == snap
