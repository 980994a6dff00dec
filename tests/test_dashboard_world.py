"""Issue 21 items 2 and 3 in a real sandbox: the stage as a metric, and the Grafana dashboard's every query.

One sandbox for the module (the real simulator, the real LiteLLM proxy and the sample app as
processes, Debian's Prometheus and node_exporter). The scenario runs once: the app's files are put
at 50 % by hand, `rollout status` refreshes `.rollout/rollout.prom`, `rollout advance` judges HOLD
(the soak has just begun) and records it, the app sends traffic through both paths while the gateway meets faults
(the primary failing on the gateway path only: fallbacks; kimi-k2 and the model behind it failing:
errors on both paths, failed fallbacks, a cooled-down deployment), `rollout status` measures the
observed share, and `rollout rollback --level 1` takes the stage to 0 %.
"""

from __future__ import annotations

import json
import math
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from rollout_cli.sandbox.app import AppControl, load_app
from rollout_cli.simulator import GATEWAY_ALIASES
from support import at_stage, process_sandbox, rollout, wait_until

pytestmark = [pytest.mark.gateway, pytest.mark.xdist_group("test_dashboard_world"), pytest.mark.slow(90)]

REPO = Path(__file__).resolve().parents[1]
DASHBOARD = REPO / "deploy" / "grafana" / "rollout-dashboard.json"
RANGE_S = 900  # the dashboard's time range in the test: the whole scenario fits in it
STEP_S = 5
# As Grafana fills them in: $__rate_interval is max(4 x the datasource's scrape interval, ...), 1m with the
# 15 s of deploy/grafana/provisioning/datasources.yaml; $__range is the dashboard's time range.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__range": f"{RANGE_S}s"}
FAULTS = (("glm-4.5-air", "--via", "gateway"), ("kimi-k2",), ("qwen3-coder", "--via", "gateway"))
LOADS = (("glm-4.5-air", 10, 4.0), ("kimi-k2", 5, 3.0), ("kimi-k2", 5, 3.0))  # kimi twice: rate() sees failures rise


def cli(box, *args: str):  # type: ignore[no-untyped-def]
    return rollout("-w", str(box.root), *args)


def send(box, model: str, rps: int, seconds: float) -> None:  # type: ignore[no-untyped-def]
    """Load on the app asking for `model`, returning once every request it sent has its answer (bounded)."""
    record = load_app(box.root)
    assert record is not None
    control = AppControl(record.url)
    control.load(rps, seconds, model, GATEWAY_ALIASES[model])

    def done() -> bool:
        seen = control.status()
        return seen["now"] >= seen["load"]["until"] and seen["in_flight"] == 0

    wait_until(done, seconds + 60, "the app's load to end")


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory):
    with process_sandbox(tmp_path_factory.mktemp("dashboard") / "sb") as info:
        assert info.prometheus_url and "node_exporter" in info.pids
        at_stage(info, 50)  # both paths carry traffic
        assert cli(info, "status").exit_code == 0
        advanced = cli(info, "advance", "--yes")
        # HOLD: the soak at 50 % has just begun (NO-GO on a machine so busy that a health check timed out)
        assert advanced.exit_code in (1, 3), advanced.output
        for fault in FAULTS:
            assert cli(info, "sandbox", "fault", fault[0], "--status", "500", *fault[1:]).exit_code == 0
        for model, rps, seconds in LOADS:
            send(info, model, rps, seconds)
        assert cli(info, "sandbox", "fault", "--clear").exit_code == 0
        observed = json.loads(cli(info, "status", "--json").stdout)["observed"]
        assert observed["share"] is not None, observed
        rolled = cli(info, "rollback", "--level", "1", "--yes", "--reason", "dashboard test")
        assert rolled.exit_code == 0, rolled.output
        yield info


def families(text: str) -> dict[str, dict[tuple[str, ...], float]]:
    """Prometheus text as prometheus_client's parser reads it: sample name -> {label values: value}."""
    out: dict[str, dict[tuple[str, ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, {})[tuple(f"{k}={v}" for k, v in sorted(sample.labels.items()))] = sample.value
    return out


def get(url: str) -> str:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=10) as answer:
        return str(answer.read().decode())


def query(url: str, promql: str, instant: bool) -> list[dict[str, Any]]:
    now = time.time()
    params = ({"query": promql, "time": now} if instant else
              {"query": promql, "start": now - RANGE_S, "end": now, "step": STEP_S})
    body = json.loads(get(f"{url}/api/v1/{'query' if instant else 'query_range'}?{urllib.parse.urlencode(params)}"))
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def finite_values(url: str, expr: str, instant: bool = False) -> list[float]:
    """Every finite value the query returns over the test's range (or now), Grafana's variables filled in."""
    for name, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(name, value)
    assert "$" not in expr, f"a variable the test does not fill in: {expr}"
    result = query(url, expr, instant)
    points = [s["value"] for s in result] if instant else [v for s in result for v in s["values"]]
    return [float(v) for _, v in points if math.isfinite(float(v))]


def dashboard_queries() -> list[Any]:
    board = json.loads(DASHBOARD.read_text())
    found = [pytest.param(t["expr"], bool(t.get("instant")), id=f"panel {p['id']} {t['refId']}: {p['title']}")
             for p in board["panels"] for t in p.get("targets", [])]
    found += [pytest.param(a["expr"], False, id=f"annotation: {a['name']}") for a in board["annotations"]["list"]]
    return found


# --- item 2: the stage as a metric, through node_exporter into Prometheus ---------------------------------


def test_after_a_rollback_node_exporter_serves_the_new_stage_and_prometheus_has_it(box) -> None:
    written = families((box.root / ".rollout" / "rollout.prom").read_text())
    assert written["rollout_stage_configured_ratio"] == {(): 0.0}
    assert written["rollout_rollbacks_total"][("level=1",)] == 1.0
    assert sorted(written["rollout_last_verdict"].values()) == [0.0, 0.0, 1.0]
    assert written["rollout_last_verdict"][("verdict=GO",)] == 0.0

    state = json.loads(cli(box, "sandbox", "status", "--json").stdout)
    exporter = state["node_exporter"]
    assert exporter["running"] and exporter["ready"] and exporter["pid"] == box.pids["node_exporter"]
    served = families(get(exporter["url"] + "/metrics"))
    assert served["rollout_stage_configured_ratio"] == {(): 0.0}
    assert served["rollout_rollbacks_total"][("level=1",)] == 1.0
    assert served["node_textfile_scrape_error"] == {(): 0.0}  # it read the file whole
    assert not any(name.startswith(("node_cpu", "go_", "process_")) for name in served)  # the textfile collector alone

    url = box.prometheus_url

    def stage_in_prometheus() -> list[float]:
        return finite_values(url, 'rollout_stage_configured_ratio{job="rollout"}', instant=True)

    wait_until(lambda: stage_in_prometheus() == [0.0], 30, "Prometheus to scrape stage 0", poll=0.5)
    assert finite_values(url, 'rollout_rollbacks_total{job="rollout",level="1"}', instant=True) == [1.0]
    assert 0.5 in finite_values(url, 'rollout_stage_configured_ratio{job="rollout"}')  # and the 50 % before it
    targets = wait_until(lambda: (t := json.loads(cli(box, "sandbox", "status", "--json").stdout)["prometheus"]
                                  ["targets"]).get("rollout") == "up" and t, 30, "job rollout up", poll=0.5)
    assert targets["rollout"] == "up"


# --- item 3: every query of the Grafana dashboard returns data -------------------------------------------


@pytest.mark.parametrize(("expr", "instant"), dashboard_queries())
def test_every_dashboard_query_returns_data_from_the_sandboxs_prometheus(box, expr: str, instant: bool) -> None:
    wait_until(lambda: finite_values(box.prometheus_url, expr, instant), 30, f"data for {expr}", poll=0.5)


def test_a_wrong_query_returns_nothing_so_the_check_above_can_fail(box) -> None:
    """The same check on a query with a misspelt metric or label: no data, so a wrong panel would fail."""
    for wrong in ("sum(rate(litellm_proxy_total_request_metric_total[$__rate_interval]))",
                  'sum(rate(llm_requests_total{path="gatway"}[$__rate_interval]))',
                  "max by (verdict) (rollout_last_verdict) == 2"):
        assert finite_values(box.prometheus_url, wrong) == []
