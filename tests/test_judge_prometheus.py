"""Prometheus as the evidence source, end to end: a real Prometheus, the real LiteLLM gateway, the `rollout` command.

The sandbox (process runtime) answers health, smoke and the catalog for real. The
soak window's counters come from a real Prometheus (Debian's) started by the test:
its history is backfilled with `promtool tsdb create-blocks-from openmetrics`, 48 h
of the gateway's LiteLLM counters and the app's per-path metrics (the contract of
docs/SETUP.md), so a two-day soak is judged from stored history with `watch` never run.
The 48 h is made old honestly, as in test_stages.py: the audit record of entering
10 % is written again through the audit trail's own writer, dated 49 h back.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from rollout_cli.core.audit import AuditLog
from rollout_cli.core.workspace import PERCENTAGE_KEY
from rollout_cli.sandbox import world as sandbox_world
from support import openmetrics, prometheus_server, rollout, use_metrics, wait_until

# one worker starts this module's own sandbox once (tests/conftest.py, rule 6): its tests share it in file order
pytestmark = [pytest.mark.xdist_group("test_judge_prometheus"), pytest.mark.slow(130)]

PLAN = """\
kind: rollout
stages: [10, 50, 100]
soak: 48h
gates:
  max_added_latency_p95_ms: 5000
  error_rate_vs_direct: {margin: 0.005}
custom_gates:
  - name: fallback share
    query: sum(increase(litellm_deployment_successful_fallbacks_total{exception_class!="InternalServerError"}[{window}])) / sum(increase(llm_requests_total{path="gateway"}[{window}]))
    pass: "< 0.05"
    fail: ">= 0.2"
  - name: gateway 5xx share
    query: sum(increase(llm_request_failures_total{path="gateway"}[{window}])) / sum(increase(llm_requests_total{path="gateway"}[{window}]))
    pass: "< 0.1"
  - name: no such metric
    query: sum(increase(this_metric_does_not_exist_total[{window}]))
    pass: "< 1"
"""
STEP = 60.0  # seconds between backfilled samples
HOURS = 48.5  # of history, ending 20 s ago


@pytest.fixture(scope="module")
def soaked(tmp_path_factory: pytest.TempPathFactory):
    """A sandbox at 10 % (a real GO from 0 %), its entry into 10 % dated 49 h back."""
    root = tmp_path_factory.mktemp("judge") / "sb"
    sandbox_world.up(root, runtime="process", gateway_port=0, simulator_port=0, timeout=90)
    (root / "playbooks" / "rollout.yaml").write_text(PLAN)  # the sandbox's own plan folder
    try:
        code, data = cli_json(root, "advance", "--yes", "--reason", "test: 0 -> 10")
        assert (code, data["verdict"], data["next"]) == (0, "GO", 10), data
        log = AuditLog(root / ".rollout")
        entered = next(r for r in reversed(log.records())
                       if any(c.get("key") == PERCENTAGE_KEY for c in r.get("changes", [])))
        then = (datetime.now(UTC) - timedelta(hours=49)).isoformat(timespec="seconds").replace("+00:00", "Z")
        log.append(entered["command"], time=then, reason="test: 10% began 49 h ago", changes=entered["changes"])
        yield root
    finally:
        sandbox_world.down(root)


def cli_json(root: Path, *args: str) -> tuple[int, dict]:
    result = rollout("-w", str(root), *args, "--json")
    return result.exit_code, json.loads(result.stdout)


def use_prometheus(root: Path, url: str) -> None:
    use_metrics(root, "prometheus", url)


def gate(data: dict, name: str) -> dict:
    return next(g for g in data["gates"] if g["name"] == name)


def history(
    *, gw_per_min: int = 20, gw_fail_every: int = 0, direct_per_min: int = 180, direct_fail_every: int = 0,
    fallbacks_per_min: int = 0, restart_after_h: float | None = None, recent_direct_down_min: int = 0,
) -> tuple[str, dict]:
    """48.5 h of the gateway's and the app's counters, one sample a minute; and the window's true totals.

    `*_fail_every`: one request in N fails (0: none). `restart_after_h`: the gateway's counters start
    again from zero that many hours into the history, as after a restart. `recent_direct_down_min`:
    every direct request of the last minutes fails (a provider outage now).
    """
    now = time.time()
    start, end = now - HOURS * 3600, now - 20
    window_start = now - 48 * 3600
    times = [start + i * STEP for i in range(int((end - start) // STEP) + 1)]
    cum = {k: 0.0 for k in ("gw", "gw_fail", "direct", "direct_fail", "lite", "lite_fail", "fb", "drill", "checks")}
    truth = {"gw": 0.0, "gw_fail": 0.0, "direct": 0.0, "direct_fail": 0.0}
    series: dict[str, list[tuple[float, float]]] = {k: [] for k in cum}
    restart_at = start + restart_after_h * 3600 if restart_after_h is not None else None
    for t in times:
        if restart_at is not None and t >= restart_at:
            cum["lite"] = cum["lite_fail"] = cum["fb"] = cum["drill"] = cum["checks"] = 0.0
            restart_at = None
        gw_fail = gw_per_min // gw_fail_every if gw_fail_every else 0
        down = recent_direct_down_min and t > end - recent_direct_down_min * 60
        direct_fail = direct_per_min if down else (direct_per_min // direct_fail_every if direct_fail_every else 0)
        step = {"gw": gw_per_min, "gw_fail": gw_fail, "direct": direct_per_min, "direct_fail": direct_fail,
                "lite": gw_per_min, "lite_fail": gw_fail, "fb": fallbacks_per_min, "drill": 2, "checks": 5}
        for key, value in step.items():
            cum[key] += value
            series[key].append((t, cum[key]))
        if t > window_start + STEP:  # whole minutes inside the window
            for key in truth:
                truth[key] += step[key]
    app_ua = "sample-app/1.0 (rollout sandbox app)"
    families = {
        "litellm_proxy_total_requests_metric": ("counter", [
            ({"requested_model": "glm-4.5-air", "user_agent": app_ua}, series["lite"]),
            # rollout's own check requests: left out of the window by their user agent
            ({"requested_model": "glm-4.5-air", "user_agent": "rollout-check/0.1.0"}, series["checks"]),
        ]),
        "litellm_proxy_failed_requests_metric": ("counter", [
            ({"requested_model": "glm-4.5-air", "user_agent": app_ua}, series["lite_fail"]),
            ({"requested_model": "glm-4.5-air", "user_agent": "rollout-check/0.1.0"}, series["checks"]),
        ]),
        "litellm_deployment_successful_fallbacks": ("counter", [
            ({"requested_model": "glm-4.5-air", "exception_class": "Openrouter.RateLimitError"}, series["fb"]),
            # rollout's own drills (LiteLLM's mock exception, no provider): 2 a minute, 10 % of the app's requests
            ({"requested_model": "glm-4.5-air", "exception_class": "InternalServerError"}, series["drill"]),
        ]),
        "litellm_overhead_latency_metric": ("histogram", [
            ({"__name__": "litellm_overhead_latency_metric_bucket", "le": "0.005"}, series["lite"]),
            ({"__name__": "litellm_overhead_latency_metric_bucket", "le": "+Inf"}, series["lite"]),
            ({"__name__": "litellm_overhead_latency_metric_count"}, series["lite"]),
            ({"__name__": "litellm_overhead_latency_metric_sum"}, [(t, v * 0.003) for t, v in series["lite"]]),
        ]),
        "llm_requests": ("counter", [({"path": "gateway"}, series["gw"]), ({"path": "direct"}, series["direct"])]),
        "llm_request_failures": ("counter", [
            ({"path": "gateway", "error_type": "500"}, series["gw_fail"]),
            ({"path": "direct", "error_type": "500"}, series["direct_fail"]),
        ]),
        "gen_ai_client_operation_duration_seconds": ("histogram", [
            ({"__name__": f"gen_ai_client_operation_duration_seconds_{part}", "path": path,
              "gen_ai_operation_name": "chat", "error_type": "", **({"le": le} if le else {})}, series[key])
            for path, key, bound in (("gateway", "gw", "0.1"), ("direct", "direct", "0.05"))
            for part, le in (("bucket", bound), ("bucket", "+Inf"), ("count", None))
        ]),
    }
    return openmetrics(families), truth


def judged(root: Path, tmp_path: Path, **scenario) -> tuple[int, dict, dict]:  # type: ignore[no-untyped-def]
    text, truth = history(**scenario)
    with prometheus_server(tmp_path / "prom", backfill=text) as url:
        use_prometheus(root, url)
        code, data = cli_json(root, "report")
    return code, data, truth


def test_a_provider_wide_failure_is_not_the_gateways_and_a_48h_window_comes_from_stored_history(soaked, tmp_path):
    # about 5 % errors on both paths, for two days: the provider's, not the gateway's
    code, data, truth = judged(soaked, tmp_path, gw_fail_every=20, direct_fail_every=20)
    window = data["snapshot"]["window"]
    assert window["source"] == "prometheus" and window["window_s"] == pytest.approx(48 * 3600, abs=5)
    # the whole 48 h, rollout's own check requests left out
    assert window["requests"] == pytest.approx(truth["gw"], rel=0.01)
    comparative = gate(data, "error rate vs direct")
    assert comparative["status"] in ("pass", "inconclusive")
    assert "gateway 5.00%" in comparative["value"] and "direct 5.00%" in comparative["value"]
    assert comparative["detail"]["method"].startswith("Newcombe")
    low, high = comparative["detail"]["ci95"]
    assert low <= 0 <= high
    # the absolute gate fails at 5 %, but the direct path fails the same: HOLD, never NO-GO
    absolute = gate(data, "error rate")
    assert absolute["status"] == "inconclusive" and "the direct path fails too" in absolute["reason"]
    assert data["verdict"] == "HOLD" and code == 3 and "error rate" in data["shared_failures"]
    assert data["error_rate_gate"] == "error rate vs direct"


def test_the_same_failure_rate_on_the_gateway_path_only_is_no_go(soaked, tmp_path):
    code, data, _ = judged(soaked, tmp_path, gw_fail_every=20)
    comparative = gate(data, "error rate vs direct")
    assert comparative["status"] == "fail", comparative
    assert "gateway 5.00%" in comparative["value"] and "direct 0.00%" in comparative["value"]
    assert data["verdict"] == "NO-GO" and code == 1
    assert any(r.startswith("error rate vs direct: gateway 5.00%") for r in data["reasons"])
    assert data["shared_failures"] == []


def test_healthy_paths_go_with_app_latency_reported_and_custom_gates(soaked, tmp_path):
    code, data, _ = judged(soaked, tmp_path)
    assert gate(data, "error rate vs direct")["status"] == "pass"
    assert gate(data, "error rate")["status"] == "skipped"  # the comparative gate decided
    assert gate(data, "fallback share")["status"] == "pass"
    # rollout's own drills (10 % of the app's requests) are told apart by their exception_class and left out
    window = data["snapshot"]["window"]
    assert window["drill_fallbacks"] == pytest.approx(2 * 48 * 60, rel=0.01)
    assert window["fallbacks"] == window["drill_fallbacks"]
    assert gate(data, "fallback rate")["status"] == "pass" and gate(data, "fallback rate")["value"].startswith("0.00% (0 of ")
    assert gate(data, "gateway 5xx share")["status"] == "pass"
    empty = gate(data, "no such metric")
    assert empty["status"] == "inconclusive" and "no series" in empty["reason"]
    assert data["verdict"] == "HOLD" and code == 3 and data["reasons"] == [empty["reason"]]
    latency = data["app_latency"]
    assert latency["added_p50_ms"] > 0  # the gateway path's bucket (100 ms) above the direct one's (50 ms)
    assert data["snapshot"]["metrics"]["queries"] >= 10
    # the same verdict replayed from the recorded snapshot, with no Prometheus left
    recorded = tmp_path / "report.json"
    recorded.write_text(json.dumps(data))
    again_code, again = cli_json(soaked, "report", "--replay", str(recorded))
    assert (again_code, again["verdict"], again["gates"]) == (code, data["verdict"], data["gates"])


def test_a_custom_gate_that_fails_is_no_go_in_report_and_json(soaked, tmp_path):
    # one fallback per app request through the gateway: the fallback-share query fails
    code, data, _ = judged(soaked, tmp_path, fallbacks_per_min=20)
    share = gate(data, "fallback share")
    assert share["status"] == "fail" and share["value"] == "1" and share["threshold"] == "pass < 0.05, fail >= 0.2"
    assert data["verdict"] == "NO-GO" and code == 1
    text, _ = history(fallbacks_per_min=20)
    with prometheus_server(tmp_path / "prom2", backfill=text) as url:
        use_prometheus(soaked, url)
        human = rollout("-w", str(soaked), "report")
    assert "fallback share: 1 >= 0.2" in human.output and human.exit_code == 1


def test_a_gateway_restart_mid_window_keeps_the_counts_before_it(soaked, tmp_path):
    _code, data, truth = judged(soaked, tmp_path, gw_fail_every=50, restart_after_h=24)
    window = data["snapshot"]["window"]
    app = data["snapshot"]["app"]["gateway"]
    # the gateway's counters started again from zero after 24 h; the window still holds both halves,
    # as the app itself counted them
    assert window["requests"] == pytest.approx(app["requests"], rel=0.01)
    assert window["requests"] == pytest.approx(truth["gw"], rel=0.01)
    assert window["failed"] == pytest.approx(truth["gw_fail"], rel=0.02)


def test_prometheus_stopped_is_hold_naming_it(soaked, tmp_path):
    text, _ = history()
    with prometheus_server(tmp_path / "prom", backfill=text) as url:
        use_prometheus(soaked, url)
    code, data = cli_json(soaked, "report")  # Prometheus is gone now
    assert code == 3 and data["verdict"] == "HOLD"
    for name in ("error rate", "added latency", "fallback rate", "fallback share"):
        g = gate(data, name)
        assert g["status"] == "inconclusive" and "Prometheus" in g["reason"] and url in g["reason"], g
    human = rollout("-w", str(soaked), "report")
    assert human.exit_code == 3 and "Prometheus" in human.output


def test_primary_down_for_everyone_holds_and_down_on_the_gateway_only_is_no_go(soaked, tmp_path):
    assert rollout("-w", str(soaked), "sandbox", "fault", "glm-4.5-air", "--status", "500").exit_code == 0
    try:
        # the direct path fails too, over the last minutes: the gateway's fallbacks are serving
        code, data, _ = judged(soaked, tmp_path, recent_direct_down_min=5, fallbacks_per_min=1)
        primary = gate(data, "primary model")
        assert primary["status"] == "inconclusive", primary
        assert "the direct path fails too" in primary["reason"] and "fallbacks serving" in primary["reason"]
        assert data["verdict"] == "HOLD" and code == 3 and "primary model" in data["shared_failures"]
        # the same primary failure while the direct path is fine: the gateway's own
        code, data, _ = judged(soaked, tmp_path / "second")
        assert gate(data, "primary model")["status"] == "fail"
        assert data["verdict"] == "NO-GO" and code == 1
    finally:
        rollout("-w", str(soaked), "sandbox", "fault", "--clear")


def test_a_live_gateway_restart_mid_window_keeps_the_requests_before_it(soaked, tmp_path):
    """A real Prometheus scraping the real gateway every second, the real app sending, the gateway restarted between."""
    from rollout_cli.sandbox.state import load_state

    gateway_url = load_state(soaked).gateway_url
    key = (soaked / ".rollout" / "master.key").read_text().strip()
    target = {"job": "litellm", "url": f"{gateway_url}/metrics/", "token": key}
    with prometheus_server(tmp_path / "prom", targets=[target]) as url:
        use_prometheus(soaked, url)
        # the app's series through the gateway exist before the counted batches: Prometheus counts a
        # counter's increase from its first scrape, so requests before that would be missed by any window
        base = gateway_requests(gateway_url, key)
        warm = traffic(soaked, 2)
        counted_then_scraped(gateway_url, key, url, base + warm)
        before = traffic(soaked, 5)
        # what the gateway counted before its restart is in Prometheus before it restarts (or no window has it)
        counted_then_scraped(gateway_url, key, url, base + warm + before)
        restarted = rollout("-w", str(soaked), "gateway", "restart")
        assert restarted.exit_code == 0, restarted.output
        after = traffic(soaked, 5)
        counted_then_scraped(gateway_url, key, url, after)  # its counters began again at 0
        _code, data = cli_json(soaked, "report")
    window = data["snapshot"]["window"]
    assert window["source"] == "prometheus" and window["problem"] is None, window
    counted = before + after
    # Prometheus extrapolates a little at the edges of the data it holds (about half a scrape interval)
    assert counted - 2 <= window["requests"] <= counted + warm + 2, (window["requests"], before, after, warm)
    assert window["requests"] > after + 2  # the requests before the restart are in the window
    assert window["failed"] == 0


def gateway_requests(gateway_url: str, key: str) -> float:
    """The app requests the gateway has counted since it started, from its own /metrics/."""
    import httpx

    from rollout_cli.rollout.metrics import summarize

    answer = httpx.get(f"{gateway_url}/metrics/", headers={"Authorization": f"Bearer {key}"}, timeout=10,
                       follow_redirects=True)
    return float(summarize(answer.text).get("requests", 0.0))


def counted_then_scraped(gateway_url: str, key: str, prometheus_url: str, requests: float) -> None:
    """Wait (bounded) until the gateway counts `requests` (LiteLLM counts a request just after answering it, seconds
    later on a busy machine), then until Prometheus has scraped it: a window ends at the last scrape before it."""
    from rollout_cli.rollout.promql import Prometheus

    wait_until(lambda: gateway_requests(gateway_url, key) >= requests, 60, f"the gateway to count {requests:g} requests")
    now = time.time()

    def scraped() -> bool:
        last = Prometheus(prometheus_url).query("timestamp(up) * up", time.time())
        return bool(last) and all(s.value > now for s in last)  # none yet: Prometheus has not scraped at all

    wait_until(scraped, 30, "Prometheus's scrape of the gateway", poll=0.2)


def traffic(root: Path, seconds: int) -> int:
    """App requests through the gateway, as the app counted them."""
    code, data = cli_json(root, "sandbox", "traffic", "--rps", "40", "--duration", str(seconds))
    assert code == 0, data
    return int(data["paths"]["gateway"]["requests"])


def test_a_post_check_failure_the_direct_path_shares_rolls_nothing_back(soaked, tmp_path):
    """Last in this module: it moves the sandbox back to 0 % and into an outage at 10 %."""
    books = soaked / "playbooks" / "rollout.yaml"
    back = rollout("-w", str(soaked), "rollback", "--level", "1", "--yes", "--reason", "test: back to 0")
    # 3: the flag is at 0 %, but with no app traffic running its stop cannot be observed
    assert back.exit_code in (0, 3) and cli_json(soaked, "status")[1]["stage"]["percentage"] == 0, back.output
    # gates that let the advance write while the primary is down, so the post-check meets the outage
    books.write_text(PLAN.replace("\ngates:\n", "\ngates:\n  primary_healthy: false\n  smoke: false\n", 1))
    assert rollout("-w", str(soaked), "sandbox", "fault", "glm-4.5-air", "--status", "500").exit_code == 0
    try:
        text, _ = history(recent_direct_down_min=5)
        with prometheus_server(tmp_path / "prom", backfill=text) as url:
            use_prometheus(soaked, url)
            code, data = cli_json(soaked, "advance", "--yes", "--reason", "test: into a provider outage")
        assert code == 3, data
        assert data["post_check"]["ok"] is False and data["post_check"]["primary"] == "glm-4.5-air"
        assert "the direct path fails too" in data["post_check"]["shared_with_direct"]
        assert "rollback" not in data  # users stay on the gateway, whose fallbacks serve them
        assert cli_json(soaked, "status")[1]["stage"]["percentage"] == 10
    finally:
        rollout("-w", str(soaked), "sandbox", "fault", "--clear")
        books.write_text(PLAN)
