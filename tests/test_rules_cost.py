"""The cost guard's rules (checks/cost.py): a :free id, and a zero price in a real /models catalog on loopback."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from rollout_cli.checks.cost import FREE, PAID, catalog_urls, check_cost
from rollout_cli.gateway.topology import OPENROUTER_API_BASE, GatewayModel, Topology
from support import QuietServer

FREE_PRICE = {"prompt": "0", "completion": "0", "request": "0", "image": "0"}


@pytest.fixture
def catalog(catalog_server) -> tuple[str, dict]:
    """An OpenRouter-shaped /models on 127.0.0.1: (api base, {id: pricing}) that a test fills in."""
    base, prices = catalog_server
    prices.clear()
    return base, prices


@pytest.fixture(scope="module")
def catalog_server() -> Iterator[tuple[str, dict]]:
    prices: dict[str, dict] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.startswith("/slow/"):
                time.sleep(2.0)  # a catalog that hangs: the guard's timeout must cut it short
            body = json.dumps({"data": [{"id": k, "pricing": v} for k, v in prices.items()]}).encode()
            self.send_response(200 if self.path.endswith("/v1/models") else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = QuietServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/v1", prices
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def model(alias: str, upstream: str, base: str | None) -> GatewayModel:
    return GatewayModel(alias, f"openrouter/{upstream}", base)


# upstream id, its pricing in the catalog (None: not listed) -> status, verified, reason
PRICES = [
    pytest.param("z-ai/glm:free", FREE_PRICE, FREE, True, "free: :free id and zero price in OpenRouter's /models",
                 id="free and priced at zero"),
    pytest.param("z-ai/glm:free", {"prompt": "0", "completion": "0", "request": "0.002"}, PAID, False,
                 "OpenRouter prices it at request 0.002 USD/token", id="a per-request price"),
    pytest.param("z-ai/glm:free", {"prompt": "0.000001", "completion": "0.000002"}, PAID, False,
                 "OpenRouter prices it at prompt 0.000001, completion 0.000002 USD/token", id="per-token prices"),
    pytest.param("z-ai/glm:free", {"prompt": "0", "image": "0.01"}, FREE, True,
                 "free: :free id and zero price in OpenRouter's /models", id="a price the request never pays"),
    pytest.param("z-ai/glm:free", {"prompt": "n/a"}, PAID, False, "OpenRouter prices it at prompt n/a USD/token",
                 id="an unreadable price is never free"),
    pytest.param("z-ai/glm:free", None, FREE, False,
                 "z-ai/glm:free is not in OpenRouter's /models (retired): it cannot be billed", id="retired"),
    pytest.param("z-ai/glm", FREE_PRICE, PAID, False, "openrouter/z-ai/glm is not an OpenRouter :free model",
                 id="a paid id priced at zero is still not free"),
    pytest.param("z-ai/glm", {"prompt": "0.1"}, PAID, False,
                 "openrouter/z-ai/glm is not an OpenRouter :free model; OpenRouter prices it at prompt 0.1 USD/token",
                 id="a paid id and a price"),
    pytest.param("z-ai/glm", None, PAID, False, "openrouter/z-ai/glm is not an OpenRouter :free model",
                 id="a paid id not listed"),
]


@pytest.mark.parametrize(("upstream", "price", "status", "verified", "reason"), PRICES)
def test_cost_guard_judges_the_id_and_the_catalogs_price(catalog, upstream, price, status, verified, reason):
    base, prices = catalog
    if price is not None:
        prices[upstream] = price
    report = check_cost(Topology((model("glm", upstream, base),)))
    (cost,) = report.models
    assert cost.to_json() == {"alias": "glm", "model": f"openrouter/{upstream}", "status": status,
                              "free_id": upstream.endswith(":free"), "price": price, "verified": verified,
                              "reason": reason}
    assert report.ok is (status == FREE) and report.paid == ([] if status == FREE else ["glm"])
    assert report.catalogs == [{"url": f"{base}/models", "reachable": True, "error": None}] and report.requests == 1
    assert report.to_json() == {"ok": report.ok, "paid": report.paid, "models": [cost.to_json()],
                                "catalogs": report.catalogs}


def test_an_api_base_with_a_trailing_slash_reads_the_same_catalog(catalog):
    base, prices = catalog
    prices["z-ai/glm:free"] = FREE_PRICE
    report = check_cost(Topology((model("glm", "z-ai/glm:free", base + "/"), model("kimi", "z-ai/glm:free", base))))
    assert [m.verified for m in report.models] == [True, True] and report.requests == 1


def test_a_catalog_that_hangs_is_cut_short_by_the_timeout(catalog):
    base, _ = catalog
    report = check_cost(Topology((model("glm", "z-ai/glm:free", base.replace("/api/", "/slow/")),)), timeout=0.3)
    assert report.catalogs[0]["reachable"] is False and "timed out" in report.catalogs[0]["error"]
    assert (report.models[0].status, report.models[0].verified) == (FREE, False)


def test_ids_alone_without_the_catalog():
    topology = Topology((model("glm", "z-ai/glm:free", None), GatewayModel("gpt", "openai/gpt-4o")))
    report = check_cost(topology, fetch=False)
    assert [(m.status, m.verified) for m in report.models] == [(FREE, False), (PAID, False)]
    assert report.models[0].reason == "free by its :free id; the OpenRouter catalog was not reached to confirm the price"
    assert report.models[1].reason == "openai/gpt-4o is not an OpenRouter model, so it is not free"
    assert report.requests == 0 and report.paid == ["gpt"] and not report.ok
    assert report.to_json()["paid"] == ["gpt"] and report.to_json()["models"][0]["status"] == FREE


def test_an_unreachable_catalog_leaves_the_id_rule(catalog):
    base, _ = catalog
    report = check_cost(Topology((model("glm", "z-ai/glm:free", base + "/nowhere"),)), timeout=5)
    assert report.catalogs[0]["reachable"] is False and report.catalogs[0]["error"]
    assert (report.models[0].status, report.models[0].verified) == (FREE, False)


def test_one_catalog_per_distinct_openrouter_base():
    topology = Topology((model("a", "x/a:free", "http://127.0.0.1:1/api/v1/"), model("b", "x/b:free", "http://127.0.0.1:1/api/v1"),
                         model("c", "x/c:free", None), GatewayModel("d", "openai/gpt")))
    assert catalog_urls(topology) == ["http://127.0.0.1:1/api/v1/models", f"{OPENROUTER_API_BASE.rstrip('/')}/models"]
