"""The window's PromQL against a real Prometheus: counts over a window, and where a decision's window ends.

History is backfilled with `promtool tsdb create-blocks-from openmetrics` (support.prometheus_server),
one sample every 15 s, so each case's true count is known to the request. The freshness tests let
Prometheus scrape a tiny exporter in the test, whose counter the test moves.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from rollout_cli.rollout.promql import Prometheus, scraped_by, window_count
from support import QuietServer, openmetrics, prometheus_server, wait_until

STEP = 15  # seconds between backfilled samples
WINDOW = 600
HISTORY = 3600


def counter(at: float, first: float, last: float, per_step: float, reset_at: float | None = None,
            born_with: float = 0.0) -> list[tuple[float, float]]:
    """A counter's samples from `first` to `last` (seconds before `at`), growing `per_step` per scrape.

    `born_with`: its value at its first scrape (requests counted before Prometheus first saw it);
    `reset_at`: seconds before `at` when its process restarted (the value starts again from zero).
    """
    points, value = [], born_with - per_step
    for t in range(int(first), int(last) - 1, -STEP):
        if reset_at is not None and t <= reset_at < t + STEP:
            value = 0.0
        value += per_step
        points.append((at - t, value))
    return points


def in_window(per_step: float, first: float, last: float) -> float:
    """What a counter growing `per_step` per scrape counted between the window's start and `last` s before the end."""
    return per_step * len([t for t in range(int(first), int(last) - 1, -STEP) if t < WINDOW])


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Prometheus, float, dict[str, float]]]:
    at = float(int(time.time()) - 120)
    cases = {
        # alive all along: its count over the window is exact, no extrapolation
        "steady": (counter(at, HISTORY, 0, 3), in_window(3, HISTORY, 0)),
        # LiteLLM makes a series at its first request: first scraped at 12, mid-window
        "born": (counter(at, 300, 0, 2, born_with=12), 12 + in_window(2, 300 - STEP, 0)),
        # a restart mid-window: counted before and after it (the first value after it included)
        "reset": (counter(at, HISTORY, 0, 5, reset_at=300), in_window(5, HISTORY, 0)),
        # no longer exported after a restart (no request since for that label set): counted up to its last sample
        "gone": (counter(at, HISTORY, 200, 4), in_window(4, HISTORY, 200)),
        # gone long before the window: nothing
        "old": (counter(at, HISTORY, 3000, 9), 0.0),
        # born in the window, then restarted: increase() across the reset, less its value at its first scrape
        "born, reset": (counter(at, 400, 0, 2, born_with=4, reset_at=200), 4 + in_window(2, 400 - STEP, 0)),
        # a restart just before the window, the series made again in it: from zero, not from the old value
        "restarted before": (counter(at, HISTORY, 650, 10) + counter(at, 400, 0, 1, born_with=6), 6 + in_window(1, 400 - STEP, 0)),
        # the same, its new value soon above the old one: still from zero, not the difference
        "restarted, overtaken": (counter(at, 1000, 615, 1) + counter(at, 585, 0, 2, born_with=3), 3 + in_window(2, 585 - STEP, 0)),
        # gone before the window, and made again in it (a restarted gateway's first request): from zero
        "reborn": (counter(at, HISTORY, 1500, 6) + counter(at, 100, 0, 1, born_with=3), 3 + in_window(1, 100 - STEP, 0)),
    }
    scraped = {"job": "litellm", "instance": "127.0.0.1:4000"}
    # a target Prometheus began scraping mid-window, its counter at 1000 by then: counted from that first scrape
    late = {"job": "litellm", "instance": "127.0.0.1:4001"}
    series = [({"case": c, **scraped}, s) for c, (s, _) in cases.items()]
    series.append(({"case": "late target", **late}, counter(at, 300, 0, 1, born_with=1000)))
    text = openmetrics({
        "rollout_test_requests": ("counter", series),
        "up": ("gauge", [(scraped, counter(at, HISTORY, 0, 0, born_with=1)), (late, counter(at, 300, 0, 0, born_with=1))]),
    })
    with prometheus_server(tmp_path_factory.mktemp("promql"), backfill=text) as url:
        yield Prometheus(url), at, {c: truth for c, (_, truth) in cases.items()} | {"late target": in_window(1, 300 - STEP, 0)}


def counted(prom: Prometheus, at: float, expr: str) -> dict[str, float]:
    return {s.labels.get("case", ""): s.value for s in prom.query(expr, at)}


def test_a_window_counts_every_series_the_way_it_lived(history) -> None:
    prom, at, truth = history
    got = counted(prom, at, window_count("rollout_test_requests_total", WINDOW, by="case"))
    assert set(got) == set(truth) - {"old"}
    for case in ("steady", "born", "gone", "reborn", "restarted before", "restarted, overtaken"):
        assert got[case] == truth[case], case  # exact: differences of samples, no extrapolation
    # across a reset: increase(), extrapolated to the window's edges by less than a scrape interval's worth
    assert truth["reset"] <= got["reset"] <= truth["reset"] + 5, got["reset"]
    assert truth["born, reset"] - 4 <= got["born, reset"] <= truth["born, reset"], got["born, reset"]
    assert truth["late target"] <= got["late target"] <= truth["late target"] + 2, got["late target"]


def test_increase_alone_misses_what_a_series_counted_before_its_first_scrape(history) -> None:
    """Why window_count exists: the born series' first value, and the reborn one's, are lost to increase()."""
    prom, at, truth = history
    naive = counted(prom, at, f"sum by (case) (increase(rollout_test_requests_total[{WINDOW}s]))")
    assert naive["born"] < truth["born"] - 5 and naive["reborn"] < truth["reborn"]


def test_summed_the_cases_add_up(history) -> None:
    prom, at, truth = history
    [total] = prom.query(window_count("rollout_test_requests_total", WINDOW), at)
    assert sum(truth.values()) - 4 <= total.value <= sum(truth.values()) + 5


# --- freshness: where a decision's window ends ------------------------------------------------------


@contextmanager
def exporter() -> Iterator[tuple[str, list[int]]]:
    """A /metrics with one counter the test moves (count[0]); a negative count answers HTTP 500 (a failed scrape)."""
    count = [0]

    class Metrics(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if count[0] < 0:
                self.send_error(500)
                return
            body = (f"# TYPE llm_requests_total counter\nllm_requests_total{{path=\"gateway\"}} {count[0]}\n").encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = QuietServer(("127.0.0.1", 0), Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/metrics", count
    finally:
        server.shutdown()
        server.server_close()


def scraped_since(prom: Prometheus, since: float) -> bool:
    return any(s.value > since for s in prom.query("timestamp(up) * up", time.time()))


def test_a_healthy_decision_does_not_wait_and_what_came_after_the_last_scrape_is_in_the_next_window(
        tmp_path: Path) -> None:
    with exporter() as (target, count), prometheus_server(tmp_path, targets=[{"job": "app", "url": target}]) as url:
        prom = Prometheus(url)
        wait_until(lambda: prom.query("llm_requests_total", time.time()), 30, "Prometheus's first scrape")
        opened = time.time()
        wait_until(lambda: scraped_since(prom, opened), 30, "a scrape inside the window")
        count[0] = 42  # answered after Prometheus's last scrape: in the app, not yet in Prometheus
        decided = time.time()
        fresh = scraped_by(prom, decided, ("llm_requests_total",), wait_s=30)
        assert fresh.waited_s == 0 and fresh.end == decided and fresh.behind == [] and fresh.note is None
        assert fresh.to_json()["targets"] == 1 and 0 <= fresh.to_json()["lag_s"] <= 1.5
        [first] = prom.query(window_count("llm_requests_total", decided - opened), decided)
        # the next decision's window begins where this one ended: the 42 are counted there, exactly once
        wait_until(lambda: scraped_since(prom, decided), 30, "a scrape after the decision")
        later = time.time()
        [second] = prom.query(window_count("llm_requests_total", later - decided), later)
        assert first.value + second.value == 42 and second.value > 0


def test_a_target_whose_last_scrape_failed_is_waited_for_within_the_bound_then_named(tmp_path: Path) -> None:
    with exporter() as (target, count), prometheus_server(tmp_path, targets=[{"job": "app", "url": target}]) as url:
        prom = Prometheus(url)
        wait_until(lambda: prom.query("llm_requests_total", time.time()), 30, "Prometheus's first scrape")
        count[0] = -1  # every scrape fails from now on
        failing = time.time()
        wait_until(lambda: not scraped_since(prom, 0) or not prom.query("up == 1", time.time()), 30,
                   "a failed scrape")
        assert time.time() - failing < 30
        late = scraped_by(prom, time.time(), ("llm_requests_total",), wait_s=1.5)
        assert late.waited_s >= 1.0 and len(late.behind) == 1 and late.behind[0].startswith("app 127.0.0.1:")
        assert late.note is not None and "last scrape of app 127.0.0.1:" in late.note and "failed" in late.note

        count[0] = 7  # it recovers: the decision waits for the good scrape and ends its window there
        decided = time.time()
        fresh = scraped_by(prom, decided, ("llm_requests_total",), wait_s=5)
        assert fresh.behind == [] and fresh.note is None and fresh.end > decided
