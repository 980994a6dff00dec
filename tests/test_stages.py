"""The stage plan driven end to end on a sandbox of its own: 0 -> 10 -> 50 -> 100 % on evidence.

Everything goes through the `rollout` command: `advance`, `sandbox traffic` (real app
traffic through the real LiteLLM proxy, split by the app's own bucketing), `watch`
(the samples that open the soak window) and `sandbox fault`.

A 48 h soak is made "old" honestly: the audit record of entering the stage is
written again through the project's own audit code (`AuditLog.append`) with a
timestamp 49 h back. The clock is never faked; the soak gate reads that record
exactly as it reads one written two days ago.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rollout_cli.core.audit import AuditLog
from rollout_cli.core.workspace import PERCENTAGE_KEY
from rollout_cli.sandbox import world as sandbox_world
from rollout_cli.sandbox.state import load_state
from support import plausible_share, rollout, use_metrics

# one worker starts this module's own sandbox once (tests/conftest.py, rule 6)
pytestmark = [pytest.mark.xdist_group("test_stages"), pytest.mark.slow(140)]

# Generous enough for this shared 2-core machine (the real proxy adds tens of ms). Everything else is the shipped plan.
# One end-to-end test per verdict of `advance` on real traffic (GO, NO-GO, HOLD); each gate's rule (too few requests,
# no samples, the added-latency limit...) is judged on recorded snapshots in test_rules_gates.py.
PLAN = "kind: rollout\nstages: [10, 50, 100]\nsoak: 48h\ngates: {{max_added_latency_p95_ms: {latency}}}\n"
RELAXED_MS = 5000
SOAKED = timedelta(hours=49)


@pytest.fixture(scope="module")
def stage_sandbox(tmp_path_factory: pytest.TempPathFactory):
    """A sandbox of this module's own: the stage tests move its app between 0 and 100 %."""
    root = tmp_path_factory.mktemp("stages") / "sb"
    sandbox_world.up(root, runtime="process", gateway_port=0, simulator_port=0, timeout=90)
    # The gateway's own counters and `watch`'s samples (the sandbox's default is its Prometheus): each test
    # starts a fresh sample file, so its window holds its own traffic, never an earlier test's at 10 %.
    use_metrics(root, "gateway")
    try:
        yield root
    finally:
        sandbox_world.down(root)


def cli(root: Path, *args: str):  # type: ignore[no-untyped-def]
    return rollout("-w", str(root), *args)


def cli_json(root: Path, *args: str) -> tuple[int, dict]:
    result = cli(root, *args, "--json")
    return result.exit_code, json.loads(result.stdout)


def set_plan(root: Path) -> None:
    (root / "playbooks" / "rollout.yaml").write_text(PLAN.format(latency=RELAXED_MS))


def stage_of(root: Path) -> int:
    return cli_json(root, "status")[1]["stage"]["percentage"]


def age_soak(root: Path, percentage: int) -> None:
    """Re-record the move into `percentage`, dated 49 h ago, through the audit trail's own writer."""
    log = AuditLog(root / ".rollout")
    entered = next(r for r in reversed(log.records())
                   if any(c.get("key") == PERCENTAGE_KEY and str(c.get("after")) == str(percentage)
                          for c in r.get("changes", [])))
    then = (datetime.now(UTC) - SOAKED).isoformat(timespec="seconds").replace("+00:00", "Z")
    log.append(entered["command"], time=then, reason=f"test: {percentage}% began 49 h ago",
               changes=entered["changes"])


def fresh_at_10(root: Path) -> None:
    """Back to 0 % (level-1 rollback), then a real GO to 10 %, its soak aged, faults cleared."""
    set_plan(root)
    assert cli(root, "sandbox", "fault", "--clear").exit_code == 0
    if stage_of(root) != 0:
        back = cli(root, "rollback", "--level", "1", "--yes", "--reason", "test: start again at 0%")
        assert back.exit_code == 0, back.output
    # A clean sample file, as on a fresh workspace: the re-dated entry puts the window 48 h back,
    # which would otherwise take in the samples (and traffic) of the tests before this one.
    (root / ".rollout" / "samples.jsonl").unlink(missing_ok=True)
    code, data = cli_json(root, "advance", "--yes", "--reason", "test: 0 -> 10")
    assert (code, data["verdict"], data["next"]) == (0, "GO", 10), data
    age_soak(root, 10)


def send_traffic(root: Path, rps: int, duration: int, *extra: str) -> dict:
    code, data = cli_json(root, "sandbox", "traffic", "--rps", str(rps), "--duration", str(duration), *extra)
    assert code == 0, data
    gateway, direct = data["paths"]["gateway"], data["paths"]["direct"]
    assert data["requests"] == gateway["requests"] + direct["requests"] > 0
    return data


def watch_once(root: Path) -> None:
    result = cli(root, "watch", "--count", "1", "--json")
    assert result.exit_code == 0, result.output


def gate(data: dict, name: str) -> dict:
    return next(g for g in data["gates"] if g["name"] == name)


def test_go_at_10_then_50_then_100_on_soak_traffic_and_samples(stage_sandbox):
    root = stage_sandbox
    fresh_at_10(root)

    # 10 %: about 400 app requests; the app's flagd bucketing sends about 10 % through the gateway
    # (40 expected: fewer than the gate's 20 is 3.4 standard deviations away)
    watch_once(root)
    sent = send_traffic(root, 50, 8)
    through = sent["paths"]["gateway"]["requests"]
    assert plausible_share(through, sent["requests"], 10) and through >= 20
    assert sent["paths"]["gateway"]["failed"] == 0 and sent["paths"]["direct"]["failed"] == 0
    watch_once(root)
    code, data = cli_json(root, "advance", "--yes", "--reason", "test: 10 -> 50")
    assert code == 0, data
    assert (data["verdict"], data["current"], data["next"]) == ("GO", 10, 50)
    assert gate(data, "soak")["reason"] == "soak 49h00m of 48h00m: elapsed"
    assert gate(data, "error rate")["reason"] == f"error rate 0.00% (0 of {through}) <= 1%"
    assert gate(data, "added latency")["status"] == "pass"
    assert all(g["status"] == "pass" for g in data["gates"]), data["gates"]
    assert data["post_check"]["ok"] is True
    assert stage_of(root) == 50

    # 50 %: about half of 80 requests through the gateway, as the app's flagd provider buckets them
    age_soak(root, 50)
    watch_once(root)
    sent = send_traffic(root, 20, 4)
    through = sent["paths"]["gateway"]["requests"]
    assert sent["percentage"] == 50 and plausible_share(through, sent["requests"], 50) and through >= 20
    watch_once(root)
    result = cli(root, "advance", "--yes", "--reason", "test: 50 -> 100")
    assert result.exit_code == 0, result.output
    assert "advanced 50% -> 100%" in result.stdout
    assert "the rollout is complete: 100% of traffic goes through the gateway" in result.stdout
    assert stage_of(root) == 100
    moves = [(h["from"], h["to"]) for h in cli_json(root, "report")[1]["history"]]
    # each real move, and after it its re-dated copy (the aged soak): nothing else moved the stage
    assert moves[-5:] == [("0", "10"), ("0", "10"), ("10", "50"), ("10", "50"), ("50", "100")], moves


def test_error_rate_over_the_limit_is_no_go_and_nothing_written(stage_sandbox):
    root = stage_sandbox
    fresh_at_10(root)
    watch_once(root)
    # qwen3-coder is the end of the fallback chain: through the gateway its 500s reach the app
    assert cli(root, "sandbox", "fault", "qwen3-coder", "--status", "500").exit_code == 0
    traffic = cli(root, "sandbox", "traffic", "--rps", "50", "--duration", "6", "--model", "qwen3-coder", "--json")
    sent = json.loads(traffic.stdout)
    # the added-latency pairs after the traffic fail too: three in a row, and the rest are not sent
    assert ("the gateway's added latency was not measured: 3 paired requests in a row failed "
            "(a fault on qwen3-coder?), so the other pairs were not sent") in sent.get("messages", []) or \
        "3 paired requests in a row failed" in traffic.output, traffic.output
    assert cli(root, "sandbox", "fault", "--clear").exit_code == 0
    through = sent["paths"]["gateway"]["requests"]
    assert through > 0 and sent["paths"]["gateway"]["failed"] == through
    watch_once(root)
    env_before = (root / "app" / ".env").read_text()
    code, data = cli_json(root, "advance", "--yes")
    assert code == 1, data
    assert data["verdict"] == "NO-GO"
    error_rate = gate(data, "error rate")
    assert error_rate["status"] == "fail"
    assert error_rate["reason"] == f"error rate 100.00% ({through} of {through}) > 1%"
    assert error_rate["reason"] in data["reasons"]
    assert (root / "app" / ".env").read_text() == env_before and stage_of(root) == 10


def test_live_scrape_failing_falls_back_to_the_latest_sample(stage_sandbox):
    root = stage_sandbox
    fresh_at_10(root)
    watch_once(root)
    # about 500 app requests, 50 expected through the gateway: fewer than the gate's 20 is 4.5 standard
    # deviations away (300 left it 2 away: 19 came through once, and the gate rightly said "too few")
    sent = send_traffic(root, 50, 10)
    watch_once(root)
    through = sent["paths"]["gateway"]["requests"]
    config = (root / "rollout.yaml").read_text()
    url = next(line.split("url: ")[1] for line in config.splitlines() if line.startswith("  url: "))
    (root / "rollout.yaml").write_text(config.replace(f"url: {url}", "url: http://127.0.0.1:9"))
    try:
        code, data = cli_json(root, "advance", "--dry-run")
    finally:
        (root / "rollout.yaml").write_text(config)
    assert code == 1 and data["verdict"] == "NO-GO"  # the gateway gate fails: nothing answers on port 9
    error_rate = gate(data, "error rate")
    assert error_rate["source"] == "/metrics/ + watch samples (latest sample: live scrape failed)"
    assert error_rate["reason"] == f"error rate 0.00% (0 of {through}) <= 1%"


def test_a_gateway_without_litellm_metrics_holds(tmp_path):
    """The prometheus callback switched off: the window cannot be judged, never passed."""
    import yaml

    from rollout_cli.gateway.config import packaged_config

    config = yaml.safe_load(packaged_config().read_text())
    config.get("litellm_settings", {}).pop("callbacks", None)
    bare = tmp_path / "no-metrics.yaml"
    bare.write_text(yaml.safe_dump(config))
    root = tmp_path / "sb"
    up = rollout("sandbox", "up", str(root), "--runtime", "process", "--gateway-config", str(bare),
                 "--gateway-port", "0", "--simulator-port", "0", "--timeout", "90")
    try:
        assert up.exit_code == 0, up.output
        url = load_state(root).gateway_url
        code, data = cli_json(root, "advance", "--yes")
        assert code == 0, data
        age_soak(root, 10)
        send_traffic(root, 50, 2)
        watch_once(root)
        # the sandbox's default source, its Prometheus, finds none of the gateway's series to count
        code, data = cli_json(root, "advance", "--yes")
        assert (code, data["verdict"]) == (3, "HOLD"), data
        for name in ("error rate", "added latency"):
            assert gate(data, name)["status"] == "inconclusive"
            assert "has no series of litellm_proxy_total_requests_metric_total in the window" in gate(data, name)["reason"]
        use_metrics(root, "gateway")
        code, data = cli_json(root, "advance", "--yes")
        assert code == 3, data
        assert data["verdict"] == "HOLD"
        for name in ("error rate", "added latency"):
            assert gate(data, name)["status"] == "inconclusive"
            # LiteLLM without the callback serves no /metrics/ at all: the gate says so and how to fix it
            assert gate(data, name)["reason"] == (
                f"metrics cannot be read: gateway {url} /metrics/ answered HTTP 404; "
                "enable the prometheus callback and check the master key")
        assert stage_of(root) == 10
    finally:
        rollout("sandbox", "down", str(root))

