"""Effects, not files: the sandbox's real sample app (OpenFeature + flagd file mode) in both runtimes.

One sandbox (simulator + the real LiteLLM proxy as a process) for the module; the app
runs as a process or in a container that bind-mounts `.env` and `flags.json` one by
one. Each test puts the stage where it needs it and sends load through the app.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from rollout_cli.sandbox.app import AppControl, app_container_name, load_app
from rollout_cli.simulator import GATEWAY_ALIASES
from support import at_stage, process_sandbox, rollout, wait_until

# one worker starts this module's own sandbox once (tests/conftest.py, rule 6)
pytestmark = [pytest.mark.xdist_group("test_effects_traffic"), pytest.mark.slow(140)]

RUNTIMES = [pytest.param("process", id="process"), pytest.param("docker", id="docker", marks=pytest.mark.docker)]
STOP_TIMES: dict[str, float] = {}


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory):
    with process_sandbox(tmp_path_factory.mktemp("effects") / "sb") as info:
        yield info
    if STOP_TIMES:  # the figure the closing note asks for, printed with -s
        print("\nrollback command -> last app request through the gateway:",
              ", ".join(f"{k} {v:.2f} s" for k, v in STOP_TIMES.items()))


def cli(box, *args: str):  # type: ignore[no-untyped-def]
    return rollout("-w", str(box.root), *args)


def start_app(box, runtime: str, *extra: str) -> AppControl:  # type: ignore[no-untyped-def]
    result = cli(box, "sandbox", "app", "start", "--runtime", runtime, *extra, "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["app"]["running"] is True and data["app"]["runtime"] == runtime
    record = load_app(box.root)
    assert record is not None
    return AppControl(record.url)


def through_gateway(control: AppControl) -> bool:
    return any(r["path"] == "gateway" for r in control.requests(0))


def load(control: AppControl, rps: float, seconds: float) -> None:
    control.load(rps, seconds, "glm-4.5-air", GATEWAY_ALIASES["glm-4.5-air"])


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_advance_to_10_and_the_observed_share_approaches_10(box, runtime: str) -> None:
    at_stage(box, 0)
    control = start_app(box, runtime)
    load(control, 25, 90)  # the app keeps sending while advance writes, reloads and post-checks
    try:
        result = cli(box, "advance", "--yes", "--skip-soak", "--reason", "effects test", "--json")
        assert result.exit_code == 0, result.output
        post = json.loads(result.stdout)["post_check"]
        assert post["ok"] is True and post["traffic"]["status"] == "ok", post
        assert "app requests through the gateway" in post["traffic"]["detail"]
        traffic = cli(box, "sandbox", "traffic", "--rps", "25", "--duration", "12", "--json")
        assert traffic.exit_code == 0, traffic.output
        data = json.loads(traffic.stdout)
        assert data["percentage"] == 10 and data["app_runtime"] == runtime
        assert data["requests"] >= 250
        # 10% of ~300 users: a binomial standard deviation of about 1.7 points
        assert 4.0 <= data["observed_share"] <= 16.0, data
        assert data["paths"]["gateway"]["failed"] == 0
        status = cli(box, "sandbox", "status", "--json")
        assert json.loads(status.stdout)["app"]["counts"]["gateway"] >= 1
        load(control, 25, 30)
        observed = cli(box, "status", "--json")  # first look: two readings 2 s apart
        assert observed.exit_code == 0, observed.output
        seen = json.loads(observed.stdout)["observed"]
        assert seen["requests"] >= 20 and seen["share"] is not None and 0 <= seen["share"] <= 40, seen
        assert re.fullmatch(r"observed \d+(\.\d)?% of \d+ app requests in the last \d+ s", seen["text"]), seen
        human = cli(box, "status")
        assert "traffic    configured 10%, observed " in human.output
    finally:
        load(control, 0, 0)


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_rollback_level_1_stops_the_apps_gateway_traffic_and_says_when(box, runtime: str) -> None:
    at_stage(box, 10)
    control = start_app(box, runtime)
    load(control, 25, 60)
    try:
        wait_until(lambda: through_gateway(control), 30, "the app's first request through the gateway at 10%")
        clicked = time.time()
        result = cli(box, "rollback", "--level", "1", "--yes", "--reason", "effects test", "--json")
        assert result.exit_code == 0, result.output
        steps = json.loads(result.stdout)["levels"][0]["steps"]
        by_type = {s["type"]: s for s in steps}
        traffic = by_type["verify.traffic"]
        assert traffic["status"] == "ok"
        assert traffic["detail"].startswith("files at 0% at +")
        assert "app traffic through the gateway stopped at +" in traffic["detail"] or \
            "app traffic had stopped by then" in traffic["detail"]
        if runtime == "docker":
            # the compose pattern: single-file bind mounts, so the writes went into the same inodes
            assert by_type["env.set"]["detail"].endswith(
                f"(in place, same inode, journalled (bind-mounted into container {app_container_name(box.root)}))")
            assert "bind-mounted into container" in by_type["flag.set"]["detail"]
        else:
            assert by_type["env.set"]["detail"].endswith("(temp file + rename)")
        # the app's own log: when its last request through the gateway left, counted from the command
        # (<= 0: none left after the command started; the flag reached the app before any was due)
        gateway = [r["t"] for r in control.requests(clicked - 5) if r["path"] == "gateway"]
        STOP_TIMES[runtime] = max(gateway) - clicked if gateway else float("nan")
        STOP_TIMES[runtime + " (as verify.traffic saw it)"] = float(
            re.search(r"(?:stopped at|from) \+(\d+\.\d+) s", traffic["detail"]).group(1))  # type: ignore[union-attr]
        time.sleep(1)
        later = [r for r in control.requests(time.time() - 1) if r["path"] == "gateway"]
        assert later == []
        seen = control.status()
        assert seen["env"]["LITELLM_ROLLOUT_PERCENTAGE"] == "0"  # the app read the new .env
        assert seen["counts"]["direct"] > 0
    finally:
        load(control, 0, 0)


@pytest.mark.docker
def test_a_container_bind_mounting_env_and_flags_one_by_one_sees_0_after_level_1(box, docker_engine) -> None:
    at_stage(box, 10)
    start_app(box, "docker")
    result = cli(box, "rollback", "--level", "1", "--yes", "--reason", "compose pattern")
    assert result.exit_code in (0, 3), result.output  # 3: no load was sent, so the traffic is not verifiable
    box_ = docker_engine.containers.get(app_container_name(box.root))
    mounts = {m["Destination"]: m["Source"] for m in box_.attrs["Mounts"]}
    assert mounts["/app/.env"] == str(box.root / "app" / ".env")
    assert mounts["/etc/flagd/flags.json"] == str(box.root / "app" / "flags.json")
    # the files as the container sees them, through its own root (its mount namespace): not `exec_run` of a
    # `cat`, whose output the Docker SDK now and then loses (seen once empty here; docker/docker-py#2042)
    inside = Path(f"/proc/{box_.attrs['State']['Pid']}/root")
    env = (inside / "app" / ".env").read_text()
    flags = json.loads((inside / "etc" / "flagd" / "flags.json").read_text())
    assert "LITELLM_ROLLOUT_PERCENTAGE=0  #" in env
    assert flags["flags"]["litellm-gateway"]["targeting"]["fractional"][1:] == [["on", 0], ["off", 100]]


def test_an_app_that_ignores_its_files_makes_level_1_fail_with_the_reload_hint(box) -> None:
    at_stage(box, 10)
    control = start_app(box, "process", "--reads-files-once")
    load(control, 20, 120)
    config = box.root / "rollout.yaml"
    original = config.read_text()
    try:
        wait_until(lambda: through_gateway(control), 30, "the app's first request through the gateway at 10%")
        # its private snapshot of the flags lives in the sandbox's folder (not left behind in /tmp)
        assert len(list((box.root / ".rollout").glob("sample-app-flags-*.json"))) == 1
        result = cli(box, "rollback", "--level", "1", "--yes", "--reason", "frozen app", "--json")
        assert result.exit_code == 1, result.output
        traffic = {s["type"]: s for s in json.loads(result.stdout)["levels"][0]["steps"]}["verify.traffic"]
        assert traffic["status"] == "failed"
        assert re.fullmatch(r"the app still sends \d+ req/min through the gateway 2\d s after the flag went to 0%: "
                            r"does it reload its flags\? see app\.reload in rollout\.yaml \(docs/SETUP\.md\)",
                            traffic["detail"]), traffic["detail"]
        # the fix the hint points at: app.reload sends the app SIGHUP through its pid file
        config.write_text(original.replace("  metrics_url:", "  reload: {signal: {pid_file: .rollout/app.pid, "
                                           "signal: HUP}}\n  metrics_url:"))
        at_stage(box, 10)
        again = cli(box, "rollback", "--level", "1", "--yes", "--reason", "frozen app, reloaded", "--json")
        assert again.exit_code == 0, again.output
        steps = {s["type"]: s for s in json.loads(again.stdout)["levels"][0]["steps"]}
        assert steps["app.reload"]["detail"].startswith("sent SIGHUP to pid ")
        assert steps["verify.traffic"]["status"] == "ok"
        assert control.status()["reloads"] >= 1
    finally:
        config.write_text(original)
        load(control, 0, 0)


def test_sandbox_app_stop_and_status(box) -> None:
    start_app(box, "process")
    stopped = cli(box, "sandbox", "app", "stop", "--json")
    assert stopped.exit_code == 0 and json.loads(stopped.stdout)["stopped"][0].startswith("sample app process ")
    status = cli(box, "sandbox", "app", "status", "--json")
    assert status.exit_code == 4 and json.loads(status.stdout)["app"] == {"running": False}
    traffic = cli(box, "sandbox", "traffic", "--duration", "1")
    assert traffic.exit_code == 4 and "the sample app is not running" in traffic.output
    assert not Path(box.root / ".rollout" / "app.pid").exists()


def test_level_3_stops_the_gateway_and_checks_the_apps_direct_path(box) -> None:
    """Last in this module: it stops the module's gateway."""
    at_stage(box, 0)
    start_app(box, "process")
    result = cli(box, "rollback", "--level", "3", "--yes", "--reason", "effects: level 3", "--json")
    assert result.exit_code == 0, result.output
    level3 = json.loads(result.stdout)["levels"][2]["steps"]
    assert [s["type"] for s in level3] == ["container.stop", "verify", "verify.app"]
    # no container here: level 3 stopped the sandbox's gateway process, and says so
    assert level3[0]["status"] == "ok" and level3[1]["detail"].startswith("verified: gateway litellm (process) exited")
    status = cli(box, "gateway", "status", "--json")
    assert status.exit_code == 4 and json.loads(status.stdout)["state"]["running"] is False
    probe = f"{load_app(box.root).url}/probe"  # type: ignore[union-attr]
    assert re.fullmatch(rf"the app's direct path answers: {re.escape(probe)} in \d+ ms, without the gateway",
                        level3[2]["detail"]), level3[2]
    cli(box, "sandbox", "app", "stop")
    again = cli(box, "rollback", "--level", "3", "--yes", "--json")
    assert again.exit_code == 1
    step = json.loads(again.stdout)["levels"][2]["steps"][2]
    assert step["status"] == "failed" and step["detail"] == f"the app's probe {probe} refuses connections: is the app running?"
