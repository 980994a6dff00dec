"""The judge's rules on recorded evidence snapshots: fast, no I/O, one case per rule.

tests/snapshots/ holds snapshots `rollout report --json` recorded on a real sandbox
(the real gateway's health, smoke and catalog; a real Prometheus holding 48 h of
backfilled counters, as in test_judge_prometheus.py). A file with `overlay_of`
holds only what differs from the snapshot it names (the window, the app's paths,
the health of a faulted primary), so each reads as its scenario.
"""

from __future__ import annotations

import copy
import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from rollout_cli.core.workspace import load_workspace
from rollout_cli.errors import InputError, PlaybookError
from rollout_cli.rollout.intervals import newcombe_difference, wilson
from rollout_cli.rollout.judge import direct_failure, judge
from rollout_cli.rollout.plan import parse_plan
from rollout_cli.rollout.promql import Prometheus, PrometheusUnavailable
from rollout_cli.rollout.snapshot import Snapshot, prometheus_window
from support import QuietServer, make_world

SNAPSHOTS = Path(__file__).parent / "snapshots"
PLAN = {
    "kind": "rollout", "stages": [10, 50, 100], "soak": "48h",
    "gates": {"max_added_latency_p95_ms": 5000, "error_rate_vs_direct": {"margin": 0.005}},
    "custom_gates": [
        {"name": "fallback share", "pass": "< 0.05", "fail": ">= 0.2",
         "query": 'sum(increase(litellm_deployment_successful_fallbacks_total[{window}])) '
                  '/ sum(increase(llm_requests_total{path="gateway"}[{window}]))'},
        {"name": "gateway 5xx share", "pass": "< 0.1",
         "query": 'sum(increase(llm_request_failures_total{path="gateway"}[{window}])) '
                  '/ sum(increase(llm_requests_total{path="gateway"}[{window}]))'},
    ],
}


def recorded(name: str) -> dict:
    raw = json.loads((SNAPSHOTS / f"{name}.json").read_text())
    base = raw.pop("overlay_of", None)
    return {**recorded(base.removesuffix(".json")), **raw} if base else raw


def plan(**changes):  # type: ignore[no-untyped-def]
    raw = copy.deepcopy(PLAN)
    raw.update(changes)
    return parse_plan(raw, Path("rollout.yaml"))


def decide(raw: dict, the_plan=None):  # type: ignore[no-untyped-def]
    return judge(Snapshot.from_json(raw), the_plan or plan())


def gate(decision, name: str):  # type: ignore[no-untyped-def]
    return next(g for g in decision.gates if g.name == name)


# --- Newcombe's interval against the published values ---------------------------


@pytest.mark.parametrize(("x", "n", "low", "high"), [
    # Newcombe (1998), "Two-sided confidence intervals for the single proportion", Table I, method 3 (Wilson)
    (81, 263, 0.2553, 0.3662), (15, 148, 0.0624, 0.1605), (0, 20, 0.0, 0.1611), (1, 29, 0.0061, 0.1718),
])
def test_wilson_interval_matches_newcombe_table_1(x, n, low, high):
    assert [round(v, 4) for v in wilson(x, n)] == [low, high]


def test_a_proportion_of_nothing_has_no_interval_and_one_request_has_one():
    with pytest.raises(ValueError, match=r"^a proportion needs n > 0$"):
        wilson(0, 0)
    assert [round(v, 4) for v in wilson(1, 1)] == [0.2065, 1.0]


@pytest.mark.parametrize(("x1", "n1", "x2", "n2"), [(0, 1, 25, 25), (0, 1, 38, 38), (10, 10, 0, 3), (7, 7, 0, 6)])
def test_a_difference_of_proportions_stays_within_minus_one_and_one(x1, n1, x2, n2):
    # the hybrid's arithmetic can land a hair beyond the bound (-1.0000000000000002 for 0/1 - 25/25)
    low, high = newcombe_difference(x1, n1, x2, n2)
    assert low >= -1.0 and high <= 1.0


def test_the_confidence_level_reaches_both_wilson_intervals():
    z90 = 1.6448536269514722  # a two-sided 90 % interval
    (l1, u1), (l2, u2) = wilson(9, 10, z90), wilson(3, 10, z90)
    low, high = newcombe_difference(9, 10, 3, 10, z90)
    assert (low, high) == pytest.approx((0.6 - math.hypot(0.9 - l1, u2 - 0.3), 0.6 + math.hypot(u1 - 0.9, 0.3 - l2)))
    assert tuple(round(v, 4) for v in newcombe_difference(9, 10, 3, 10)) == (0.1705, 0.8090)  # 95 %: wider
    assert low > 0.1705 and high < 0.8090


@pytest.mark.parametrize(("x1", "n1", "x2", "n2", "low", "high"), [
    # Newcombe (1998), "Interval estimation for the difference between independent proportions:
    # comparison of eleven methods", Stat Med 17:873-890, Table II, method 10, examples (a)-(h)
    (56, 70, 48, 80, 0.0524, 0.3339), (9, 10, 3, 10, 0.1705, 0.8090), (6, 7, 2, 7, 0.0582, 0.8062),
    (5, 56, 0, 29, -0.0381, 0.1926), (0, 10, 0, 20, -0.1611, 0.2775), (0, 10, 0, 10, -0.2775, 0.2775),
    (10, 10, 0, 20, 0.6791, 1.0), (10, 10, 0, 10, 0.6075, 1.0),
])
def test_newcombe_hybrid_score_matches_the_published_examples(x1, n1, x2, n2, low, high):
    assert [round(v, 4) for v in newcombe_difference(x1, n1, x2, n2)] == [low, high]


# --- the comparative error-rate gate ---------------------------------------------


def test_healthy_paths_go_on_the_comparative_gate_which_decides():
    decision = decide(recorded("prometheus-healthy"))
    assert decision.verdict.value == "GO", decision.reasons
    comparative = gate(decision, "error rate vs direct")
    assert comparative.status == "pass"
    assert comparative.value == "gateway 0.00% (0 of 57600), direct 0.00% (0 of 518400)"
    assert gate(decision, "error rate").status == "skipped" and decision.error_rate_gate == "error rate vs direct"


def test_gateway_only_failure_is_no_go_with_both_rates_and_the_interval():
    decision = decide(recorded("gateway-only"))
    comparative = gate(decision, "error rate vs direct")
    assert comparative.status == "fail" and decision.verdict.value == "NO-GO"
    assert "gateway 5.00% (2880 of 57600), direct 0.00% (0 of 518400)" in comparative.reason
    assert "95% CI [+4.82, +5.18]" in comparative.reason
    assert decision.shared_failures == []


def test_provider_wide_failure_holds_and_is_never_no_go():
    decision = decide(recorded("provider-wide"))
    comparative = gate(decision, "error rate vs direct")
    assert comparative.status == "pass"  # the same 5 % on both paths: the gateway adds no errors
    absolute = gate(decision, "error rate")
    assert absolute.status == "inconclusive" and "the direct path fails too: 5.00%" in absolute.reason
    assert decision.verdict.value == "HOLD" and decision.shared_failures == ["error rate"]


def test_few_requests_leave_the_comparative_gate_inconclusive():
    raw = recorded("prometheus-healthy")
    raw["app"]["gateway"].update(requests=40, failed=1)
    raw["app"]["direct"].update(requests=400, failed=2)
    comparative = gate(decide(raw), "error rate vs direct")
    assert comparative.status == "inconclusive" and "too few requests to tell" in comparative.reason
    low, high = comparative.detail["ci95"]
    assert low <= 0.005 < high


def test_without_the_apps_metrics_the_absolute_gate_decides():
    raw = recorded("prometheus-healthy")
    raw["app"] = {"problem": "Prometheus has no series of the app's llm_requests_total in the window"}
    decision = decide(raw)
    assert gate(decision, "error rate vs direct").status == "skipped"
    assert gate(decision, "error rate").status == "pass" and decision.error_rate_gate == "error rate"


# --- shared failures --------------------------------------------------------------


def test_primary_down_for_everyone_holds_with_the_gateways_fallbacks_serving():
    decision = decide(recorded("primary-down-everywhere"))
    primary = gate(decision, "primary model")
    assert primary.status == "inconclusive"
    assert "the direct path fails too: 100.00% (900 of 900) in the last 300 s" in primary.reason
    assert "fallbacks serving" in primary.reason
    assert decision.verdict.value == "HOLD" and set(decision.shared_failures) == {"primary model", "smoke"}


def test_primary_down_on_the_gateway_path_only_is_no_go():
    decision = decide(recorded("primary-down-gateway-only"))
    assert gate(decision, "primary model").status == "fail" and decision.verdict.value == "NO-GO"


def test_a_fallback_rate_the_direct_path_explains_holds():
    raw = recorded("prometheus-healthy")
    raw["window"].update(fallbacks=5760 + raw["window"]["drills"])  # 10 % of the gateway's requests
    assert gate(decide(raw), "fallback rate").status == "fail"
    raw["app"]["direct"].update(failed=51840)  # the direct path fails 10 % in the same window
    fallback = gate(decide(raw), "fallback rate")
    assert fallback.status == "inconclusive" and "the direct path fails too" in fallback.reason


def test_added_latency_from_retries_against_a_provider_the_direct_path_sees_failing_holds():
    """LiteLLM's overhead counts the back-off between retries of a failing provider: seconds, not the gateway's."""
    raw = recorded("prometheus-healthy")
    raw["window"]["overhead_buckets"] = {"5": 0.0, "10": 57600.0, "+Inf": 57600.0}  # p95 9.75 s: past 5000 ms
    assert gate(decide(raw), "added latency").status == "fail"
    raw["app"]["direct"].update(failed=51840)  # the direct path fails 10 % in the same window
    latency = gate(decide(raw), "added latency")
    assert latency.status == "inconclusive" and "the direct path fails too" in latency.reason


# --- the window's evidence ----------------------------------------------------------


def test_a_restart_mid_window_keeps_the_counts_before_it():
    raw = recorded("restart")
    assert raw["window"]["requests"] == pytest.approx(raw["app"]["gateway"]["requests"], rel=0.01)
    assert gate(decide(raw), "error rate vs direct").status == "pass"


def test_prometheus_unreachable_holds_every_window_gate_and_never_goes():
    raw = recorded("prometheus-healthy")
    why = "Prometheus cannot be queried: Prometheus http://127.0.0.1:9 does not answer: [Errno 111] Connection refused"
    raw["window"] = {**raw["window"], "problem": why}
    raw["app"] = {"problem": why}
    raw["custom"] = [{**c, "value": None, "error": why} for c in raw["custom"]]
    decision = decide(raw)
    for name in ("error rate", "added latency", "fallback rate", "fallback share", "gateway 5xx share"):
        assert gate(decision, name).status == "inconclusive" and "Prometheus" in gate(decision, name).reason
    assert decision.verdict.value == "HOLD"


def test_the_gateway_source_judges_its_recorded_samples():
    decision = decide(recorded("gateway-source"))
    assert decision.error_rate_gate == "error rate"
    assert gate(decision, "error rate").value == "0.00% (0 of 21)"
    custom = gate(decision, "fallback share")
    assert custom.status == "inconclusive" and "a custom gate needs metrics.source: prometheus" in custom.reason
    assert "the absolute error-rate gate decides" in gate(decision, "error rate vs direct").reason


def test_the_soak_is_judged_at_the_snapshots_own_time():
    raw = recorded("prometheus-healthy")
    assert gate(decide(raw), "soak").status == "pass"
    raw["now"] = Snapshot.from_json(raw).entered.timestamp + 3600  # type: ignore[union-attr]
    soak = gate(decide(raw), "soak")
    assert soak.status == "inconclusive" and soak.value == "1h00m of 48h00m"


# --- custom gates -------------------------------------------------------------------


@pytest.mark.parametrize(("value", "status"), [(0.01, "pass"), (0.1, "inconclusive"), (0.5, "fail"),
                                               (None, "inconclusive"), (math.nan, "inconclusive")])
def test_custom_gate_conditions(value, status):
    raw = recorded("prometheus-healthy")
    raw["custom"][0].update(value=value, error=None if value is not None else "the query returned no series")
    assert gate(decide(raw), "fallback share").status == status


def test_a_custom_gate_with_only_a_pass_condition_fails_outside_it():
    raw = recorded("prometheus-healthy")
    raw["custom"][1]["value"] = 0.2
    g = gate(decide(raw), "gateway 5xx share")
    assert (g.status, g.reason) == ("fail", "gateway 5xx share: 0.2, not < 0.1")


# --- purity and replay ---------------------------------------------------------------


def test_judging_is_pure_and_a_snapshot_survives_its_json():
    snap = Snapshot.from_json(recorded("primary-down-everywhere"))
    first, second = judge(snap, plan()), judge(snap, plan())
    assert first.to_json() == second.to_json()
    again = Snapshot.from_json(json.loads(json.dumps(snap.to_json())))
    assert judge(again, plan()).to_json() == first.to_json()


def test_a_malformed_snapshot_is_named():
    with pytest.raises(InputError, match="not an evidence snapshot"):
        Snapshot.from_json({"verdict": "GO"})
    raw = recorded("prometheus-healthy")
    del raw["stage"]["env_enabled"]
    with pytest.raises(InputError, match="incomplete or malformed"):
        Snapshot.from_json(raw)


@pytest.mark.parametrize(("changes", "message"), [
    ({"gates": {"error_rate_vs_direct": {"margin": 2}}}, "'gates.error_rate_vs_direct.margin' is a fraction"),
    ({"gates": {"error_rate_vs_direct": 0.005}}, "must be a mapping like {margin: 0.005}"),
    ({"custom_gates": [{"name": "x", "query": "up", "pass": "about 3"}]}, "write an operator and a number"),
    ({"custom_gates": [{"name": "x", "query": "up"}]}, "needs a pass or a fail condition"),
    ({"custom_gates": [{"name": "x", "query": "up", "pass": "< 1"}, {"name": "x", "query": "up", "fail": "> 1"}]},
     "is used twice"),
    ({"custom_gates": [{"name": "x", "query": "up", "pass": "< 1", "when": 1}]}, "unknown key 'custom_gates[0].when'"),
    ({"custom_gates": {"name": "x"}}, "must be a list"),
])
def test_bad_comparative_and_custom_gates_are_named(changes, message):
    raw = {**copy.deepcopy(PLAN), "custom_gates": [], **changes}
    with pytest.raises(PlaybookError, match=message.replace("[", r"\[").replace("{", r"\{")):
        parse_plan(raw, Path("rollout.yaml"))


@pytest.mark.parametrize(("metrics", "message"), [
    ("metrics: {source: graphite, url: http://127.0.0.1:9090}", "'metrics.source' is 'graphite'; use one of gateway, prometheus"),
    ("metrics: {source: prometheus}", "'metrics.source' is prometheus but 'metrics.url' is missing"),
    ("metrics: {url: 127.0.0.1:9090}", "'metrics.url' must be an http:// or https:// URL"),
    ("metrics: {source: gateway, tokens: X}", "unknown key 'metrics.tokens' (known: source, url, token_env)"),
    ("metrics: prometheus", "'metrics' must be a mapping"),
    ("metrics: {url: http://127.0.0.1:9090, token_env: eyJhbGciOi.J9-secret}", "not a token (value not shown)"),
])
def test_a_bad_metrics_key_is_named_and_exits_2(tmp_path, metrics, message):
    world = make_world(tmp_path)
    config = world.ws / "rollout.yaml"
    config.write_text(config.read_text() + metrics + "\n")
    result = world.cli("status")
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert "secret" not in result.output


def test_the_metrics_key_loads_with_its_token_from_the_environment(tmp_path, monkeypatch):
    world = make_world(tmp_path)
    config = world.ws / "rollout.yaml"
    config.write_text(config.read_text() + "metrics: {url: http://127.0.0.1:9090/, token_env: PROM_TOKEN}\n")
    monkeypatch.setenv("PROM_TOKEN", "s3cret")
    settings = load_workspace(world.ws).metrics
    assert (settings.source, settings.url, settings.token()) == ("prometheus", "http://127.0.0.1:9090", "s3cret")
    assert world.cli("status").exit_code == 0


@contextmanager
def answering(reply: Callable[[str], bytes], delay_s: float = 0.0) -> Iterator[str]:
    """A real loopback HTTP server answering Prometheus's query API with `reply(query)`; yields its URL."""

    class Answer(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            time.sleep(delay_s)
            body = reply(parse_qs(urlsplit(self.path).query)["query"][0])
            self.send_response(200)
            self.end_headers()
            try:
                self.wfile.write(body)
            except OSError:
                pass  # the client gave up: what the test wants

        def log_message(self, *args: object) -> None:
            pass

    server = QuietServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


def vector(value: str) -> bytes:
    return json.dumps({"status": "success", "data": {"resultType": "vector",
                                                     "result": [{"metric": {}, "value": [0, value]}]}}).encode()


def test_a_prometheus_answering_nonsense_holds_naming_it(tmp_path):
    """A NaN counter increase and a custom gate's Inf: the window and the gate inconclusive, never judged."""
    the_plan = plan(custom_gates=[{"name": "odd", "query": "custom_total", "pass": "< 1"}])
    def reply(q: str) -> bytes:
        if q.startswith("timestamp(up)"):  # no scrape targets known: nothing to wait for
            return json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}}).encode()
        return vector("NaN" if "failed_requests" in q else "+Inf" if "custom" in q else "5")

    with answering(reply) as url:
        prom = Prometheus(url)
        window, app, custom = prometheus_window(prom, 1000.0, 4600.0, the_plan)
    assert "negative, NaN or infinite increase for failed" in window["problem"] and app["problem"] == window["problem"]
    assert custom[0]["value"] is None and custom[0]["error"] == "the query returned inf"
    assert prom.queries == 12  # the freshness query, the window's ten, the custom gate


def test_every_query_has_a_byte_cap_and_a_deadline():
    with answering(lambda q: b"x" * (2 << 20)) as url, pytest.raises(PrometheusUnavailable, match="more than 1048576 bytes"):
        Prometheus(url).query("up", 0.0)
    with answering(lambda q: vector("1"), delay_s=2.0) as url, pytest.raises(PrometheusUnavailable, match="does not answer"):
        Prometheus(url, deadline_s=0.3).query("up", 0.0)


def test_a_workspace_written_with_the_sandboxs_prometheus_reads_it(tmp_path):
    from rollout_cli.sandbox.sample_app import workspace_yaml, write_sample_app

    write_sample_app(tmp_path / "app", percentage=0)
    (tmp_path / "rollout.yaml").write_text(workspace_yaml("./app", prometheus_url="http://127.0.0.1:9090"))
    settings = load_workspace(tmp_path).metrics
    assert (settings.source, settings.url) == ("prometheus", "http://127.0.0.1:9090")


# --- which gates, in which order, and what decides --------------------------------------

WINDOW_GATES = ["soak", "error rate", "error rate vs direct", "added latency", "fallback rate", "fallback share",
                "gateway 5xx share"]
CHECK_GATES = ["env/flags agree", "gateway", "primary model", "healthy models", "smoke", "cost", "catalog", "quota"]


def test_every_gate_is_judged_in_order_and_the_decision_carries_its_evidence():
    decision = decide(recorded("prometheus-healthy"))
    assert [g.name for g in decision.gates] == CHECK_GATES + WINDOW_GATES
    assert (decision.current, decision.next, decision.requests_sent, decision.requests_shared) == (10, 50, 11, 5)
    assert decision.app_latency == pytest.approx({"gateway_p50_ms": 50.0, "direct_p50_ms": 25.0, "added_p50_ms": 25.0,
                                                  "gateway_p95_ms": 95.0, "direct_p95_ms": 47.5, "added_p95_ms": 47.5})
    data = decision.to_json()
    assert {k: data[k] for k in ("verdict", "current", "next", "reasons", "requests_sent", "requests_shared",
                                 "error_rate_gate", "shared_failures")} == {
        "verdict": "GO", "current": 10, "next": 50, "reasons": [], "requests_sent": 11, "requests_shared": 5,
        "error_rate_gate": "error rate vs direct", "shared_failures": []}
    assert data["metrics"] == {"queries": 13, "source": "prometheus", "url": "http://127.0.0.1:53337"}
    assert data["app_latency"] == decision.app_latency and len(data["gates"]) == len(decision.gates)
    assert data["matrix"] == [row.to_json() for row in decision.matrix] and len(data["matrix"]) == 5
    assert data["warnings"] == decision.warnings
    assert replace(decision, snapshot=None).to_json()["metrics"] is None  # a decision without its evidence


@pytest.mark.parametrize(("name", "verdict", "wanted"), [
    ("gateway-only", "NO-GO", "fail"), ("provider-wide", "HOLD", "inconclusive"), ("gateway-source", "HOLD", "inconclusive"),
])
def test_the_reasons_are_those_of_the_gates_that_decided_the_verdict(name, verdict, wanted):
    decision = decide(recorded(name))
    assert decision.verdict.value == verdict
    assert decision.reasons == [g.reason for g in decision.gates if g.status == wanted] != []
    assert decision.to_json()["reasons"] == decision.reasons


def test_gates_the_plan_turns_off_are_not_judged():
    off = plan(gates={**PLAN["gates"], "env_flags_agree": False, "smoke": False, "cost_free_only": False,
                      "catalog": False, "gateway_healthy": False, "primary_healthy": False})
    assert [g.name for g in decide(recorded("prometheus-healthy"), off).gates] == ["healthy models", "quota",
                                                                                    *WINDOW_GATES]
    absolute = plan(gates={"max_added_latency_p95_ms": 5000})  # no error_rate_vs_direct: the absolute gate decides
    decision = decide(recorded("gateway-only"), absolute)
    assert "error rate vs direct" not in [g.name for g in decision.gates]
    assert (gate(decision, "error rate").status, decision.error_rate_gate) == ("fail", "error rate")


@pytest.mark.parametrize("first_step", ["at 0 %", "no window"])
def test_the_first_step_skips_every_window_gate(first_step):
    raw = recorded("prometheus-healthy")
    if first_step == "at 0 %":
        raw["stage"].update(env_percentage=0, env_enabled=False, flags_percentage=0, flags_enabled=False)
    else:
        raw["window"] = None
    decision = decide(raw)
    note = "first step (0% -> first stage): no traffic through the gateway yet"
    window = [(g.name, g.status, g.value, g.threshold, g.source, g.reason) for g in decision.gates[len(CHECK_GATES):]]
    assert window == [
        ("soak", "skipped", "n/a", "n/a", "stage plan", f"soak: {note}"),
        ("error rate", "skipped", "n/a", "<= 1%", "stage plan", f"error rate: {note}"),
        ("added latency", "skipped", "n/a", "p95 <= 5000 ms", "stage plan", f"added latency: {note}"),
        ("fallback rate", "skipped", "n/a", "<= 5%", "stage plan", f"fallback rate: {note}"),
        ("fallback share", "skipped", "n/a", "n/a", "stage plan", f"fallback share: {note}"),
        ("gateway 5xx share", "skipped", "n/a", "n/a", "stage plan", f"gateway 5xx share: {note}"),
    ]
    assert (decision.error_rate_gate, decision.app_latency, decision.shared_failures) == (None, None, [])
    assert decision.next == (10 if first_step == "at 0 %" else 50) and decision.verdict.value == "GO"


def test_the_absolute_gate_stands_aside_only_when_the_comparative_one_has_figures():
    decision = decide(recorded("gateway-only"))
    assert gate(decision, "error rate").reason == ("error rate (gateway counters) 5.00% (2880 of 57600): decided by "
                                                   "'error rate vs direct' (the app's metrics exist)")
    assert gate(decision, "error rate vs direct").source == "the app's metrics (Prometheus http://127.0.0.1:56529)"
    assert gate(decision, "fallback share").source == "PromQL (Prometheus http://127.0.0.1:56529)"
    raw = recorded("gateway-only")
    raw["window"]["problem"] = "Prometheus answered NaN for failed"  # the app's figures alone do not decide
    decision = decide(raw)
    assert decision.error_rate_gate == "error rate" and gate(decision, "error rate").status == "inconclusive"
    comparative = gate(decision, "error rate vs direct")
    assert comparative.status == "skipped" and comparative.reason.endswith("; the absolute error-rate gate decides")
    assert decide(recorded("provider-wide")).error_rate_gate == "error rate vs direct"  # held, not skipped
    source = decide(recorded("gateway-source"))
    assert gate(source, "fallback share").source == "PromQL (metrics.source: prometheus, not set)"


# --- failures the direct path shares ---------------------------------------------------------


def app_paths(direct: dict, gateway: dict | None = None, **extra) -> dict:  # type: ignore[no-untyped-def]
    return {"problem": None, "direct": direct, **({"gateway": gateway} if gateway else {}), **extra}


@pytest.mark.parametrize(("app", "span", "why"), [
    (None, "window", None),
    ({"problem": "no series"}, "window", None),
    ({"problem": None, "gateway": {"requests": 100, "failed": 50}}, "window", None),
    (app_paths({"requests": 100, "failed": 5}), "window",
     "the direct path fails too: 5.00% (5 of 100) in the same window"),
    ({**app_paths({"requests": 100, "failed": 5}), "problem": "Prometheus answered NaN"}, "window", None),
    (app_paths({"requests": 100, "failed": 1}), "window", None),  # at the limit: not beyond it
    (app_paths({"requests": 10, "failed": 1}), "window", "the direct path fails too: 10.00% (1 of 10) in the same window"),
    (app_paths({"requests": 1, "failed": 1}), "window", "the direct path fails too: 100.00% (1 of 1) in the same window"),
    (app_paths({"requests": 0, "failed": 3}), "window", None),  # counters read a scrape apart: no rate without requests
    (app_paths({"requests": 100, "failed": 0}), "window", None),
    (app_paths({"requests": 0, "failed": 0}), "window", None),
    (app_paths({"requests": 100, "failed": 0, "recent_requests": 90, "recent_failed": 45}, recent_s=300), "recent",
     "the direct path fails too: 50.00% (45 of 90) in the last 300 s"),
    (app_paths({"requests": 100, "failed": 50, "recent_requests": 90, "recent_failed": 0}), "recent", None),
    (app_paths({"requests": 0, "failed": 0, "recent_requests": 10, "recent_failed": 10}), "recent",
     "the direct path fails too: 100.00% (10 of 10) in the last 0 s"),
])
def test_direct_failure_is_the_direct_paths_rate_beyond_the_limit(app, span, why):
    assert direct_failure(app, 0.01, span) == why


def test_a_shared_failure_names_both_paths_and_whether_the_gateways_fallbacks_serve():
    shared = gate(decide(recorded("provider-wide")), "error rate")
    assert shared.reason == (
        "error rate 5.00% (2880 of 57600) > 1%; the direct path fails too: 5.00% (25920 of 518400) in the same window;"
        " the gateway path: 5.00% errors (2880 of 57600): a provider failure, not the gateway's (HOLD, no rollback)")
    assert shared.detail == {"shared_with_direct": "the direct path fails too: 5.00% (25920 of 518400) in the same window"}
    raw = recorded("provider-wide")
    raw["app"]["gateway"].update(requests=0, failed=0)  # no app traffic on the gateway path: nothing to say of it
    assert gate(decide(raw), "error rate").reason.endswith(
        "in the same window: a provider failure, not the gateway's (HOLD, no rollback)")
    raw["app"]["gateway"].update(requests=1, failed=0)
    assert "; the gateway path: 0.00% errors (0 of 1), its fallbacks serving: " in gate(decide(raw), "error rate").reason
    raw = recorded("provider-wide")
    raw["window"].update(failed=1152)  # the gateway fails 2 % where the direct path fails 5 %: fallbacks help
    raw["app"]["gateway"].update(failed=1152)
    assert "; the gateway path: 2.00% errors (1152 of 57600), its fallbacks serving: " in gate(decide(raw), "error rate").reason
    raw["app"]["gateway"].update(requests=10, failed=6)  # 60 % of 10 against all of the direct path's one request
    raw["app"]["direct"].update(requests=1, failed=1)
    assert "; the gateway path: 60.00% errors (6 of 10), its fallbacks serving: " in gate(decide(raw), "error rate").reason
    raw["app"]["gateway"].update(requests=100, failed=5)  # the same 5 % on both paths: nothing of the gateway's helps
    raw["app"]["direct"].update(requests=1000, failed=50)
    assert "; the gateway path: 5.00% errors (5 of 100): a provider failure" in gate(decide(raw), "error rate").reason


def test_a_smoke_failure_is_held_only_when_it_is_the_primarys_alone():
    assert gate(decide(recorded("primary-down-everywhere")), "smoke").status == "inconclusive"
    raw = recorded("primary-down-everywhere")
    fallback = next(c for c in raw["smoke"]["checks"] if c["model"] == "deepseek-chat-v3.1")
    fallback["status"] = "fail"  # a fallback failing too is not the primary's provider outage
    raw["health"]["models"][1]["status"] = "down"
    decision = decide(raw)
    assert gate(decision, "smoke").status == "fail" and decision.shared_failures == ["primary model"]
    raw = recorded("primary-down-everywhere")
    raw["health"] = None
    raw["health_error"] = "gateway config unreadable"
    assert gate(decide(raw), "smoke").status == "fail"  # no primary known: nothing to share
    raw = recorded("primary-down-everywhere")
    raw["smoke"]["checks"].append({**raw["smoke"]["checks"][1], "model": "deepseek-chat-v3.1", "check": "cost"})
    assert gate(decide(raw), "smoke").status == "inconclusive"  # a cost check is the cost gate's, not smoke's
    raw["smoke"] = None
    raw["smoke_error"] = "the suite cannot be read"
    decision = decide(raw)
    assert gate(decision, "smoke").status == "fail" and decision.shared_failures == ["primary model"]


def _no_health(raw: dict) -> None:
    raw.update(health=None, health_error="gateway config unreadable")


def _no_smoke(raw: dict) -> None:
    raw.update(smoke=None, smoke_error="the smoke suite cannot be read")


def _fallback_down(raw: dict) -> None:  # a fallback the health gates allow (4 of 5 healthy) fails its smoke too
    raw["health"]["models"][4]["status"] = "down"
    next(c for c in raw["smoke"]["checks"] if c["model"] == "qwen3-coder" and c["check"] != "cost")["status"] = "fail"


def _fallback_retired(raw: dict) -> None:
    raw["catalog"]["models"][4].update(status="retired", reason="no longer listed")


def _quota_spent(raw: dict) -> None:
    raw["health"]["models"][1]["status"] = "quota-exhausted"


def _soak_skipped(raw: dict) -> None:
    raw["skip_soak_reason"] = "incident drill"


@pytest.mark.parametrize(("change", "name", "status", "reason"), [
    (_no_health, "healthy models", "fail", "health check could not run: gateway config unreadable"),
    (_no_smoke, "smoke", "fail", "smoke could not run: the smoke suite cannot be read"),
    (_no_smoke, "cost", "inconclusive", "cost guard could not run: the smoke suite cannot be read"),
    (_fallback_down, "smoke", "pass", "smoke: "),
    (_fallback_retired, "catalog", "pass", "catalog: 4 of 5 fit"),
    (_quota_spent, "quota", "inconclusive", "OpenRouter free quota exhausted"),
    (_soak_skipped, "soak", "skipped", "soak skipped: incident drill"),
])
def test_each_piece_of_evidence_reaches_its_gate(change, name, status, reason):
    raw = recorded("prometheus-healthy")
    change(raw)
    judged = gate(decide(raw), name)
    assert (judged.status, judged.reason[:len(reason)]) == (status, reason)


@pytest.mark.parametrize(("requests", "sent", "shared"), [
    ({"sent": 11, "shared": 5}, 11, 5), ({"sent": 3}, 3, 0), ({"shared": 2}, 0, 2), (None, 0, 0),
])
def test_a_snapshots_request_counts_missing_read_as_none_sent(requests, sent, shared):
    raw = recorded("prometheus-healthy")
    raw["requests"] = requests  # a replayed snapshot written by hand may leave a count out
    decision = decide(raw)
    assert (decision.requests_sent, decision.requests_shared) == (sent, shared)


def test_the_matrix_and_the_warnings_come_from_the_same_evidence():
    raw = recorded("prometheus-healthy")
    _fallback_down(raw)
    decision = decide(raw)
    assert [(row.alias, row.smoke, row.verdict) for row in decision.matrix][3:] == [
        ("kimi-k2", "pass", "pass"), ("qwen3-coder", "fail", "warn")]
    assert decision.warnings == [w for g in decision.gates for w in g.warnings]
    assert [w.split(" (")[-1] for w in decision.warnings] == ["a fallback model; the gate allows it)",
                                                            "a fallback model the health gates allow)"]
