"""Stage plan validation and the metrics arithmetic the gates rest on."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from rollout_cli.errors import PlaybookError
from rollout_cli.rollout import metrics
from rollout_cli.rollout.gates import FAIL, INCONCLUSIVE, PASS, Gate, Verdict, combine
from rollout_cli.rollout.plan import load_plan, parse_plan

P = Path("rollout.yaml")


def test_shipped_plan_is_the_documented_default():
    plan = load_plan(None)
    assert plan.stages == (10, 50, 100)
    assert plan.soak_s == 48 * 3600
    assert plan.gates.max_added_latency_p95_ms == 10 and plan.gates.min_healthy_models == 4
    assert plan.gates.max_error_rate == 0.01 and plan.on_post_check_failure == 1
    assert plan.gates.error_rate_vs_direct_margin == 0.005 and plan.custom_gates == ()
    assert plan.next_stage(0) == 10 and plan.next_stage(10) == 50 and plan.next_stage(100) is None


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ("stages: [50, 10, 100]", "stages [50, 10, 100] are not in increasing order"),
        ("stages: [10, 50, 150]", "stage 150% is outside 1..100"),
        ("stages: [10, 50]", "the last stage is 50%; a rollout ends at 100"),
        ("stages: ten", "'stages' must be a list of whole percentages"),
        ("gates: {max_error_rate: lots}", "'gates.max_error_rate' must be a number, got 'lots'"),
        ("gates: {min_healthy_models: 4.5}", "'gates.min_healthy_models' must be a whole number"),
        ("gates: {smoke: 1}", "'gates.smoke' must be true or false"),
        ("gates: {max_error_rate: 5}", "is a fraction 0..1"),
        ("gates: {latency: 10}", "unknown gate 'gates.latency'"),
        ("soak: forever", "expected a duration like 30s, 5m or 48h"),
        ("soak_overrides: {20: 1h}", "soak_overrides names stage 20"),
        ("on_post_check_failure: panic", "must be rollback-1..rollback-4 or none"),
        ("stage: [10]", "unknown key 'stage'"),
        ("gates: {min_ready_replicas: 0}", "'gates.min_ready_replicas' must be all or a whole number >= 1, got 0"),
        ("gates: {min_ready_replicas: most}", "'gates.min_ready_replicas' must be all or a whole number >= 1"),
        ("gates: {min_ready_replicas: true}", "'gates.min_ready_replicas' must be all or a whole number >= 1"),
    ],
)
def test_bad_plans_are_named(doc, message):
    with pytest.raises(PlaybookError, match=re.escape(message)) as err:
        parse_plan(yaml.safe_load(doc), P)
    assert str(err.value).startswith(f"{P}: ")


def test_plan_overrides():
    plan = parse_plan(yaml.safe_load("stages: [5, 100]\nsoak: 1h\nsoak_overrides: {5: 30m}\n"), P)
    assert plan.soak_for(5) == 1800 and plan.soak_for(100) == 3600


SCRAPE = """\
# HELP litellm_proxy_total_requests_metric_total Total requests
# TYPE litellm_proxy_total_requests_metric_total counter
litellm_proxy_total_requests_metric_total{model="glm-4.5-air",status_code="200"} 90.0
litellm_proxy_total_requests_metric_total{model="kimi-k2",status_code="500"} 10.0
litellm_proxy_failed_requests_metric_total{model="kimi-k2"} 10.0
litellm_overhead_latency_metric_bucket{le="0.005",model="a"} 50.0
litellm_overhead_latency_metric_bucket{le="0.01",model="a"} 90.0
litellm_overhead_latency_metric_bucket{le="0.025",model="a"} 100.0
litellm_overhead_latency_metric_bucket{le="+Inf",model="a"} 100.0
litellm_deployment_state{litellm_model_name="openrouter/moonshotai/kimi-k2:free"} 2.0
"""


def test_summarize_and_quantile():
    s = metrics.summarize(SCRAPE)
    assert s["requests"] == 100 and s["failed"] == 10
    assert s["deployment_state"] == {"openrouter/moonshotai/kimi-k2:free": 2.0}
    p95 = metrics.quantile(s["overhead_buckets"], 0.95)
    assert 0.01 < p95 < 0.025  # rank 95 lies in the (10 ms, 25 ms] bucket
    assert metrics.quantile(s["overhead_buckets"], 0.5) == pytest.approx(0.005)


def test_a_drills_fallbacks_are_told_apart_by_their_exception_class():
    fallbacks = (  # LiteLLM's mock exception has no provider; an upstream failure's class names it
        'litellm_deployment_successful_fallbacks_total{requested_model="glm",exception_class="InternalServerError"} 3.0\n'
        'litellm_deployment_successful_fallbacks_total{requested_model="glm",exception_class="Openrouter.RateLimitError"} 4.0\n'
        'litellm_deployment_failed_fallbacks_total{requested_model="deepseek",exception_class="InternalServerError"} 1.0\n'
        'litellm_deployment_failed_fallbacks_total{requested_model="glm",exception_class="Openrouter.InternalServerError"} 2.0\n')
    s = metrics.summarize(SCRAPE + fallbacks)
    assert (s["fallbacks"], s["failed_fallbacks"], s["drill_fallbacks"]) == (7, 3, 4)
    then = metrics.summarize(SCRAPE + fallbacks.replace("} 3.0", "} 1.0"))
    assert metrics.delta(s, then)["drill_fallbacks"] == 2


def test_delta_over_a_window_and_after_restart():
    then = metrics.summarize(SCRAPE.replace("90.0", "40.0").replace("} 10.0", "} 5.0"))
    now = metrics.summarize(SCRAPE)
    window = metrics.delta(now, then)
    assert window["requests"] == 55 and window["failed"] == 5
    restarted = metrics.summarize(SCRAPE.replace("90.0", "1.0").replace("} 10.0", "} 0.0"))
    assert metrics.delta(restarted, now)["requests"] == 1  # counters reset: take now alone


@pytest.mark.parametrize(("doc", "required"), [
    ("stages: [10, 100]", None), ("gates: {min_ready_replicas: all}", None), ("gates: {min_ready_replicas: 2}", 2),
])
def test_min_ready_replicas_defaults_to_all(doc, required):
    assert parse_plan(yaml.safe_load(doc), P).gates.min_ready_replicas == required


def _replica_scrape(requests: float, failed: float, started: float = 1000.0) -> dict:
    text = SCRAPE.replace("90.0", f"{requests - 10:g}").replace("failed_requests_metric_total{model=\"kimi-k2\"} 10.0",
                                                              f"failed_requests_metric_total{{model=\"kimi-k2\"}} {failed:g}")
    return metrics.summarize(text + f"process_start_time_seconds {started:g}\n")


def test_replicas_add_up_series_by_series():
    one, two = _replica_scrape(100, 10), _replica_scrape(50, 4)
    summed = [{"slot": 1, "task": "t1", "url": "u1"}, {"slot": 2, "task": "t2", "url": "u2"}]
    total = metrics.add_up({"1": one, "2": two}, summed, [])
    assert (total["requests"], total["failed"]) == (150, 14)
    assert total["overhead_buckets"]["+Inf"] == 200 and total["overhead_buckets"]["0.005"] == 100
    assert total["models"]["kimi-k2"] == {"requests": 20, "failed": 14}
    assert total["summed"] == summed and set(total["replicas"]) == {"1", "2"}
    assert metrics.invalid_reason(total) is None


def test_a_replica_missing_from_the_sum_makes_it_untrusted():
    total = metrics.add_up({"1": _replica_scrape(100, 10)}, [], ["replica 2 (http://x:4002) did not answer: refused"])
    assert metrics.invalid_reason(total) == ("the gateway's /metrics/ cannot be trusted: "
                                             "replica 2 (http://x:4002) did not answer: refused")
    broken = metrics.summarize("litellm_proxy_total_requests_metric_total NaN\n")
    assert "replica 2: " in str(metrics.invalid_reason(metrics.add_up({"2": broken}, [], [])))


def test_a_window_over_replicas_is_taken_replica_by_replica():
    then = metrics.add_up({"1": _replica_scrape(100, 10), "2": _replica_scrape(50, 4)}, [], [])
    # replica 2 restarted in the window (a new process): its own counts alone, replica 1's difference
    now = metrics.add_up({"1": _replica_scrape(130, 11), "2": _replica_scrape(17, 1, started=2000.0)}, [], [])
    window = metrics.delta(now, then)
    assert (window["requests"], window["failed"]) == (30 + 17, 1 + 1)
    # the sums alone would have read 147 - 150: a negative window
    assert metrics.delta(now, then)["requests"] > 0


def test_quantile_of_empty_histogram_is_none():
    assert metrics.quantile({}, 0.95) is None
    assert metrics.quantile({"0.01": 0.0, "+Inf": 0.0}, 0.95) is None


def _gate(status):
    return Gate("g", status, "v", "t", "s", "r")


@pytest.mark.parametrize(
    ("statuses", "verdict"),
    [
        ([PASS, PASS], Verdict.GO),
        ([PASS, "skipped"], Verdict.GO),
        ([PASS, INCONCLUSIVE], Verdict.HOLD),
        ([INCONCLUSIVE, FAIL], Verdict.NO_GO),
        ([FAIL], Verdict.NO_GO),
    ],
)
def test_verdict_combination(statuses, verdict):
    assert combine([_gate(s) for s in statuses]) is verdict
    assert verdict.exit_code == {"GO": 0, "HOLD": 3, "NO-GO": 1}[verdict.value]


def test_sample_store_stays_bounded(tmp_path):
    from rollout_cli.rollout.samples import SampleStore

    store = SampleStore(tmp_path, max_bytes=20_000)
    for i in range(400):
        store.append({"i": i, "pad": "x" * 200})
    size = store.path.stat().st_size
    assert size <= 20_000 + 300
    records = store.records()
    assert records[-1]["i"] == 399 and records[0]["i"] > 0  # oldest dropped, newest kept
    assert [r["i"] for r in records] == sorted(r["i"] for r in records)


def test_checks_own_requests_do_not_count_in_the_error_rate():
    text = SCRAPE + (
        'litellm_proxy_total_requests_metric_total{requested_model="kimi-k2",user_agent="rollout-check/0.1.0"} 7.0\n'
        'litellm_proxy_failed_requests_metric_total{requested_model="kimi-k2",user_agent="rollout-check/0.1.0"} 7.0\n'
    )
    s = metrics.summarize(text)
    assert s["requests"] == 100 and s["failed"] == 10 and s["check_requests"] == 7
    assert s["models"]["kimi-k2"] == {"requests": 10.0, "failed": 10.0}


STARTED = "process_start_time_seconds 1796000000.0\n"


@pytest.mark.parametrize(("line", "named"), [
    ('litellm_proxy_total_requests_metric_total{requested_model="a"} NaN', "is NaN"),
    ('litellm_proxy_failed_requests_metric_total{requested_model="a"} +Inf', "is +Inf"),
    ('litellm_overhead_latency_metric_bucket{le="0.01",model="a"} -Inf', "is -Inf"),
    ('litellm_deployment_successful_fallbacks_total{requested_model="a"} -3', "is negative (-3)"),
    ('litellm_proxy_total_requests_metric_total{model="glm-4.5-air",status_code="200"} 90.0', "appears twice"),
])
def test_a_summary_with_values_no_count_can_have_is_invalid_and_names_them(line, named):
    summary = metrics.summarize(SCRAPE + line + "\n")
    reason = metrics.invalid_reason(summary)
    assert reason is not None and named in reason
    assert "requests" not in summary  # no figure to judge by
    assert metrics.invalid_reason(metrics.delta(summary, metrics.summarize(SCRAPE))) == reason


def test_html_is_not_prometheus_text():
    assert "not Prometheus text" in metrics.invalid_reason(metrics.summarize("<html><body>login</body></html>"))
    assert metrics.invalid_reason(metrics.summarize("")) is None  # an empty exposition: nothing wrong, nothing there


def test_a_counter_reset_is_a_restart_of_the_gateway():
    then = metrics.summarize(STARTED + SCRAPE)
    fewer = SCRAPE.replace("90.0", "1.0").replace("} 10.0", "} 0.0")
    same_process = metrics.delta(metrics.summarize(STARTED + fewer), then)
    assert "requests went down from 100 to 1 without a gateway restart" in metrics.invalid_reason(same_process)
    restarted = metrics.summarize(STARTED.replace("1796000000", "1796000500") + fewer)
    assert metrics.delta(restarted, then)["requests"] == 1  # a new process: its counts alone
    # without a start time (an older sample) a lower request counter is taken for a restart...
    assert metrics.delta(metrics.summarize(fewer), metrics.summarize(SCRAPE))["requests"] == 1
    # ...but failures that went down while requests did not are no reset
    fewer_failures = metrics.delta(metrics.summarize(SCRAPE.replace("kimi-k2\"} 10.0", "kimi-k2\"} 2.0")),
                                   metrics.summarize(SCRAPE))
    assert "failed went down from 10 to 2" in metrics.invalid_reason(fewer_failures)


def test_sample_store_never_keeps_untrusted_metrics(tmp_path):
    from rollout_cli.rollout.samples import SampleStore

    store = SampleStore(tmp_path)
    stored = store.append({"metrics": metrics.summarize(SCRAPE + "litellm_proxy_total_requests_metric_total NaN\n")})
    assert stored["metrics"] is None and "is NaN" in stored["metrics_error"]
    store.append({"metrics": {"requests": float("nan"), "failed": 0.0}})  # as an older rollout wrote it
    assert all(r["metrics"] is None for r in store.records())
    for line in store.path.read_text().splitlines():  # no bare NaN: every line is strict JSON
        json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c} in samples.jsonl"))
