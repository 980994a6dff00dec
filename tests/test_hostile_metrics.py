"""Issue 23 items 1-3, 13 and 18 (observed share), issue 19 (check requests): a gateway whose /metrics/
lies (NaN, Inf, negative, duplicate, decreasing, HTML), drips, or is huge, against the real `rollout` command.

The hostile server is tests/hostile.py. Tests that hang on a rollout without total deadlines carry a
pytest-timeout marker or a subprocess timeout: the bound is in the test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hostile import HostileMetrics
from rollout_cli.sandbox.sample_app import workspace_yaml
from support import World, make_world

KEY = "sk-hostile-test-key-0123456789"


def strict_json(text: str) -> object:
    """json.loads that refuses NaN and Infinity, as JSON.parse and every other JSON parser does."""
    def refuse(constant: str) -> object:
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def hostile_world(tmp_path: Path, server: HostileMetrics, *, percentage: int = 10, app_metrics: bool = False,
                  upstream_key: Path | None = None, config: Path | None = None) -> World:
    world = make_world(tmp_path, percentage=percentage)
    key_file = upstream_key or (world.ws / "master.key")
    if upstream_key is None:
        key_file.write_text(KEY + "\n")
        key_file.chmod(0o600)
    extra = f"  metrics_url: {server.app_metrics_url}\n" if app_metrics else ""
    if config is None:  # one model whose upstream (and catalog) is the hostile server: no check leaves loopback
        config = world.ws / "litellm-config.yaml"
        config.write_text("model_list:\n  - model_name: glm-4.5-air\n    litellm_params:\n"
                          f"      model: openrouter/z-ai/glm-4.5-air:free\n      api_base: {server.url}/api/v1\n")
    (world.ws / "rollout.yaml").write_text(workspace_yaml(
        gateway_url=server.url, container=None, master_key_file=str(key_file),
        config=str(config) if config else None, app_extra=extra,
    ))
    return world


def last_sample(world: World) -> dict:
    lines = (world.ws / ".rollout" / "samples.jsonl").read_text().splitlines()
    return strict_json(lines[-1])  # type: ignore[return-value]


def gate(report: dict, name: str) -> dict:
    return next(g for g in report["gates"] if g["name"] == name)


# --- item 1: values no gate may judge -----------------------------------------------------------


@pytest.mark.parametrize(("mode", "named"), [
    ("nan", "is NaN"),
    ("inf", "is +Inf"),
    ("-inf", "is -Inf"),
    ("negative", "is negative"),
    ("duplicate", "appears twice"),
    ("decreasing", "went down from"),
    ("html", "not Prometheus text"),
])
def test_untrusted_metrics_make_the_window_gates_inconclusive_and_are_never_stored(tmp_path, mode, named):
    with HostileMetrics("ok") as server:
        world = hostile_world(tmp_path, server)
        assert world.cli("watch", "--count", "1").exit_code == 0  # a good sample: the window's base
        assert last_sample(world)["metrics"]["requests"] == 1000
        server.mode = mode

        report = world.cli("report", "--json")
        data = strict_json(report.stdout)
        for name in ("error rate", "fallback rate"):
            assert gate(data, name)["status"] == "inconclusive", gate(data, name)
            assert named in gate(data, name)["reason"]
        assert data["verdict"] != "GO"

        watched = world.cli("watch", "--count", "1", "--json")
        assert watched.exit_code == 0, watched.output
        line = strict_json(watched.stdout.splitlines()[0])
        assert named in line["metrics_error"]  # type: ignore[index]
        stored = last_sample(world)
        assert stored["metrics"] is None and named in stored["metrics_error"]


def test_nan_sample_stored_by_an_older_rollout_is_no_window_base(tmp_path):
    """A samples.jsonl line with NaN (written before this fix) must not turn into a passing window."""
    with HostileMetrics("ok", failed=500) as server:  # 50 % of the app's requests fail
        world = hostile_world(tmp_path, server)
        nan = {"requests": float("nan"), "failed": float("nan"), "fallbacks": 0.0, "failed_fallbacks": 0.0,
               "overhead_buckets": {}, "latency_buckets": {}, "models": {}, "has_litellm_metrics": True}
        (world.ws / ".rollout").mkdir(exist_ok=True)
        (world.ws / ".rollout" / "samples.jsonl").write_text(json.dumps({"ts": time.time(), "time": "now",
                                                                         "metrics": nan}) + "\n")
        data = strict_json(world.cli("report", "--json").stdout)
        assert gate(data, "error rate")["status"] != "pass", gate(data, "error rate")


@pytest.mark.gateway
def test_nan_metrics_from_a_healthy_gateway_give_hold_not_go(tmp_path, sb):
    """The issue's case: every other gate passes (the real LiteLLM answers health and smoke), /metrics/ says NaN."""
    with HostileMetrics("nan", upstream=sb.gateway_url) as server:
        world = hostile_world(tmp_path, server, upstream_key=sb.root / ".rollout" / "master.key",
                              config=sb.root / "gateway" / "litellm-config.yaml")
        watched = world.cli("watch", "--count", "1", "--json")
        assert watched.exit_code == 0, watched.output
        assert last_sample(world)["metrics"] is None
        advanced = world.cli("advance", "--dry-run", "--skip-soak", "--reason", "hostile test", "--json")
        data = strict_json(advanced.stdout)
        assert data["verdict"] == "HOLD" and advanced.exit_code == 3, data["reasons"]
        assert any("is NaN" in reason for reason in data["reasons"])
        assert gate(data, "smoke")["status"] == "pass"  # the other gates did pass: only the metrics hold it


# --- item 13: valid JSON always ----------------------------------------------------------------


def test_status_json_is_valid_with_nan_metrics_and_says_the_share_is_unknown(tmp_path):
    with HostileMetrics("nan", app_mode="nan") as server:
        world = hostile_world(tmp_path, server, app_metrics=True)
        result = world.cli("status", "--json")
        assert result.exit_code == 0, result.output
        observed = strict_json(result.stdout)["observed"]  # type: ignore[index]
        assert observed["share"] is None
        assert observed["text"].startswith("observed share unknown:") and "NaN" in observed["text"]


def test_the_apps_metrics_alone_answering_nan_say_the_share_is_unknown(tmp_path):
    """The gateway's counters are good; only app.metrics_url answers NaN (it was `internal error: ValueError`)."""
    with HostileMetrics("ok", gateway_step=100, app_mode="nan") as server:
        world = hostile_world(tmp_path, server, app_metrics=True)
        result = world.cli("status", "--json")
        assert result.exit_code == 0, result.output
        observed = strict_json(result.stdout)["observed"]  # type: ignore[index]
        assert observed["share"] is None
        assert observed["text"].startswith("observed share unknown:") and "cannot be trusted" in observed["text"]
        assert server.app_metrics_url in observed["text"] and "is NaN" in observed["text"]


# --- item 18: the observed share ---------------------------------------------------------------


@pytest.mark.parametrize(("mode", "named"), [
    ("html", "not Prometheus text"),  # was "observed 0.0% of 1,000"
    ("negative", "is negative"),  # was "observed -5.0%"
    ("duplicate", "appears twice"),  # was "observed 20.0%": the series counted twice
])
def test_status_does_not_report_a_share_it_could_not_know(tmp_path, mode, named):
    with HostileMetrics(mode, gateway_step=50, app_step=1000) as server:
        world = hostile_world(tmp_path, server, app_metrics=True)
        result = world.cli("status")
        assert result.exit_code == 0, result.output
        assert "observed share unknown:" in result.stdout and named in result.stdout
        assert "% of" not in result.stdout


def test_status_reports_the_share_from_good_metrics(tmp_path):
    with HostileMetrics("ok", gateway_step=100, app_step=1000) as server:
        world = hostile_world(tmp_path, server, app_metrics=True)
        result = world.cli("status", "--json")
        assert strict_json(result.stdout)["observed"]["share"] == 10.0  # type: ignore[index]


# --- items 2 and 3: slow and huge answers --------------------------------------------------------


def test_bounded_get_cuts_a_dripping_answer_at_its_total_deadline_and_caps_a_huge_one():
    from rollout_cli.io.net import HttpFailure, bounded_get

    with HostileMetrics("slow-drip", drip_s=0.2) as server:
        with pytest.raises(HttpFailure) as late:
            bounded_get(server.metrics_url, deadline_s=1.0, max_bytes=1024 * 1024)
        assert late.value.kind == "timeout" and "within 1 s" in late.value.reason
        server.mode = "huge"
        with pytest.raises(HttpFailure) as big:
            bounded_get(server.metrics_url, deadline_s=30.0, max_bytes=1024 * 1024)
        assert big.value.kind == "too-large"


@pytest.mark.timeout(90)  # today's main: each command waits out the drip (one byte a second, ~11 minutes)
@pytest.mark.parametrize("command", [("status",), ("report", "--json"), ("watch", "--count", "1", "--json"),
                                     ("health", "--json"), ("advance", "--dry-run", "--json")])
def test_read_commands_finish_when_metrics_drip(tmp_path, command):
    with HostileMetrics("slow-drip", app_step=100) as server:
        world = hostile_world(tmp_path, server, app_metrics=True)
        result = world.cli(*command)
        assert result.exit_code in (0, 1, 3, 4), result.output
        if command[0] == "status":
            assert "observed share unknown:" in result.stdout and "no whole answer within 5 s" in result.stdout
        if command[0] in ("report", "watch"):
            assert "no whole answer within 5 s" in result.stdout


@pytest.mark.timeout(60)  # today's main: `status` waited on the app's metrics as long as they dripped
def test_status_finishes_when_only_the_apps_metrics_drip(tmp_path):
    with HostileMetrics("ok", gateway_step=100, app_mode="slow-drip") as server:
        world = hostile_world(tmp_path, server, app_metrics=True)
        result = world.cli("status")
        assert result.exit_code == 0, result.output
        assert "observed share unknown:" in result.stdout and "no whole answer within 5 s" in result.stdout
        assert "app" in result.stdout.split("observed share unknown:")[1]


def test_a_gateway_answering_an_empty_object_for_its_models_is_no_go_and_the_report_is_written(tmp_path):
    """Issue 19: a gateway answering `{}` to /v1/models (no `data` at all) and a config with no model."""
    with HostileMetrics("ok") as server:
        server.models = []
        empty = tmp_path / "empty-config.yaml"
        empty.write_text("model_list: []\n")
        for config in (None, empty):  # what the gateway lists alone, then a gateway config naming no model
            (tmp_path / str(config is not None)).mkdir()
            world = hostile_world(tmp_path / str(config is not None), server, config=empty)
            if config is None:
                without = [line for line in (world.ws / "rollout.yaml").read_text().splitlines(keepends=True)
                           if not line.startswith("  config:")]
                (world.ws / "rollout.yaml").write_text("".join(without))
            markdown = world.ws / "report.md"
            result = world.cli("report", "--markdown", str(markdown), "--json")
            assert result.exit_code == 1, result.output
            assert "internal error" not in result.output and "Traceback" not in result.output
            data = json.loads(result.stdout)
            why = "model_list must be a non-empty list" if config else "the gateway serves no models"
            assert data["verdict"] == "NO-GO" and any(why in reason for reason in data["reasons"]), data["reasons"]
            assert "**NO-GO**" in markdown.read_text()  # still written


@pytest.mark.timeout(60)  # today's main: the 60-byte answer drips for a minute per model (per-read timeouts only)
def test_health_cuts_off_a_dripping_completion_at_its_timeout(tmp_path):
    with HostileMetrics("ok", completions="slow-drip") as server:
        world = hostile_world(tmp_path, server)
        result = world.cli("health", "--model", "glm-4.5-air", "--timeout", "2", "--json")
        model = strict_json(result.stdout)["models"][0]  # type: ignore[index]
        assert model["error_class"] == "timeout", model
        assert result.exit_code == 1


@pytest.mark.timeout(60)
def test_status_refuses_a_huge_metrics_answer(tmp_path):
    with HostileMetrics("huge", huge_bytes=64 * 1024 * 1024, app_step=100) as server:
        world = hostile_world(tmp_path, server, app_metrics=True)
        result = world.cli("status")
        assert result.exit_code == 0, result.output
        assert "observed share unknown:" in result.stdout and "larger than the 16 MiB" in result.stdout


@pytest.mark.parametrize(("mode", "said"), [
    ("slow-drip", "no whole answer within"),  # today's main: still running after 150 s, the lock held
    ("huge", "larger than the 16 MiB"),  # today's main: 200 MB took 36 s and 1 GB; here 2 GiB are offered
])
def test_level1_finishes_in_budget_and_frees_the_lock_when_metrics_drip_or_flood(tmp_path, mode, said):
    with HostileMetrics(mode) as server:
        world = hostile_world(tmp_path, server)
        argv = [sys.executable, "-m", "rollout_cli", "-w", str(world.ws), "rollback", "--level", "1", "--yes", "--json"]
        env = {k: v for k, v in os.environ.items() if k != "ROLLOUT_WORKSPACE"}
        # the bound makes today's hang a failure, not a hung test run
        done = subprocess.run(argv, capture_output=True, text=True, timeout=75, env=env)
        data = strict_json(done.stdout)
        level = data["levels"][0]  # type: ignore[index]
        assert level["within_budget"] is True, level
        traffic = next(s for s in level["steps"] if s["type"] == "verify.traffic")
        assert said in traffic["detail"] and done.returncode == 3
        assert [r["phase"] for r in world.history()][-2:] == ["started", "finished"]
        again = subprocess.run([*argv[:-1], "--dry-run"], capture_output=True, text=True, timeout=75, env=env)
        assert again.returncode == 0, again.stderr  # the lock is free


# --- issue 19: rollout's own check requests are not app traffic ---------------------------------


def test_failing_check_requests_do_not_raise_the_error_rate(tmp_path):
    with HostileMetrics("ok") as server:
        world = hostile_world(tmp_path, server)
        assert world.cli("watch", "--count", "1").exit_code == 0
        server.requests += 200  # the app's requests in the window, none failed...
        server.check_requests = 40  # ...and a smoke run whose checks (fallbacks off) all failed
        data = strict_json(world.cli("report", "--json").stdout)
        error_rate = gate(data, "error rate")
        assert error_rate["status"] == "pass" and error_rate["value"].startswith("0.00% (0 of 200)"), error_rate
