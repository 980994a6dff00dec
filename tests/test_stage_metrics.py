"""Issue 21 item 2: `.rollout/rollout.prom`, the stage as metrics for node_exporter's textfile collector.

Through the real `rollout` command in a test world (no gateway answers); the file is read with
prometheus_client's own parser. tests/test_dashboard_world.py has node_exporter serve it to the
sandbox's Prometheus.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from rollout_cli.core.stagemetrics import FAMILIES, write_stage_metrics
from rollout_cli.core.workspace import load_workspace
from rollout_cli.io.lock import WorkspaceLock
from rollout_cli.sandbox.prometheus import render_config
from support import World, make_world


def metrics(world: World) -> dict[str, dict[tuple[str, ...], float]]:
    """The file as prometheus_client parses it: sample name -> {label values: value}; HELP and TYPE checked."""
    out: dict[str, dict[tuple[str, ...], float]] = {}
    for family in text_string_to_metric_families((world.ws / ".rollout" / "rollout.prom").read_text()):
        name = family.name + ("_total" if family.type == "counter" else "")
        kind, text = FAMILIES[name]
        assert (family.type, family.documentation) == (kind, text)
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(sorted(sample.labels.values()))] = sample.value
    return out


def set_env_percentage(world: World, percentage: int) -> None:
    env = world.app.env_file
    lines = [f"LITELLM_ROLLOUT_PERCENTAGE={percentage}" if line.startswith("LITELLM_ROLLOUT_PERCENTAGE=") else line
             for line in env.read_text().splitlines()]
    env.write_text("\n".join(lines) + "\n")


def test_rollback_writes_stage_0_one_level_1_rollback_and_its_time(tmp_path: Path) -> None:
    world = make_world(tmp_path, percentage=10)
    result = world.cli("rollback", "--level", "1", "--yes", "--reason", "metrics")
    assert result.exit_code == 0, result.output
    found = metrics(world)
    assert found["rollout_stage_configured_ratio"] == {(): 0.0}
    assert found["rollout_stage_drift"] == {(): 0.0}
    assert found["rollout_rollbacks_total"] == {("1",): 1.0, ("2",): 0.0, ("3",): 0.0, ("4",): 0.0}
    assert found["rollout_last_verdict"] == {("GO",): 0.0, ("HOLD",): 0.0, ("NO-GO",): 0.0}  # no advance yet
    record = world.history()[-1]
    from datetime import datetime

    assert found["rollout_last_decision_timestamp_seconds"] == {
        (): datetime.fromisoformat(record["time"].replace("Z", "+00:00")).timestamp()}
    assert "rollout_traffic_observed_ratio" not in found  # nobody measured it
    assert not [p for p in (world.ws / ".rollout").iterdir() if p.name.endswith(".tmp")]  # renamed into place


def test_advance_records_its_verdict_and_a_drill_is_no_rollback(tmp_path: Path) -> None:
    world = make_world(tmp_path, percentage=10)
    assert world.cli("rollback", "--level", "1", "--drill").exit_code == 0
    advanced = world.cli("advance", "--yes")
    assert advanced.exit_code == 1, advanced.output  # NO-GO: no gateway answers
    found = metrics(world)
    assert found["rollout_last_verdict"] == {("GO",): 0.0, ("HOLD",): 0.0, ("NO-GO",): 1.0}
    assert found["rollout_rollbacks_total"][("1",)] == 0.0
    assert found["rollout_stage_configured_ratio"] == {(): 0.1}


def test_status_refreshes_the_stage_after_a_hand_edit_and_says_drift(tmp_path: Path) -> None:
    world = make_world(tmp_path, percentage=10)
    assert world.cli("rollback", "--level", "1", "--yes").exit_code == 0
    set_env_percentage(world, 50)  # the flags file still says 0 %
    assert world.cli("status").exit_code == 1  # drift
    found = metrics(world)
    assert found["rollout_stage_configured_ratio"] == {(): 0.5}
    assert found["rollout_stage_drift"] == {(): 1.0}


def test_a_read_only_command_in_a_fresh_workspace_creates_no_state_folder(tmp_path: Path) -> None:
    world = make_world(tmp_path, percentage=10)
    assert world.cli("status").exit_code == 0
    assert not (world.ws / ".rollout").exists()


def test_status_does_not_wait_for_a_held_lock_and_leaves_the_file_to_its_holder(tmp_path: Path) -> None:
    world = make_world(tmp_path, percentage=10)
    assert world.cli("rollback", "--level", "1", "--yes").exit_code == 0
    before = (world.ws / ".rollout" / "rollout.prom").read_text()
    set_env_percentage(world, 50)
    with WorkspaceLock(world.ws / ".rollout", "test holder", timeout=0):
        result = world.cli("status", env={"ROLLOUT_LOCK_TIMEOUT": "30"})
    assert result.exit_code == 1, result.output  # drift, said at once (a wait would have taken 30 s and failed)
    assert (world.ws / ".rollout" / "rollout.prom").read_text() == before


def test_a_metrics_file_that_cannot_be_written_is_a_message_never_a_failure(tmp_path: Path) -> None:
    world = make_world(tmp_path, percentage=10)
    (world.ws / ".rollout").mkdir()
    (world.ws / ".rollout" / "rollout.prom").mkdir()  # a folder in its place
    rolled = world.cli("rollback", "--level", "1", "--yes", "--json")
    assert rolled.exit_code == 0, rolled.output
    assert "LITELLM_ROLLOUT_PERCENTAGE=0" in world.app.env_file.read_text()
    messages = json.loads(rolled.stdout)["messages"]
    assert any(m.startswith(f"{world.ws / '.rollout' / 'rollout.prom'} not refreshed: ") for m in messages), messages
    status = world.cli("status", "--json")
    assert status.exit_code == 0
    assert any("rollout.prom not refreshed: " in m for m in json.loads(status.stdout)["messages"])


def test_the_observed_share_is_carried_with_its_time_until_the_stage_moves(tmp_path: Path) -> None:
    world = make_world(tmp_path, percentage=10)
    ws = load_workspace(world.ws)
    (world.ws / ".rollout").mkdir()
    assert write_stage_metrics(ws, {"share": 12.5}) is None
    first = metrics(world)
    assert first["rollout_traffic_observed_ratio"] == {(): 0.125}
    assert write_stage_metrics(ws, {"share": None}) is None  # unknown now: the last number stays, with its time
    assert metrics(world)["rollout_traffic_observed_ratio"] == {(): 0.125}
    assert (metrics(world)["rollout_traffic_observed_timestamp_seconds"]
            == first["rollout_traffic_observed_timestamp_seconds"])
    assert world.cli("rollback", "--level", "1", "--yes").exit_code == 0  # the stage moved after it
    assert "rollout_traffic_observed_ratio" not in metrics(world)


def test_the_sandbox_scrape_config_has_job_rollout_only_with_a_node_exporter(tmp_path: Path) -> None:
    key = tmp_path / "key"
    jobs = {j["job_name"]: j for j in yaml.safe_load(render_config(1, 2, key, node_exporter_port=3))["scrape_configs"]}
    assert jobs["rollout"]["static_configs"] == [{"targets": ["127.0.0.1:3"]}]
    without = yaml.safe_load(render_config(1, 2, key))["scrape_configs"]
    assert [j["job_name"] for j in without] == ["litellm", "app"]


@pytest.mark.parametrize("command", [("report",), ("watch", "--count", "1"),
                                     ("advance", "--yes")], ids=["report", "watch", "advance"])
def test_report_watch_and_advance_refresh_the_stage_they_read(tmp_path: Path, command: tuple[str, ...]) -> None:
    world = make_world(tmp_path, percentage=10)
    assert world.cli("rollback", "--level", "1", "--yes").exit_code == 0
    set_env_percentage(world, 50)  # by hand: no rollout command has written it
    world.cli(*command)  # exit code as each has it (no gateway answers)
    assert metrics(world)["rollout_stage_configured_ratio"] == {(): 0.5}
