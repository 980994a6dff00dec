"""Added latency as the app feels it (rollout_cli.checks.latency), and the latency gate's signal.

The arithmetic of pairing is tested with plain functions standing in for the two
paths; the measurement itself runs against the session sandbox's real LiteLLM
proxy and simulator, and through `rollout sandbox traffic`.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
from pathlib import Path

import pytest

from rollout_cli.checks.latency import measure_gateway, measure_pairs, percentile
from rollout_cli.gateway.api import GatewayClient
from rollout_cli.rollout.gates import added_latency
from support import rollout


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]  # 1..100
    assert percentile(values, 50) == 50.0
    assert percentile(values, 95) == 95.0
    assert percentile(values, 99) == 99.0
    assert percentile([7.0], 95) == 7.0
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0
    assert percentile([], 50) is None


def test_pairs_alternate_which_path_goes_first_and_skip_the_warm_up() -> None:
    calls: list[str] = []
    direct_times = itertools.count(1)

    def direct() -> float:
        calls.append("d")
        return float(next(direct_times))  # 1, 2, 3, ...

    def gateway() -> float:
        calls.append("g")
        return 100.0

    seen = measure_pairs(direct, gateway, pairs=4, warmup=2)
    assert calls == ["d", "g", "g", "d", "d", "g", "g", "d", "d", "g", "g", "d"]
    assert seen.pairs == 4 and seen.warmup == 2 and seen.failed == 0
    assert seen.direct_ms == [3.0, 4.0, 5.0, 6.0]  # the two warm-up pairs (1, 2) are not counted
    assert seen.added_ms == [97.0, 96.0, 95.0, 94.0]
    summary = seen.summary()
    assert summary["added_ms"] == {"p50": 95.0, "p95": 97.0, "p99": 97.0}
    assert summary["gateway_ms"]["p50"] == 100.0


def test_a_failed_half_drops_the_pair_and_is_counted() -> None:
    answers = iter([5.0, None, 5.0, 5.0, 5.0])

    seen = measure_pairs(lambda: next(answers), lambda: 12.0, pairs=3, warmup=0)
    assert seen.pairs == 2 and seen.failed == 1
    assert seen.added_ms == [7.0, 7.0]


def test_failed_pairs_in_a_row_give_up_and_a_success_resets_the_count() -> None:
    gateway_answers = iter([None, None, 12.0, None, None, None, 12.0])
    sent: list[str] = []

    def gateway() -> float | None:
        sent.append("g")
        return next(gateway_answers)

    seen = measure_pairs(lambda: 5.0, gateway, pairs=20, warmup=1, give_up_after=3)
    assert seen.gave_up and len(sent) == 6  # two failures, a success, then three failures in a row
    assert seen.failed == 4 and seen.pairs == 1  # the first failure was the warm-up pair
    assert not measure_pairs(lambda: 5.0, lambda: 12.0, pairs=5, warmup=0, give_up_after=1).gave_up


def test_concurrent_workers_send_exactly_the_pairs_asked_for() -> None:
    lock = threading.Lock()
    sent = {"d": 0, "g": 0}

    def path(name: str, ms: float):  # type: ignore[no-untyped-def]
        def send() -> float:
            with lock:
                sent[name] += 1
            return ms
        return send

    seen = measure_pairs(path("d", 2.0), path("g", 9.5), pairs=37, concurrency=4, warmup=5)
    assert sent == {"d": 42, "g": 42}
    assert seen.concurrency == 4 and seen.pairs == 37 and seen.added(95) == 7.5


def test_measure_pairs_refuses_nonsense() -> None:
    with pytest.raises(ValueError, match="need pairs, concurrency >= 1"):
        measure_pairs(lambda: 1.0, lambda: 1.0, pairs=0)


def test_paired_requests_through_the_real_gateway_reach_the_simulator_once_each(sb) -> None:
    from rollout_cli.sandbox.state import load_state

    state = load_state(sb.root)
    assert state is not None
    with GatewayClient(sb.gateway_url, sb.master_key) as gateway, \
            GatewayClient(state.simulator_api_base.removesuffix("/v1"), state.simulator_key) as direct:
        seen = measure_gateway(gateway, direct, "glm-4.5-air", "z-ai/glm-4.5-air:free", pairs=12, warmup=2)
    assert seen.pairs == 12 and seen.failed == 0
    assert all(d > 0 for d in seen.direct_ms) and all(g > 0 for g in seen.gateway_ms)
    # 14 pairs: 14 direct + 14 forwarded by the gateway, nothing retried or fallen back
    assert sb.admin.stats()["total"] == 28


def test_sandbox_traffic_reports_the_paired_added_latency(sb) -> None:
    result = rollout("-w", str(sb.root), "sandbox", "traffic", "--rps", "20", "--duration", "0.5", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    messages = "\n".join(data["messages"])
    line = re.search(r"the gateway adds about ([\d.]+) ms \(p50; p95 ([\d.]+) ms\) over 20 paired requests", messages)
    assert line, messages
    assert float(line.group(2)) >= float(line.group(1))
    # the sample app is a real long-running app pacing its own load by the clock: it sends about
    # rps * duration requests (9..11 here), and reports how many it sent
    assert 9 <= data["requests"] <= 11
    # its requests (each one upstream request, through the gateway or direct), then (20 + 3 warm-up) pairs
    assert sb.admin.stats()["total"] == data["requests"] + 2 * 23


def test_the_gate_reads_the_p95_of_litellms_per_request_overhead() -> None:
    window = {"overhead_buckets": {"0.005": 50.0, "0.01": 90.0, "0.0125": 96.0, "0.025": 100.0, "+Inf": 100.0}}
    p95, observed = added_latency(window)
    assert observed == 100.0
    assert p95 is not None and round(p95, 3) == 12.083  # rank 95 of 100: 5/6 of the way from 10 to 12.5 ms
    assert added_latency({"overhead_buckets": {}}) == (None, 0)


def test_the_shipped_gateway_keeps_every_metric_the_gates_read_with_fine_buckets(sb) -> None:
    from rollout_cli.rollout import metrics

    sb.admin.set_fault("kimi-k2", status=500)
    with sb.client() as client:
        assert client.complete("glm-4.5-air", "ping").status == 200
        assert client.complete("kimi-k2", "ping", disable_fallbacks=True, extra={"num_retries": 0}).status == 500
        drill = client.complete("glm-4.5-air", "ping", extra={"mock_testing_fallbacks": True})
        assert drill.status == 200 and drill.served_by == "deepseek-chat-v3.1"
        text = client.metrics()
        for _ in range(100):  # LiteLLM counts a request just after answering it
            if metrics.FAILED in text and metrics.FALLBACKS in text:
                break
            threading.Event().wait(0.1)
            text = client.metrics()
    names = {s.name for s in metrics.parse(text)}
    for wanted in (metrics.TOTAL, metrics.FAILED, f"{metrics.OVERHEAD}_bucket", f"{metrics.LATENCY}_bucket",
                   metrics.DEPLOYMENT_STATE, metrics.FALLBACKS):
        assert wanted in names, f"{wanted} missing from /metrics/"
    # the shipped buckets resolve the gate's 10 ms: 7.5, 10 and 12.5 ms edges
    edges = {s.labels["le"] for s in metrics.parse(text) if s.name == f"{metrics.OVERHEAD}_bucket"}
    assert {"0.0075", "0.01", "0.0125"} <= edges
    # per-key budget metrics are off: they looked the key up after every request
    assert not any(name.startswith("litellm_remaining_api_key_budget") for name in names)


def test_the_sandbox_gateway_runs_with_production_logging() -> None:
    from rollout_cli.sandbox.state import gateway_settings

    env = gateway_settings("http://127.0.0.1:9/api/v1", "sk-x")
    assert env["LITELLM_LOG"] == "ERROR" and env["LITELLM_MODE"] == "PRODUCTION"



def test_the_production_compose_file_runs_the_measured_configuration() -> None:
    import yaml

    compose = yaml.safe_load((Path(__file__).resolve().parents[1] / "deploy" / "docker-compose.yml").read_text())
    env = compose["services"]["litellm"]["environment"]
    assert env["LITELLM_LOG"] == "ERROR" and env["LITELLM_MODE"] == "PRODUCTION"
    # two workers only with a shared metrics folder: otherwise /metrics/ shows one worker's half
    assert env["NUM_WORKERS"] == "2" and env["PROMETHEUS_MULTIPROC_DIR"].startswith("/")
    assert int(env["TIMEOUT_WORKER_HEALTHCHECK"]) >= 30
