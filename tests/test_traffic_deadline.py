"""verify.traffic at its deadline: a scrape cut short by it must not hide traffic the whole readings saw."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from rollout_cli.errors import CheckFailed
from rollout_cli.playbook import traffic
from rollout_cli.playbook.traffic import NotVerifiable, TrafficWatch


def watch_reading(readings: list[float | None], monkeypatch: pytest.MonkeyPatch) -> TrafficWatch:
    """A watch whose scrapes answer `readings` in turn; a None stands for a scrape that failed."""
    monkeypatch.setattr(traffic, "POLL_S", 0.01)
    ws = SimpleNamespace(gateway=SimpleNamespace(url="http://127.0.0.1:9"))
    watch = TrafficWatch(ws)  # type: ignore[arg-type]
    answers = iter(readings)

    def gateway_count() -> float:
        value = next(answers, None)
        if value is None:
            raise NotVerifiable("not verifiable: no whole answer within 0.05 s")
        return value

    watch.gateway_count = gateway_count  # type: ignore[method-assign]
    return watch


def test_traffic_still_rising_when_the_last_scrape_is_cut_short_fails_the_step(monkeypatch):
    # rising until the deadline, then every scrape fails: the app still sends, the reload hint is due
    watch = watch_reading([float(n) for n in range(1, 10)], monkeypatch)
    with pytest.raises(CheckFailed, match="still sends"):
        watch.until_stopped(time.monotonic(), deadline=0.3, quiet=5.0)


def test_no_rise_seen_and_the_scrapes_failing_is_not_verifiable(monkeypatch):
    watch = watch_reading([5.0, 5.0], monkeypatch)
    with pytest.raises(NotVerifiable, match="by the step's deadline"):
        watch.until_stopped(time.monotonic(), deadline=0.3, quiet=5.0)

