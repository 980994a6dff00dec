"""Hardening of the rollback engine (issue 8): every defect a review found, shown through `rollout`.

Real git repositories, real files, real processes; no mocks. Each test fails
on the code before the fix.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from rollout_cli.playbook.model import Outcome, Step
from rollout_cli.playbook.steps import STEP_TYPES
from rollout_cli.sandbox.sample_app import INTEGRATION_SUBJECT, env_text, flagd_text, git
from support import World, make_world

# Levels 2 and 3 that do nothing, so a level-4 test sees only level 4 (no Docker container here).
IDLE_LEVEL = "kind: rollback\nlevel: {n}\nbudget: 1m\nsteps:\n  - type: wait\n    seconds: 0\n"


@pytest.fixture
def world(tmp_path):
    return make_world(tmp_path, percentage=10)


def override(world: World, **books: str) -> None:
    """Write playbooks into the workspace's override folder (`rollback_1="..."` is rollback-1.yaml)."""
    folder = world.ws / "playbooks"
    if not folder.exists():
        folder.mkdir()
        config = world.ws / "rollout.yaml"
        config.write_text(config.read_text() + "playbooks: ./playbooks\n")
    for name, text in books.items():
        (folder / f"{name.replace('_', '-')}.yaml").write_text(text)


def level_1_with(*steps: str, after_flags: bool = False) -> str:
    """A level 1 whose steps are the shipped ones with `steps` (YAML list items) after env.set (or flag.set)."""
    env = "  - type: env.set\n    values:\n      LITELLM_ROLLOUT_PERCENTAGE: 0\n"
    flag = "  - type: flag.set\n    percentage: 0\n"
    middle = env + flag + "".join(steps) if after_flags else env + "".join(steps) + flag
    return "kind: rollback\nlevel: 1\nbudget: 30s\nsteps:\n" + middle + "  - type: verify\n    percentage: 0\n"


def run_step(argv: list[str], timeout: str = "10s") -> str:
    return f"  - type: run\n    argv: {json.dumps(argv)}\n    timeout: {timeout}\n"


def flag_percentage(world: World) -> int:
    flags = json.loads(world.app.flags_file.read_text())
    return int(flags["flags"]["litellm-gateway"]["targeting"]["fractional"][1][1])


def commit_file(repo: Path, name: str, text: str, message: str) -> str:
    path = repo / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    git(repo, "add", name)
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD").strip()


def rollout_process(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    """`rollout` as its own process (the tests that kill it must not kill pytest)."""
    return subprocess.run(
        [sys.executable, "-m", "rollout_cli", "-w", str(world.ws), *args],
        capture_output=True, text=True, timeout=120, env={**os.environ, "COLUMNS": "250"},
    )


def gone(pid: int) -> bool:
    """The process has ended (a zombie waiting for an unrelated parent counts as ended)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2] in "ZX"


# --- 7: an unexpected exception inside a step ---------------------------------


@dataclass
class Explode(Step):
    """A step with a bug: it raises something no step is meant to raise, quoting a secret."""

    type = "test.explode"

    def describe(self, ctx) -> str:  # type: ignore[no-untyped-def]
        return "explode"

    def run(self, ctx) -> Outcome:  # type: ignore[no-untyped-def]
        raise RuntimeError("boom with sk-SECRET-0123456789 inside")


def test_unexpected_error_fails_its_step_and_the_record_and_report_are_still_written(world, monkeypatch):
    monkeypatch.setitem(STEP_TYPES, Explode.type, Explode)
    override(world, rollback_1=level_1_with("  - type: test.explode\n"))
    result = world.cli("rollback", "--level", "1", "--yes", "--reason", "bug hunt", "--json")
    assert result.exit_code == 1, result.output
    assert "sk-SECRET" not in result.output and "Traceback" not in result.output
    data = json.loads(result.stdout)
    steps = data["levels"][0]["steps"]
    assert [s["status"] for s in steps] == ["ok", "failed", "ok", "ok"]
    assert steps[1]["detail"] == "unexpected error (RuntimeError): a bug in rollout; please report it"
    assert steps[1]["exit_code"] == 1
    assert data["took_effect"] == [
        f"level 1 step 1: set LITELLM_ROLLOUT_PERCENTAGE=0 in {world.app.env_file} (temp file + rename)",
        f"level 1 step 3: set flag litellm-gateway to 0% in {world.app.flags_file} (temp file + rename)",
    ]
    records = world.history()
    assert [r["phase"] for r in records] == ["started", "finished"]
    finished = records[-1]
    assert finished["result"] == "failed" and finished["exit_code"] == 1 and finished["reason"] == "bug hunt"
    assert {(c["key"], c["after"]) for c in finished["changes"]} == {
        ("LITELLM_ROLLOUT_PERCENTAGE", "0"), ("litellm-gateway", 0)}
    assert "sk-SECRET" not in (world.ws / ".rollout" / "history.jsonl").read_text()
    human = world.cli("rollback", "--level", "1", "--yes")
    assert "unexpected error (RuntimeError)" in human.stdout and "sk-SECRET" not in human.output


# --- 10: history.jsonl is a folder ---------------------------------------------


def test_history_being_a_folder_is_refused_before_any_file_changes(world):
    (world.ws / ".rollout" / "history.jsonl").mkdir(parents=True)
    snap = world.snapshot()
    result = world.cli("rollback", "--level", "1", "--yes")
    assert result.exit_code == 2
    history = world.ws / ".rollout" / "history.jsonl"
    assert result.stderr == (
        f"rollout: error: {history} is a folder, not a file: move it out of the way, then run again\n"
    )
    assert world.snapshot() == snap
    assert "LITELLM_ROLLOUT_PERCENTAGE=10" in world.app.env_file.read_text()


# --- 11: level 4 and merge commits, partial reverts ----------------------------


def add_merged_integration(world: World) -> dict[str, str]:
    """A --no-ff merge of a gateway branch, and a later gateway commit, all matching integration_grep."""
    repo = world.app.repo
    git(repo, "checkout", "-q", "-b", "gateway-retries")
    branch = commit_file(repo, "server/retry.ts", "export const retries = 3;\n", "LiteLLM gateway: retries")
    git(repo, "checkout", "-q", "main")
    commit_file(repo, "docs/notes.md", "unrelated\n", "Notes")
    git(repo, "merge", "-q", "--no-ff", "-m", "Merge the LiteLLM gateway retries", "gateway-retries")
    merge = git(repo, "rev-parse", "HEAD").strip()
    later = commit_file(repo, "server/timeout.ts", "export const timeout = 30;\n", "LiteLLM gateway: timeouts")
    return {"branch": branch, "merge": merge, "later": later}


def test_level_4_reverts_a_merge_against_its_first_parent(world):
    integration = git(world.app.repo, "rev-parse", "HEAD~1").strip()  # before the flag commit
    assert git(world.app.repo, "log", "-1", "--format=%s", integration).strip() == INTEGRATION_SUBJECT
    shas = add_merged_integration(world)
    override(world, rollback_2=IDLE_LEVEL.format(n=2), rollback_3=IDLE_LEVEL.format(n=3))
    drill = world.cli("rollback", "--level", "4", "--drill", "--json")
    assert drill.exit_code == 0, drill.output

    result = world.cli("rollback", "--level", "4", "--yes", "--json")
    assert result.exit_code == 0, result.output
    repo = world.app.repo
    for name in ("server/retry.ts", "server/timeout.ts", "server/litellm-client.ts"):
        assert not (repo / name).exists(), name
    assert (repo / "docs/notes.md").read_text() == "unrelated\n"  # the mainline's own work stays
    changes = world.history()[-1]["changes"]
    reverted = [(c["commit"], c.get("mainline")) for c in changes if c.get("action") == "revert"]
    assert reverted == [(shas["later"], None), (shas["merge"], 1), (integration, None)]
    detail = json.loads(result.stdout)["levels"][3]["steps"][0]["detail"]
    assert f"{shas['branch'][:10]} already reverted (its changes are not in HEAD)" in detail
    checks = {c["name"]: c for lvl in json.loads(drill.stdout)["levels"] for s in lvl["steps"]
              for c in s.get("checks", [])}
    assert checks["integration commits revert cleanly"]["detail"] == "4 commit(s), 1 merge(s) reverted against parent 1"


def test_a_merge_inside_a_merged_branch_is_refused_by_the_drill_and_before_any_revert(world):
    repo = world.app.repo
    git(repo, "checkout", "-q", "-b", "outer")
    git(repo, "checkout", "-q", "-b", "inner")
    commit_file(repo, "server/inner.ts", "inner\n", "inner work")
    git(repo, "checkout", "-q", "outer")
    commit_file(repo, "server/outer.ts", "outer\n", "outer work")
    git(repo, "merge", "-q", "--no-ff", "-m", "Merge inner into outer", "inner")
    inner_merge = git(repo, "rev-parse", "HEAD").strip()
    git(repo, "checkout", "-q", "main")
    git(repo, "merge", "-q", "--no-ff", "-m", "Merge outer", "outer")
    config = world.ws / "rollout.yaml"
    config.write_text(config.read_text().replace(
        'integration_grep: "LiteLLM gateway"', f"integration_commits: [{inner_merge}]"))
    override(world, rollback_2=IDLE_LEVEL.format(n=2), rollback_3=IDLE_LEVEL.format(n=3))
    message = (f"commit {inner_merge[:10]} (Merge inner into outer) is a merge inside a merged branch, not on the "
               "first-parent history of HEAD")
    drill = world.cli("rollback", "--level", "4", "--drill")
    assert drill.exit_code == 2 and message in drill.stdout
    head = world.head()
    result = world.cli("rollback", "--level", "4", "--yes", "--json")
    assert result.exit_code == 2
    step = json.loads(result.stdout)["levels"][3]["steps"][0]
    assert step["status"] == "failed" and message in step["detail"]
    assert world.head() == head


def test_a_partial_level_4_says_which_commits_it_reverted(world):
    repo = world.app.repo
    client = repo / "server/litellm-client.ts"
    commit_file(repo, "server/litellm-client.ts", client.read_text() + "// tuned\n", "Tune the client")
    later = commit_file(repo, "server/timeout.ts", "export const timeout = 30;\n", "LiteLLM gateway: timeouts")
    override(world, rollback_2=IDLE_LEVEL.format(n=2), rollback_3=IDLE_LEVEL.format(n=3))
    # The drill sees beforehand that the integration no longer reverts cleanly.
    drill = world.cli("rollback", "--level", "4", "--drill")
    assert drill.exit_code == 1
    assert "no longer reverts cleanly onto HEAD" in drill.stdout
    dry = json.loads(world.cli("rollback", "--level", "4", "--dry-run", "--json").stdout)
    assert dry["levels"][3]["steps"][0]["detail"].startswith(
        f"revert {later[:10]} LiteLLM gateway: timeouts; revert (may conflict: a later commit changed the same lines)")

    result = world.cli("rollback", "--level", "4", "--yes", "--json")
    assert result.exit_code == 4, result.output
    data = json.loads(result.stdout)
    new_head = world.head()
    assert git(repo, "log", "-1", "--format=%s").strip() == 'Revert "LiteLLM gateway: timeouts"'
    step = data["levels"][3]["steps"][0]
    assert step["status"] == "failed"
    assert "conflicts in server/litellm-client.ts" in step["detail"]
    assert step["partial"] == f"reverted {later[:10]} as {new_head[:10]}"
    assert data["took_effect"][-1] == f"level 4 step 1 (then failed): reverted {later[:10]} as {new_head[:10]}"
    finished = world.history()[-1]
    assert [(c["commit"], c["after"]) for c in finished["changes"] if c.get("action") == "revert"] == [
        (later, new_head)]
    assert git(repo, "status", "--porcelain", "--untracked-files=no").strip() == "M flags.json"
    human = world.cli("rollback", "--level", "4", "--yes")
    assert "took effect:" in human.stdout


# --- 12: "already reverted" means the changes are not in HEAD ------------------


def test_level_4_reverts_again_an_integration_that_was_brought_back(world):
    override(world, rollback_3=IDLE_LEVEL.format(n=3))
    assert world.cli("rollback", "--level", "4", "--yes").exit_code == 0
    client = world.app.repo / "server/litellm-client.ts"
    assert not client.exists()
    git(world.app.repo, "revert", "--no-edit", "HEAD")  # the operator brings the integration back
    assert client.exists()
    dry = json.loads(world.cli("rollback", "--level", "4", "--dry-run", "--json").stdout)
    assert not dry["levels"][3]["steps"][0]["detail"].startswith("already reverted")
    result = world.cli("rollback", "--level", "4", "--yes", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["levels"][3]["steps"][0]["status"] == "ok"
    assert not client.exists()
    # and now it really is reverted: a third run changes nothing
    head = world.head()
    third = world.cli("rollback", "--level", "4", "--yes", "--json")
    assert third.exit_code == 0 and world.head() == head
    assert json.loads(third.stdout)["levels"][3]["steps"][0]["status"] == "unchanged"


def test_an_empty_integration_commit_has_nothing_to_revert(world):
    git(world.app.repo, "commit", "-q", "--allow-empty", "-m", "LiteLLM gateway: placeholder")
    empty = world.head()
    override(world, rollback_2=IDLE_LEVEL.format(n=2), rollback_3=IDLE_LEVEL.format(n=3))
    dry = json.loads(world.cli("rollback", "--level", "4", "--dry-run", "--json").stdout)
    assert dry["levels"][3]["steps"][0]["detail"].startswith(
        f"nothing to revert (it changes nothing) {empty[:10]} LiteLLM gateway: placeholder; revert ")
    result = world.cli("rollback", "--level", "4", "--yes", "--json")
    assert result.exit_code == 0, result.output
    detail = json.loads(result.stdout)["levels"][3]["steps"][0]["detail"]
    assert detail.startswith(f"{empty[:10]} nothing to revert (it changes nothing); reverted ")


# --- 13: "nothing needed changing" only on success ----------------------------


def test_a_failed_rollback_does_not_say_nothing_needed_changing(world):
    assert world.cli("rollback", "--level", "1", "--yes").exit_code == 0
    router = world.app.repo / "server/model-router.ts"
    router.write_text(router.read_text() + "// local hack\n")
    result = world.cli("rollback", "--level", "2", "--yes")
    assert result.exit_code == 1
    assert "nothing needed changing" not in result.stdout
    assert result.stdout.rstrip().endswith("nothing took effect")
    router.write_text(router.read_text().replace("// local hack\n", ""))
    git(world.app.repo, "checkout", "-q", "--", "server/model-router.ts")
    assert world.cli("rollback", "--level", "2", "--yes").exit_code == 0
    again = world.cli("rollback", "--level", "2", "--yes")
    assert again.exit_code == 0
    assert again.stdout.rstrip().endswith("nothing needed changing: already rolled back to this level")


# --- 14: run steps: their own session, their own process, their whole group ------


def test_a_run_step_that_leaves_a_background_child_is_not_waited_for(world, tmp_path):
    pidfile = tmp_path / "background.pid"
    override(world, rollback_1=level_1_with(
        run_step(["sh", "-c", f"sleep 20 & echo $! > {pidfile}; echo reloaded; exit 0"], timeout="5s")))
    try:
        result = world.cli("rollback", "--level", "1", "--yes", "--json")
        assert result.exit_code == 0, result.output
        steps = json.loads(result.stdout)["levels"][0]["steps"]
        assert [s["status"] for s in steps] == ["ok", "ok", "ok", "ok"]
        assert steps[1]["detail"].endswith(": exit 0")
        assert flag_percentage(world) == 0
        assert not gone(int(pidfile.read_text()))  # the background child lives on: it is the app's business
    finally:
        if pidfile.exists():
            subprocess.run(["kill", pidfile.read_text().strip()])


def test_a_run_step_that_times_out_has_its_whole_process_group_killed(world, tmp_path):
    pids = tmp_path / "pids"
    override(world, rollback_1=level_1_with(
        run_step(["sh", "-c", f"sleep 60 & echo $! > {pids}; echo $$ >> {pids}; sleep 60"], timeout="1s")))
    result = world.cli("rollback", "--level", "1", "--yes", "--json")
    child, leader = (int(line) for line in pids.read_text().split())
    deadline = time.monotonic() + 10  # SIGKILL is sent; the kernel needs a moment to finish them
    while not (gone(child) and gone(leader)) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert gone(child) and gone(leader)
    finally:
        for pid in (child, leader):
            if not gone(pid):
                os.kill(pid, 9)
    assert result.exit_code == 1, result.output
    step = json.loads(result.stdout)["levels"][0]["steps"][1]
    assert step["detail"] == (
        f"run sh -c sleep 60 & echo $! > {pids}; echo $$ >> {pids}; sleep 60 timed out after 1 s "
        "(its process group was killed)"
    )
    assert flag_percentage(world) == 10  # a failed run step stops the level


def test_a_run_step_whose_folder_is_missing_says_so(world):
    override(world, rollback_1=level_1_with("  - type: run\n    argv: ['true']\n    cwd: nowhere\n"))
    result = world.cli("rollback", "--level", "1", "--yes", "--json")
    assert result.exit_code == 2
    detail = json.loads(result.stdout)["levels"][0]["steps"][1]["detail"]
    assert detail == f"folder {world.ws / 'nowhere'} of run true does not exist; fix 'cwd' in the playbook"


def test_a_run_step_that_cannot_be_started_says_why(world):
    script = world.ws / "reload.sh"
    script.write_text("#!/bin/sh\necho reloaded\n")
    script.chmod(0o644)  # not executable
    override(world, rollback_1=level_1_with(run_step([str(script)])))
    result = world.cli("rollback", "--level", "1", "--yes", "--json")
    assert result.exit_code == 2
    detail = json.loads(result.stdout)["levels"][0]["steps"][1]["detail"]
    assert detail == f"cannot start {str(script)!r}: Permission denied"


# --- 15: a failing step leaves the tree as it was; detached HEAD -----------------


def failing_signer(repo: Path) -> None:
    git(repo, "config", "commit.gpgsign", "true")
    git(repo, "config", "gpg.program", "false")


@pytest.mark.parametrize(("level", "ending"), [
    (2, "error: gpg failed to sign the data; the tree is as it was"),
    (4, "error: gpg failed to sign the data; the tree is as it was"),
])
def test_a_failing_signer_leaves_the_tree_clean_for_the_retry(world, level, ending):
    if level == 4:
        override(world, rollback_2=IDLE_LEVEL.format(n=2), rollback_3=IDLE_LEVEL.format(n=3))
    failing_signer(world.app.repo)
    head = world.head()
    result = world.cli("rollback", "--level", str(level), "--yes", "--json")
    assert result.exit_code == 4, result.output
    assert world.head() == head
    assert git(world.app.repo, "status", "--porcelain", "--untracked-files=no") == " M flags.json\n"
    detail = json.loads(result.stdout)["levels"][level - 1]["steps"][0]["detail"]
    assert detail.endswith(ending), detail
    git(world.app.repo, "config", "--unset", "commit.gpgsign")
    retry = world.cli("rollback", "--level", str(level), "--yes")
    assert retry.exit_code == 0, retry.output
    assert world.head() != head


def test_levels_2_and_4_refuse_a_detached_head(world):
    git(world.app.repo, "checkout", "-q", "--detach")
    head = world.head()
    message = (f"git repo {world.app.repo} has a detached HEAD (at {head[:10]}): a rollback commit there "
               "would be on no branch")
    result = world.cli("rollback", "--level", "2", "--yes", "--json")
    assert result.exit_code == 4
    assert message in json.loads(result.stdout)["levels"][1]["steps"][0]["detail"]
    assert world.head() == head and git(world.app.repo, "status", "--porcelain", "--untracked-files=no") == (
        " M flags.json\n")
    override(world, rollback_2=IDLE_LEVEL.format(n=2), rollback_3=IDLE_LEVEL.format(n=3))
    four = world.cli("rollback", "--level", "4", "--yes", "--json")
    assert four.exit_code == 4 and message in json.loads(four.stdout)["levels"][3]["steps"][0]["detail"]
    assert world.head() == head
    drill = world.cli("rollback", "--level", "4", "--drill", "--json")
    checks = {c["name"]: c for lvl in json.loads(drill.stdout)["levels"] for s in lvl["steps"]
              for c in s.get("checks", [])}
    assert drill.exit_code == 4 and checks["HEAD on a branch"]["ok"] is False


# --- 16: write-ahead audit records; status shows an unfinished operation ---------


def test_the_started_record_is_written_before_the_first_change(world, tmp_path):
    seen = tmp_path / "seen.jsonl"
    history = world.ws / ".rollout" / "history.jsonl"
    status = tmp_path / "status.json"
    status_cmd = f"{sys.executable} -m rollout_cli -w {world.ws} status"
    during = f"cp {history} {seen}; {status_cmd} --json > {status}; COLUMNS=250 {status_cmd} > {status}.txt; true"
    override(world, rollback_1=level_1_with(run_step(["sh", "-c", during], timeout="60s"), after_flags=True))
    result = world.cli("rollback", "--level", "1", "--yes", "--reason", "write ahead")
    assert result.exit_code == 0, result.output
    started = [json.loads(line) for line in seen.read_text().splitlines()]
    assert [(r["phase"], r["command"], r["reason"]) for r in started] == [("started", "rollback --level 1",
                                                                          "write ahead")]
    records = world.history()
    assert [r["phase"] for r in records] == ["started", "finished"] and records[0]["op"] == records[1]["op"]
    during_status = json.loads(status.read_text())
    assert during_status["unfinished"]["running"] is True
    assert during_status["exit_code"] == 0 and during_status["stage"]["percentage"] == 0
    assert "  in progress: `rollback --level 1` started " in Path(f"{status}.txt").read_text()
    after = json.loads(world.cli("status", "--json").stdout)
    assert after["unfinished"] is None and after["last_change"]["reason"] == "write ahead"


def test_the_finished_record_is_written_before_the_next_writer_gets_the_lock(world):
    override(world, rollback_1=level_1_with(run_step(["sleep", "1"]), after_flags=True))
    first = subprocess.Popen([sys.executable, "-m", "rollout_cli", "-w", str(world.ws), "rollback", "--level", "1",
                              "--yes", "--reason", "first"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        while not world.history():  # the first holds the lock once its started record is there
            assert first.poll() is None, first.communicate()
            time.sleep(0.02)
        second = world.cli("rollback", "--level", "1", "--yes", "--reason", "second",
                           env={"ROLLOUT_LOCK_TIMEOUT": "60"})
    finally:
        first.wait(timeout=60)
    assert first.returncode == 0 and second.exit_code == 0, second.output
    assert [(r["reason"], r["phase"]) for r in world.history()] == [
        ("first", "started"), ("first", "finished"), ("second", "started"), ("second", "finished")]


def test_status_shows_an_operation_killed_part_way_and_credits_it_not_an_older_record(world):
    assert world.cli("rollback", "--level", "1", "--yes", "--reason", "first").exit_code == 0
    world.app.env_file.write_text(env_text(10, enabled=True))  # back to 10% by hand
    world.app.flags_file.write_text(flagd_text(10))
    # The second rollback is killed (SIGKILL, no cleanup) after it changed both files.
    override(world, rollback_1=level_1_with(run_step(["sh", "-c", "kill -9 $PPID; sleep 5"]), after_flags=True))
    killed = rollout_process(world, "rollback", "--level", "1", "--yes", "--reason", "second")
    assert killed.returncode == -9
    assert flag_percentage(world) == 0
    result = world.cli("status", "--json")
    assert result.exit_code == 1
    data = json.loads(result.stdout)
    assert data["last_change"]["reason"] == "second"
    assert data["unfinished"]["command"] == "rollback --level 1" and data["unfinished"]["running"] is False
    human = world.cli("status")
    assert "UNFINISHED `rollback --level 1` started" in human.stdout and "recorded no end" in human.stdout
    shown = json.loads(world.cli("history", "--json").stdout)["records"]
    assert [(r["reason"], r["result"]) for r in shown] == [("first", "ok"), ("second", "started")]
    # Running it again to the end supersedes the unfinished one.
    override(world, rollback_1=level_1_with())
    assert world.cli("rollback", "--level", "1", "--yes", "--reason", "third").exit_code == 0
    final = world.cli("status", "--json")
    assert final.exit_code == 0 and json.loads(final.stdout)["unfinished"] is None


def test_a_finished_record_that_cannot_be_written_still_reports_what_took_effect(world):
    history = world.ws / ".rollout" / "history.jsonl"
    # Half-way, the audit trail is replaced by a folder: the finished record cannot be appended.
    override(world, rollback_1=level_1_with(run_step(["sh", "-c", f"rm {history} && mkdir {history}"])))
    result = world.cli("rollback", "--level", "1", "--yes", "--json")
    assert result.exit_code == 2, result.output
    data = json.loads(result.stdout)
    assert data["messages"] == [
        f"the audit record could not be written: {history} is a folder, not a file: move it out of the way, "
        "then run again"]
    assert [line.split(":")[0] for line in data["took_effect"]] == ["level 1 step 1", "level 1 step 2", "level 1 step 3"]
    assert flag_percentage(world) == 0


def test_ctrl_c_mid_rollback_records_what_ran_and_ends_the_run_step(world, tmp_path):
    import signal

    pidfile = tmp_path / "step.pid"
    override(world, rollback_1=level_1_with(run_step(["sh", "-c", f"echo $$ > {pidfile}; sleep 60"], "120s")))
    # A SIGINT this test's process inherited as ignored (a suite started as a background job: `... &` in a
    # script) would be ignored by rollout too, as Python keeps it: Ctrl-C then never reaches it. A terminal's
    # foreground command has it as the default, as here.
    proc = subprocess.Popen([sys.executable, "-m", "rollout_cli", "-w", str(world.ws), "rollback", "--level", "1",
                             "--yes", "--reason", "interrupted"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        while not (pidfile.exists() and pidfile.read_text().strip()):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)  # what Ctrl-C sends; the step's own session does not get it
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130 and err == "rollout: interrupted\n", (proc.returncode, err, _out)
    step_pid = int(pidfile.read_text())
    deadline = time.monotonic() + 10
    while not gone(step_pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        assert gone(step_pid)
    finally:
        if not gone(step_pid):
            os.kill(step_pid, 9)
    finished = world.history()[-1]
    assert (finished["phase"], finished["result"], finished["exit_code"]) == ("finished", "interrupted", 130)
    assert [(c["key"], c["after"]) for c in finished["changes"]] == [("LITELLM_ROLLOUT_PERCENTAGE", "0")]
    assert [s["status"] for s in finished["steps"]] == ["ok"]  # the run step never reported


# --- 19: no repository-supplied program runs ------------------------------------


def test_git_runs_no_fsmonitor_and_no_hooks_from_the_app_repo(world, tmp_path):
    marker = tmp_path / "ran"
    repo = world.app.repo
    git(repo, "config", "core.fsmonitor", f"touch {marker}-fsmonitor; false")
    hook = repo / ".git" / "hooks" / "post-commit"
    hook.write_text(f"#!/bin/sh\ntouch {marker}-hook\n")
    hook.chmod(0o755)
    assert world.cli("rollback", "--level", "2", "--drill").exit_code == 0
    assert world.cli("rollback", "--level", "2", "--dry-run").exit_code == 0
    assert world.cli("rollback", "--level", "2", "--yes").exit_code == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("ran")) == []


def test_read_only_commands_run_no_git_filter_the_app_repo_defines(world, tmp_path):
    """A `.gitattributes` naming a clean/smudge filter that the repo's own `.git/config` defines:
    git would run it whenever it hashes a work-tree file whose stat changed. No read-only command may."""
    marker = tmp_path / "filter-ran"
    repo = world.app.repo
    (repo / ".gitattributes").write_text("*.ts filter=evil\n")
    git(repo, "add", ".gitattributes")
    git(repo, "commit", "-q", "-m", "attributes")
    for kind in ("clean", "smudge"):
        git(repo, "config", f"filter.evil.{kind}", f"touch {marker}-{kind}; cat")
    git(repo, "config", "filter.evil.required", "true")
    index = (repo / ".git" / "index").read_bytes()
    for path in repo.rglob("*.ts"):  # a new mtime: git must read (and would clean) the content again
        os.utime(path, (time.time() + 5, time.time() + 5))
    for args in (("report", "--json"), ("status",), ("history",), ("rollback", "--level", "4", "--drill"),
                 ("rollback", "--level", "4", "--dry-run"), ("advance", "--dry-run")):
        result = world.cli(*args)
        assert "Traceback" not in result.output, args
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("filter-ran")) == [], args
    assert (repo / ".git" / "index").read_bytes() == index  # nor did git status refresh the index
    # The drill still sees a clean tree: the filter is `cat`, so the content is what HEAD has.
    drill = world.cli("rollback", "--level", "4", "--drill", "--json")
    assert "git tree clean" in drill.stdout


def test_a_git_dir_given_as_the_app_repo_is_refused_and_runs_nothing(world, tmp_path):
    marker = tmp_path / "ran"
    planted = tmp_path / "planted"
    subprocess.run(["git", "init", "-q", "--bare", str(planted)], check=True)
    worktree = tmp_path / "planted-tree"
    worktree.mkdir()
    for key, value in (("core.bare", "false"), ("core.worktree", str(worktree)),
                       ("core.fsmonitor", f"touch {marker}")):
        subprocess.run(["git", "config", "--file", str(planted / "config"), key, value], check=True)
    config = world.ws / "rollout.yaml"
    config.write_text(config.read_text().replace("repo: ../app", f"repo: {planted}"))
    drill = world.cli("rollback", "--level", "2", "--drill")
    assert not marker.exists()
    assert drill.exit_code == 2
    assert f"{planted} is a bare git directory, not a work tree" in drill.stdout
    report = world.cli("report", "--json")
    assert not marker.exists()
    assert report.exit_code in (1, 3, 4)  # no gateway here: what matters is that nothing ran


def test_a_ctrl_c_while_popen_starts_a_run_step_still_ends_its_program(tmp_path, monkeypatch):
    """The Ctrl-C that comes after the fork, while Popen waits for the exec's outcome: the program it started
    (in a session of its own, out of the terminal's reach) must still be ended, not left running."""
    import signal

    from rollout_cli.io.process import run_in_session

    started: list[subprocess.Popen] = []
    real_popen = subprocess.Popen

    def popen_then_ctrl_c(*args, **kwargs):  # type: ignore[no-untyped-def]
        proc = real_popen(*args, **kwargs)
        started.append(proc)
        os.kill(os.getpid(), signal.SIGINT)  # delivered here, before Popen hands the process back
        return proc

    monkeypatch.setattr(subprocess, "Popen", popen_then_ctrl_c)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)  # as a terminal's command has it
    try:
        with pytest.raises(KeyboardInterrupt):
            run_in_session(["sleep", "30"], cwd=tmp_path, timeout=60)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert len(started) == 1 and started[0].poll() is not None  # ended (and reaped), not left sleeping
