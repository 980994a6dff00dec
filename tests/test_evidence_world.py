"""The world the rollout's evidence comes from: the app's metrics contract, faults by caller, a real Prometheus.

One sandbox for the module (the real simulator, the real LiteLLM proxy and the sample app
as processes, Debian's real Prometheus) at 50 %; load goes to the sample app's control port
(`sandbox traffic` would also time the gateway with paired requests, slow under a fault).
qwen3-coder is the model asked for: the last of the chain, with no fallback, so a fault the
gateway meets reaches the app as it is.
"""

from __future__ import annotations

import itertools
import json
import shutil
import stat
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from rollout_cli.sandbox.app import load_app
from support import at_stage, process_sandbox, rollout, send_load

# one worker starts this module's own sandbox once (tests/conftest.py, rule 6)
pytestmark = [pytest.mark.gateway, pytest.mark.xdist_group("test_evidence_world")]

REPO = Path(__file__).resolve().parents[1]
MODEL = "qwen3-coder"
PATHS = ("gateway", "direct")
FAMILIES = ("llm_requests", "llm_request_failures", "gen_ai_client_operation_duration_seconds")


@pytest.fixture(scope="module")
def box(tmp_path_factory: pytest.TempPathFactory):
    with process_sandbox(tmp_path_factory.mktemp("evidence") / "sb") as info:
        at_stage(info, 50)  # both paths carry traffic
        yield info


@pytest.fixture
def clean(box):
    box.admin.clear()
    box.admin.reset_stats()
    yield box
    box.admin.clear()


def cli(box, *args: str):  # type: ignore[no-untyped-def]
    return rollout("-w", str(box.root), *args)


def send(box, rps: int = 20, seconds: float = 2.0) -> None:  # type: ignore[no-untyped-def]
    send_load(box.root, rps, seconds, MODEL)


def app_metrics(box) -> dict[str, dict[tuple[str, ...], float]]:  # type: ignore[no-untyped-def]
    """The app's /metrics as prometheus_client's own parser reads it: family -> {(sample, labels...): value}."""
    record = load_app(box.root)
    assert record is not None
    with urllib.request.urlopen(record.url + "/metrics", timeout=5) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = answer.read().decode()
    out: dict[str, dict[tuple[str, ...], float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, *(f"{k}={v}" for k, v in sorted(sample.labels.items()) if k != "le"))
            if "le" not in sample.labels:
                out.setdefault(family.name, {})[key] = sample.value
    return out


def value(metrics, family: str, sample: str, **labels: str) -> float:  # type: ignore[no-untyped-def]
    wanted = {f"{k}={v}" for k, v in labels.items()}
    return sum(v for key, v in metrics.get(family, {}).items() if key[0] == sample and wanted <= set(key[1:]))


def failures(metrics, path: str) -> float:  # type: ignore[no-untyped-def]
    return value(metrics, "llm_request_failures", "llm_request_failures_total", path=path)


def requests(metrics, path: str) -> float:  # type: ignore[no-untyped-def]
    return value(metrics, "llm_requests", "llm_requests_total", path=path)


# --- the app's metrics contract -------------------------------------------------------------------


def test_the_apps_metrics_parse_and_carry_the_three_families_per_path(clean) -> None:
    cli(clean, "sandbox", "fault", MODEL, "--status", "500", "--rate", "0.5")
    send(clean)
    metrics = app_metrics(clean)

    assert set(FAMILIES) <= set(metrics)
    for path in PATHS:
        total = requests(metrics, path)
        assert total > 0
        assert failures(metrics, path) > 0
        assert value(metrics, "llm_request_failures", "llm_request_failures_total", path=path, error_type="500") \
            == failures(metrics, path)
        histogram = "gen_ai_client_operation_duration_seconds"
        assert value(metrics, histogram, histogram + "_count", path=path, gen_ai_operation_name="chat") == total
        assert value(metrics, histogram, histogram + "_count", path=path, error_type="500") == failures(metrics, path)
        assert 0 < value(metrics, histogram, histogram + "_sum", path=path, error_type="") < total * 30


def test_the_duration_buckets_can_tell_10_ms_apart_below_100_ms() -> None:
    from rollout_cli.sandbox.app_main import DURATION_BUCKETS

    fine = [b for b in DURATION_BUCKETS if 0.005 <= b <= 0.1]
    assert all(high - low <= 0.02 + 1e-9 for low, high in itertools.pairwise(fine))
    assert {0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 81.92} <= set(DURATION_BUCKETS)  # OTel's advice


@pytest.mark.parametrize(
    ("exc", "expected"),
    [(urllib.error.HTTPError("http://x", 429, "Too Many Requests", {}, None), "429"),  # type: ignore[arg-type]
     (TimeoutError("timed out"), "timeout"),
     (urllib.error.URLError(TimeoutError("timed out")), "timeout"),
     (urllib.error.URLError(ConnectionRefusedError(111, "refused")), "ConnectionRefusedError"),
     (json.JSONDecodeError("Expecting value", "{", 1), "JSONDecodeError"),
     (urllib.error.URLError("unknown url type: x"), "URLError")],
    ids=["status", "timeout", "timeout-in-urlerror", "refused", "broken-answer", "urlerror-text"],
)
def test_error_type_follows_opentelemetrys_error_type(exc: BaseException, expected: str) -> None:
    from rollout_cli.sandbox.app_main import error_type

    assert error_type(exc) == expected


# --- faults by caller -----------------------------------------------------------------------------


@pytest.mark.parametrize("via", ["gateway", "direct"])
def test_a_fault_via_one_caller_fails_only_that_path_in_the_apps_metrics(clean, via: str) -> None:
    other = "direct" if via == "gateway" else "gateway"
    result = cli(clean, "sandbox", "fault", MODEL, "--status", "500", "--via", via, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["faults"]["qwen/qwen3-coder:free"]["via"] == via
    before = app_metrics(clean)
    send(clean)
    after = app_metrics(clean)

    sent = {path: requests(after, path) - requests(before, path) for path in PATHS}
    failed = {path: failures(after, path) - failures(before, path) for path in PATHS}
    assert sent[via] > 0 and failed[via] == sent[via]  # every request of that path failed...
    assert sent[other] > 0 and failed[other] == 0  # ...and none of the other's
    by_caller = clean.admin.stats()["by_caller"]
    assert by_caller[via]["by_status"].get("500", 0) > 0
    assert "500" not in by_caller[other]["by_status"]


def test_fault_via_must_name_a_caller_and_is_refused_with_clear(box) -> None:
    wrong = cli(box, "sandbox", "fault", MODEL, "--status", "500", "--via", "app")
    assert wrong.exit_code == 2
    assert "--via is 'app'; use one of gateway, direct, both" in wrong.stderr
    clear = cli(box, "sandbox", "fault", "--clear", MODEL, "--via", "gateway")
    assert clear.exit_code == 2
    assert "--clear takes no --via; drop them" in clear.stderr
    catalog = cli(box, "sandbox", "fault", MODEL, "--retired", "--via", "gateway")
    assert catalog.exit_code == 2
    assert "is the same for every caller; drop via 'gateway'" in catalog.stderr
    assert box.admin.faults() == {}


# --- Prometheus in the sandbox --------------------------------------------------------------------


def query(url: str, promql: str) -> list[dict]:  # type: ignore[type-arg]
    with urllib.request.urlopen(f"{url}/api/v1/query?query={urllib.parse.quote(promql)}", timeout=5) as answer:
        body = json.loads(answer.read())
    assert body["status"] == "success", body
    return list(body["data"]["result"])


def poll(url: str, promql: str, enough: float, timeout: float = 30.0) -> float:
    """The query's value once it reaches `enough`, or the last one seen after `timeout` s (scraped every 1 s)."""
    deadline = time.monotonic() + timeout
    seen = 0.0
    while time.monotonic() < deadline:
        result = query(url, promql)
        seen = float(result[0]["value"][1]) if result else 0.0
        if seen >= enough:
            break
        time.sleep(0.25)
    return seen


def test_prometheus_in_the_sandbox_answers_for_the_apps_and_the_gateways_counters_under_traffic(clean) -> None:
    url = clean.prometheus_url
    assert url and url.startswith("http://127.0.0.1:")
    send(clean)
    metrics = app_metrics(clean)
    for path in PATHS:
        promql = f'sum(llm_requests_total{{job="app",path="{path}"}})'
        assert poll(url, promql, requests(metrics, path)) == requests(metrics, path)
    gateway = poll(url, 'sum(litellm_proxy_total_requests_metric_total{job="litellm"})', 1)
    assert gateway >= 1

    deadline = time.monotonic() + 30  # a scrape of a busy gateway may time out now and then: the next one counts
    while True:
        status = json.loads(cli(clean, "sandbox", "status", "--json").stdout)["prometheus"]
        if status["targets"] == {"litellm": "up", "app": "up", "rollout": "up"} or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert status["url"] == url and status["running"] and status["ready"]
    assert status["targets"] == {"litellm": "up", "app": "up", "rollout": "up"}
    state = json.loads((clean.root / ".rollout" / "sandbox.json").read_text())
    assert state["prometheus"]["url"] == url and state["prometheus"]["process"]["pid"] == status["pid"]


def test_prometheus_reads_the_gateways_key_from_the_sandboxs_key_file_never_from_its_config(box) -> None:
    config = (box.root / "prometheus" / "prometheus.yml").read_text()
    assert box.master_key not in config
    assert f"credentials_file: {box.key_file}" in config
    assert stat.S_IMODE(box.key_file.stat().st_mode) == 0o600
    assert not (box.root / "prometheus" / "litellm-master-key").exists()  # no second copy of the key
    checked = subprocess.run(["promtool", "check", "config", str(box.root / "prometheus" / "prometheus.yml")],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr


@pytest.mark.parametrize("shipped", ["prometheus.yml", "prometheus-swarm.yml"])
def test_promtool_accepts_the_shipped_scrape_config(tmp_path: Path, shipped: str) -> None:
    """deploy/prometheus.yml (and the swarm's) as an operator installs it: the key file beside it (.ci/run too)."""
    shutil.copy(REPO / "deploy" / shipped, tmp_path / "prometheus.yml")
    (tmp_path / "litellm-master-key").touch(mode=0o600)
    checked = subprocess.run(["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
                             capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    (tmp_path / "litellm-master-key").unlink()  # and promtool does look for it
    assert subprocess.run(["promtool", "check", "config", str(tmp_path / "prometheus.yml")],
                          capture_output=True, timeout=60).returncode != 0


def test_the_swarm_scrape_config_lists_every_replica_as_a_target() -> None:
    """Each replica its own target (port base + slot), and the same jobs as deploy/prometheus.yml."""
    swarm = yaml.safe_load((REPO / "deploy" / "prometheus-swarm.yml").read_text())
    single = yaml.safe_load((REPO / "deploy" / "prometheus.yml").read_text())
    assert [j["job_name"] for j in swarm["scrape_configs"]] == [j["job_name"] for j in single["scrape_configs"]]
    litellm = next(j for j in swarm["scrape_configs"] if j["job_name"] == "litellm")
    assert [(c["targets"], c["labels"]) for c in litellm["static_configs"]] == [
        (["127.0.0.1:4001"], {"replica": "1"}), (["127.0.0.1:4002"], {"replica": "2"})]
