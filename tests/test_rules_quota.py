"""The free-quota rules (core/quota.py): the ledger, rollout's share, the reset; tables, then `rollout quota`."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from rollout_cli.core.quota import (
    DAY_S,
    PER_MINUTE_LIMIT,
    QuotaLedger,
    QuotaPayload,
    QuotaRefused,
    clock_text,
    forecast,
    next_reset,
    quota_status,
    require_room,
    utc_day,
)
from rollout_cli.core.workspace import QuotaSettings
from rollout_cli.errors import ExitCode
from support import make_world

NOON = datetime(2026, 3, 5, 12, 0, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def ledger_at(tmp_path, now: float = NOON) -> QuotaLedger:
    return QuotaLedger(tmp_path, clock=Clock(now))


@pytest.mark.parametrize(("ts", "day", "reset", "clock"), [
    (NOON, "2026-03-05", datetime(2026, 3, 6, tzinfo=UTC).timestamp(), "12:00 UTC"),
    (datetime(2026, 3, 5, tzinfo=UTC).timestamp(), "2026-03-05", datetime(2026, 3, 6, tzinfo=UTC).timestamp(), "00:00 UTC"),
    (datetime(2026, 3, 5, 23, 59, 59, tzinfo=UTC).timestamp(), "2026-03-05", datetime(2026, 3, 6, tzinfo=UTC).timestamp(),
     "23:59 UTC"),
])
def test_the_day_and_its_reset_are_utc(ts, day, reset, clock):
    assert (utc_day(ts), next_reset(ts), clock_text(ts)) == (day, reset, clock)


def test_usage_counts_today_per_model_and_the_last_minute(tmp_path):
    clock = Clock(NOON - DAY_S)
    ledger = QuotaLedger(tmp_path, clock=clock)
    ledger.record("a", 200)  # yesterday: another file
    for offset, model in ((-120, "a"), (-61, "b"), (-30, "a"), (0, "a")):
        clock.now = NOON + offset
        ledger.record(model, 200)
    clock.now = NOON
    usage = ledger.usage()
    assert (usage.day, usage.used, usage.by_model) == ("2026-03-05", 4, {"a": 3, "b": 1})
    assert usage.last_minute == 2  # 30 s and 0 s ago; 61 s ago is out
    assert usage.reset_ts == next_reset(NOON) and usage.account is None
    assert usage.to_json()["used"] == 4


def test_the_accounts_last_ratelimit_is_remembered_until_a_free_model_answers(tmp_path):
    clock = Clock(NOON)
    ledger = QuotaLedger(tmp_path, clock=clock)
    ledger.record("a", 429, ratelimit={"limit": 50, "remaining": 0, "reset": 1})
    assert ledger.usage().account == {"limit": 50, "remaining": 0, "reset": 1, "seen_ts": NOON}
    ledger.record("a", 500)
    assert "answered_after" not in ledger.usage().account
    ledger.record("a", 200)
    assert ledger.usage().account["answered_after"] is True


@pytest.mark.parametrize(("daily_limit", "share", "used", "planned", "fits", "left"), [
    (50, 0.2, 0, 10, True, 10),
    (50, 0.2, 5, 5, True, 5),  # exactly the share: fits
    (50, 0.2, 5, 6, False, 5),
    (50, 0.2, 12, 0, False, 0),  # over the share already: nothing fits, nothing left
    (1000, 0.2, 199, 1, True, 1),
    (3, 0.5, 1, 1, False, 0),  # the allowance is 1 (1.5 rounded down)
])
def test_forecast_against_rollouts_share(tmp_path, daily_limit, share, used, planned, fits, left):
    ledger = ledger_at(tmp_path)
    for _ in range(used):
        ledger.record("m", 200)
    settings = QuotaSettings(daily_limit, share)
    found = forecast(ledger, settings, "smoke", planned)
    assert (found.fits, found.left, found.used, found.allowance) == (fits, left, used, settings.allowance)
    assert found.to_json()["fits"] is fits and found.to_json()["resets_at"] == "00:00 UTC"
    assert found.text.startswith(f"smoke would send {planned} request(s); rollout has used {used} of its")


def test_require_room_refuses_with_exit_3_saying_when_it_resets(tmp_path):
    ledger = ledger_at(tmp_path, NOON + 30 * 60)
    settings = QuotaSettings(50, 0.2)
    for _ in range(9):
        ledger.record("m", 200)
    assert require_room(ledger, settings, "report", 1).fits
    with pytest.raises(QuotaRefused) as refused:
        require_room(ledger, settings, "report", 2)
    assert refused.value.exit_code == ExitCode.HOLD
    assert str(refused.value) == (
        "refused: report would send 2 request(s); rollout has used 9 of its 10 today (20% of 50), 1 left;"
        " the quota resets at 00:00 UTC (in 11h30m); wait for the reset, narrow the run (--model), or raise"
        " openrouter.rollout_share / openrouter.daily_limit in rollout.yaml")


@pytest.mark.parametrize(("account", "exhausted"), [
    (None, False),
    ({"remaining": 0}, True),
    ({"remaining": 1}, False),
    ({"remaining": 0, "answered_after": True}, False),
    ({"remaining": 0, "reset": (next_reset(NOON) - 60) * 1000}, True),  # resets later today... in the current day
    ({"remaining": 0, "reset": (next_reset(NOON) - DAY_S - 60) * 1000}, False),  # a reset that already passed
    ({"remaining": 0, "reset": (next_reset(NOON) - DAY_S) * 1000}, False),  # exactly today's 00:00: already passed
])
def test_the_account_is_exhausted_only_when_openrouter_said_0_left_since_the_last_reset(tmp_path, account, exhausted):
    usage = ledger_at(tmp_path).usage()
    usage.account = account
    assert QuotaPayload(QuotaSettings(), usage, "ledger").account_exhausted is exhausted


@pytest.mark.parametrize(("used", "code"), [(0, ExitCode.OK), (9, ExitCode.OK), (10, ExitCode.HOLD), (11, ExitCode.HOLD)])
def test_quota_status_holds_once_rollouts_share_is_spent(tmp_path, used, code):
    ledger = QuotaLedger(tmp_path)  # quota_status reads today's file by the real clock
    for _ in range(used):
        ledger.record("m", 200)
    result = quota_status(tmp_path, QuotaSettings(50, 0.2))
    assert result.exit_code == code
    payload = result.payload.to_json()
    assert (payload["used"], payload["left"], payload["allowance"]) == (used, max(10 - used, 0), 10)
    assert payload["per_minute"]["limit"] == PER_MINUTE_LIMIT
    assert result.messages[0].startswith(f"rollout used {used} of its 10 requests today (20% of 50); {max(10 - used, 0)} left")


def test_quota_status_holds_when_openrouter_says_the_account_is_exhausted(tmp_path):
    QuotaLedger(tmp_path).record("m", 429, ratelimit={"limit": 50, "remaining": 0})
    result = quota_status(tmp_path, QuotaSettings(50, 0.2))
    assert result.exit_code == ExitCode.HOLD
    assert result.messages[1] == "OpenRouter free quota exhausted: 0 of 50 left today, resets at 00:00 UTC"


# --- through `rollout quota` -----------------------------------------------------------


def test_rollout_quota_exits_3_once_rollouts_share_is_spent(tmp_path):
    world = make_world(tmp_path, 10)
    config = world.ws / "rollout.yaml"
    config.write_text(config.read_text().replace("daily_limit: 100000", "daily_limit: 10").replace(
        "rollout_share: 1.0", "rollout_share: 0.2"))
    ledger = QuotaLedger(world.ws / ".rollout")
    ledger.record("glm-4.5-air", 200)
    first = world.cli("quota", "--json")
    assert first.exit_code == 0, first.output
    assert json.loads(first.output)["left"] == 1
    ledger.record("glm-4.5-air", 200)
    spent = world.cli("quota")
    assert spent.exit_code == 3, spent.output
    assert "rollout used 2 of its 2 requests today (20% of 10); 0 left" in spent.output


def test_days_and_reset_times_are_utc_whatever_the_machines_zone(monkeypatch):
    import time

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        assert (utc_day(NOON + 11 * 3600), clock_text(NOON + 11 * 3600)) == ("2026-03-05", "23:00 UTC")
    finally:
        monkeypatch.undo()
        time.tzset()


def test_the_ledger_line_and_the_minute_window(tmp_path):
    clock = Clock(NOON - 60.0004)
    ledger = QuotaLedger(tmp_path, clock=clock)
    ledger.record("m", 200)  # 60 s before the read: out of the last minute
    clock.now = NOON - 59.5
    ledger.record("m", None)
    clock.now = NOON
    path = tmp_path / "quota" / "2026-03-05.jsonl"
    kept = ("ts", "model", "status")
    assert [{k: v for k, v in json.loads(line).items() if k in kept} for line in path.read_text().splitlines()] == [
        {"ts": round(NOON - 60.0004, 3), "model": "m", "status": 200},
        {"ts": NOON - 59.5, "model": "m", "status": None}]
    assert ledger.usage().last_minute == 1


def test_lines_without_a_time_are_skipped(tmp_path):
    (tmp_path / "quota").mkdir()
    (tmp_path / "quota" / "2026-03-05.jsonl").write_text('{"model": "m"}\n')
    ledger = ledger_at(tmp_path)
    usage = ledger.usage()
    assert (usage.used, usage.last_minute, usage.skipped) == (0, 0, 1)


def test_json_shapes(tmp_path):
    ledger = ledger_at(tmp_path)
    ledger.record("m", 200)
    found = forecast(ledger, QuotaSettings(50, 0.2), "smoke", 3)
    reset = next_reset(NOON)
    assert found.to_json() == {"command": "smoke", "planned": 3, "used": 1, "left": 9, "allowance": 10,
                               "daily_limit": 50, "rollout_share": 0.2, "fits": True, "resets_at": "00:00 UTC",
                               "reset_ts": reset}
    usage = ledger.usage()
    assert usage.to_json() == {"day": "2026-03-05", "used": 1, "held": 0, "last_minute": 1, "by_model": {"m": 1},
                               "account": None, "reset_ts": reset, "skipped": 0}
    assert QuotaPayload(QuotaSettings(50, 0.2), usage, "the-ledger").to_json() == {
        "day": "2026-03-05", "daily_limit": 50, "rollout_share": 0.2, "allowance": 10, "used": 1, "held": 0, "left": 9,
        "by_model": {"m": 1}, "per_minute": {"used": 1, "limit": PER_MINUTE_LIMIT}, "account": None,
        "account_exhausted": False, "resets_at": "00:00 UTC", "reset_ts": reset, "ledger": "the-ledger", "skipped_lines": 0}


def test_quota_status_names_its_ledger_and_the_accounts_own_limit(tmp_path):
    QuotaLedger(tmp_path).record("m", 429, ratelimit={"limit": 1000, "remaining": 0})
    result = quota_status(tmp_path, QuotaSettings(50, 0.2))
    assert result.command == "quota"
    assert result.payload.to_json()["ledger"] == str(tmp_path / "quota" / f"{result.payload.usage.day}.jsonl")
    assert result.messages[1].startswith("OpenRouter free quota exhausted: 0 of 1000 left today")


def test_a_reservation_holds_rollouts_share_for_other_runs_until_released(tmp_path):
    settings = QuotaSettings(50, 0.2)
    first, second = ledger_at(tmp_path), ledger_at(tmp_path)
    assert first.run != second.run
    assert require_room(first, settings, "advance", 6).fits
    assert (second.usage().held, second.usage().used) == (6, 0)
    seen = forecast(second, settings, "smoke", 4)
    assert (seen.used, seen.held, seen.fits, seen.left) == (6, 6, True, 4)
    assert "rollout has used 6 (6 held by checks running now) of its 10 today" in seen.text
    with pytest.raises(QuotaRefused):
        require_room(second, settings, "smoke", 5)
    assert second.reserved_day is None  # refused: nothing held for it
    first.record("m", 200)  # a reserved request sent: spent, no longer held
    assert (second.usage().held, second.usage().used) == (5, 1)
    first.release()
    assert (second.usage().held, first.reserved_day) == (0, None)
    assert require_room(second, settings, "smoke", 9).fits


def test_a_runs_own_reservation_counts_towards_what_it_plans(tmp_path):
    settings = QuotaSettings(50, 0.2)
    ledger = ledger_at(tmp_path)
    require_room(ledger, settings, "advance", 3)
    require_room(ledger, settings, "advance", 5)  # 3 already held: 2 more
    lines = [json.loads(line) for line in (tmp_path / "quota" / "2026-03-05.jsonl").read_text().splitlines()]
    assert [line["reserve"] for line in lines] == [3, 2] and {line["run"] for line in lines} == {ledger.run}
    assert lines[0]["command"] == "advance" and lines[0]["writer"]["pid"] > 0
    assert ledger_at(tmp_path).usage().held == 5
    require_room(ledger, settings, "advance", 4)  # within what it holds: nothing written
    assert len((tmp_path / "quota" / "2026-03-05.jsonl").read_text().splitlines()) == 2


def test_quota_status_says_what_is_held_and_what_was_skipped(tmp_path):
    settings = QuotaSettings(50, 0.2)
    QuotaLedger(tmp_path).reserve(settings, "smoke", 3)
    ledger = QuotaLedger(tmp_path)
    with ledger.path(utc_day(ledger.clock())).open("a") as out:
        out.write('{"ts": "noon", "model": "m"}\n')
    result = quota_status(tmp_path, settings)
    assert result.payload.to_json()["held"] == 3 and result.payload.left == 7
    assert "3 more held by rollout checks running now" in result.messages
    assert any(m.endswith("skipped 1 line(s) that are not ledger records (a torn write or a hand edit);"
                          " they are not counted: check the file") for m in result.messages)


@pytest.mark.parametrize("fraction", [0.0, 0.0004, 0.0006, 0.0009])
def test_a_request_just_recorded_is_in_the_last_minute(tmp_path, fraction):
    # Read back within the same millisecond: a time rounded up would lie in the reader's future.
    wall, mono = 1_764_000_000.0 + fraction, 5_000.0 + fraction
    ledger = QuotaLedger(tmp_path, clock=lambda: wall, monotonic=lambda: mono)
    ledger.record("glm-4.5-air", 200)
    usage = ledger.usage()
    assert (usage.used, usage.last_minute) == (1, 1)
