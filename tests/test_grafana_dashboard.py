"""Issue 21 item 3: deploy/grafana's dashboard and provisioning files are well formed.

Whether every query returns data is tests/test_dashboard_world.py's job (a real sandbox); here the
structure Grafana needs, and that every metric a query names is one somebody exports.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from rollout_cli.core.stagemetrics import FAMILIES

REPO = Path(__file__).resolve().parents[1]
GRAFANA = REPO / "deploy" / "grafana"
BOARD = json.loads((GRAFANA / "rollout-dashboard.json").read_text())
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
APP_METRICS = {"llm_requests_total", "llm_request_failures_total", "gen_ai_client_operation_duration_seconds_bucket"}
FUNCTIONS = {"sum", "max", "rate", "increase", "changes", "histogram_quantile", "time", "count_values", "round",
             "by", "on", "and"}


def exported_by_the_gateway() -> set[str]:
    """The litellm_* metrics deploy/litellm-config.yaml keeps (counters get _total, histograms _bucket)."""
    config = yaml.safe_load((REPO / "deploy" / "litellm-config.yaml").read_text())
    names = {m for group in config["litellm_settings"]["prometheus_metrics_config"] for m in group["metrics"]}
    return {n + suffix for n in names for suffix in ("", "_total", "_bucket")}


def expressions() -> list[str]:
    return ([t["expr"] for p in BOARD["panels"] for t in p.get("targets", [])]
            + [a["expr"] for a in BOARD["annotations"]["list"]])


def test_panels_have_unique_ids_a_datasource_and_targets_with_unique_ref_ids() -> None:
    panels = BOARD["panels"]
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids))
    for p in panels:
        if p["type"] == "row":
            continue
        assert p["datasource"] == DATASOURCE, p["title"]
        assert p["targets"], p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["datasource"] == DATASOURCE and t["expr"].strip(), p["title"]
        assert p["title"] and p["description"]


def test_panels_fit_the_24_column_grid_without_overlapping() -> None:
    taken: set[tuple[int, int]] = set()
    for p in BOARD["panels"]:
        g = p["gridPos"]
        assert g["x"] >= 0 and g["w"] > 0 and g["x"] + g["w"] <= 24, p["title"]
        cells = {(x, y) for x in range(g["x"], g["x"] + g["w"]) for y in range(g["y"], g["y"] + g["h"])}
        assert not cells & taken, f"{p['title']} overlaps another panel"
        taken |= cells


def test_the_datasource_is_a_variable_and_annotations_query_the_stage_and_rollbacks() -> None:
    variables = {v["name"]: v for v in BOARD["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    annotations = {a["name"]: a for a in BOARD["annotations"]["list"]}
    assert set(annotations) == {"Stage changes", "Rollbacks"}
    for a in annotations.values():
        assert a["datasource"] == DATASOURCE and a["enable"]
    assert "rollout_stage_configured_ratio" in annotations["Stage changes"]["expr"]
    assert "rollout_rollbacks_total" in annotations["Rollbacks"]["expr"]
    assert BOARD["uid"] and BOARD["title"] and BOARD["schemaVersion"] >= 36


def test_every_metric_a_query_names_is_exported_by_the_gateway_the_app_or_rollout() -> None:
    known = exported_by_the_gateway() | APP_METRICS | set(FAMILIES)
    for expr in expressions():
        text = re.sub(r'"[^"]*"|\[[^]]*\]|\{[^}]*\}', "", expr)  # strings, ranges and matchers hold no metric
        names = {n for n in re.findall(r"[a-z_][a-z0-9_]*", text) if n not in FUNCTIONS and not n.isdigit()}
        names -= {"le", "path", "requested_model", "fallback_model", "verdict", "level", "litellm_model_name",
                  "model_group", "exception_status", "error_type"}  # labels of by (...)
        assert names and names <= known, f"{expr}: {names - known}"


def test_every_panel_of_the_three_areas_is_there() -> None:
    text = json.dumps(BOARD)
    for metric in ("litellm_proxy_total_requests_metric_total", "litellm_proxy_failed_requests_metric_total",
                   "litellm_overhead_latency_metric_bucket", "litellm_deployment_successful_fallbacks_total",
                   "litellm_deployment_state", "llm_requests_total", "llm_request_failures_total",
                   "gen_ai_client_operation_duration_seconds_bucket", "rollout_stage_configured_ratio",
                   "rollout_last_verdict", "rollout_last_decision_timestamp_seconds", "rollout_rollbacks_total"):
        assert metric in text, metric


def test_the_provisioning_files_point_at_the_dashboard_folder_and_a_prometheus() -> None:
    dashboards = yaml.safe_load((GRAFANA / "provisioning" / "dashboards.yaml").read_text())
    assert dashboards["apiVersion"] == 1
    provider = dashboards["providers"][0]
    assert provider["type"] == "file" and provider["options"]["path"]
    datasources = yaml.safe_load((GRAFANA / "provisioning" / "datasources.yaml").read_text())
    assert datasources["datasources"][0]["type"] == "prometheus"
    assert datasources["datasources"][0]["url"].startswith("http://127.0.0.1:")
