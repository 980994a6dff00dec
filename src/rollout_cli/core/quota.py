"""The quota ledger: every request `rollout` itself sends upstream, counted per UTC day.

OpenRouter's free tier is one quota for the whole account (50 requests a day
below $10 of credits bought, 1,000 above; 20 a minute), shared by the app and
by rollout's own checks. The ledger (`.rollout/quota/YYYY-MM-DD.jsonl`, one
line per completion, appended in one write) lets rollout cap its own share
(`openrouter.rollout_share` of `openrouter.daily_limit`) and say when the
quota resets. Sandbox traffic is app traffic: it is not counted.

Several `rollout` runs may check at once (CI jobs, an operator, `watch
--probe`), so a run reserves what it plans to send before sending it: check
and reservation happen under one lock (`quota/lock`), and every other run
counts the reservation as spent until its owner releases it or dies. A
ledger is read line by line: a line that is not one of rollout's records (a
torn write, a hand edit, a wrong type) is skipped and counted, never trusted,
and a ledger of any size is read in constant memory.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rollout_cli.core.audit import append_line, finite_number, json_lines
from rollout_cli.core.result import Result
from rollout_cli.core.workspace import QuotaSettings
from rollout_cli.errors import ExitCode, RolloutError
from rollout_cli.io.lock import WorkspaceLock
from rollout_cli.io.process import ProcessIdentity, ProcessRecord, boot_id

LEDGER_DIR = "quota"
PER_MINUTE_LIMIT = 20  # OpenRouter's account-wide limit on :free models
DAY_S = 86_400
MAX_LINE_BYTES = 4096  # rollout's lines are about 100 bytes; a longer one is not rollout's
# A day of rollout's own requests is a few hundred lines at most (the free tier allows 50 or 1,000 a day): a
# day's file over this was not written by rollout alone, and reading it would cost time on every check.
MAX_LEDGER_BYTES = 8 << 20
_RATE_KEYS = ("limit", "remaining", "reset")
FOREIGN_RESERVATION_S = 900


class QuotaRefused(RolloutError):
    """A command would spend more of the free quota than rollout's share: HOLD, try after the reset."""

    exit_code = ExitCode.HOLD


def utc_day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d")


def next_reset(ts: float) -> float:
    """OpenRouter's daily quota resets at 00:00 UTC."""
    return (math.floor(ts / DAY_S) + 1) * DAY_S


def clock_text(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M UTC")


@dataclass
class Usage:
    """Today's spending, as the ledger has it."""

    day: str
    used: int  # completions sent
    last_minute: int
    by_model: dict[str, int]
    account: dict[str, Any] | None  # the last X-RateLimit-* OpenRouter sent today, with its time
    reset_ts: float
    held: int = 0  # reserved by runs still going, not sent yet
    skipped: int = 0  # lines that are not rollout's records (torn, hand-edited, wrong types)

    def to_json(self) -> dict[str, Any]:
        return {"day": self.day, "used": self.used, "held": self.held, "last_minute": self.last_minute,
                "by_model": self.by_model, "account": self.account, "reset_ts": self.reset_ts,
                "skipped": self.skipped}


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _kind(record: Any) -> str | None:
    """"completion", "reserve" or "release" for a well-formed ledger record; None for anything else."""
    if not isinstance(record, dict) or not finite_number(record.get("ts")):
        return None
    if "reserve" in record:
        writer = record.get("writer")
        writer_ok = isinstance(writer, dict) and _whole(writer.get("pid")) and (
            writer.get("start_ticks") is None or _whole(writer["start_ticks"]))
        ok = _whole(record["reserve"]) and record["reserve"] >= 0 and isinstance(record.get("run"), str) and writer_ok
        return "reserve" if ok else None
    if "release" in record:
        return "release" if isinstance(record["release"], str) else None
    status, rate = record.get("status"), record.get("ratelimit")
    ok = (isinstance(record.get("model"), str) and (status is None or _whole(status))
          and isinstance(record.get("fallbacks", False), bool)
          and (rate is None or (isinstance(rate, dict) and all(k in _RATE_KEYS and _whole(v) for k, v in rate.items())))
          and (record.get("run") is None or isinstance(record["run"], str))
          and (record.get("mono") is None or finite_number(record["mono"])))
    return "completion" if ok else None


@dataclass
class _Tally:
    """One day's ledger folded line by line."""

    used: int = 0
    recent: int = 0
    skipped: int = 0
    by_model: dict[str, int] = field(default_factory=dict)
    account: dict[str, Any] | None = None
    spent: dict[str, int] = field(default_factory=dict)  # completions per run
    reserved: dict[str, int] = field(default_factory=dict)
    holders: dict[str, dict[str, Any]] = field(default_factory=dict)  # run -> its reservation record
    released: set[str] = field(default_factory=set)

    def held(self, now: float, exclude: str | None = None) -> int:
        """Reserved and not yet sent by runs still going (a reservation dies with its run)."""
        total = 0
        here = ProcessIdentity.current()
        for run, reserved in self.reserved.items():
            if run == exclude or run in self.released or not _running(self.holders[run], here, now):
                continue
            total += max(reserved - self.spent.get(run, 0), 0)
        return total

    def left_to(self, run: str) -> int:
        return max(self.reserved.get(run, 0) - self.spent.get(run, 0), 0) if run not in self.released else 0


def _running(reservation: dict[str, Any], here: ProcessIdentity, now: float) -> bool:
    """Whether the run that reserved is still going: its very process, in this boot and pid namespace.

    A run in another pid namespace (rollout in a container on the same workspace) cannot be
    looked up from here: its reservation holds for FOREIGN_RESERVATION_S, longer than any check runs.
    """
    writer = ProcessIdentity.from_json(reservation["writer"])
    if writer.boot_id != here.boot_id:
        return False  # written before a reboot (or where the boot is unknown): nothing of it runs now
    if writer.pid_namespace != here.pid_namespace:
        return now - reservation["ts"] < FOREIGN_RESERVATION_S
    return ProcessRecord(writer.pid, writer.start_ticks, (), "", 0.0).alive()


# Ledger times are kept to the millisecond: one just written may lie up to half of one in the reader's future.
TIME_RESOLUTION_S = 0.001


def _recent(entry: dict[str, Any], now: float, mono: float, boot: str | None) -> bool:
    """Sent in the last minute: by the monotonic clock when written in this boot, so a step of the wall
    clock (NTP, a VM resumed) neither hides a request nor keeps an old one counted."""
    if boot is not None and entry.get("boot") == boot and entry.get("mono") is not None:
        return mono - 60 < entry["mono"] <= mono + TIME_RESOLUTION_S
    return now - 60 < entry["ts"] <= now + TIME_RESOLUTION_S


def _fold(path: Path, now: float, mono: float, boot: str | None) -> _Tally:
    tally = _Tally()
    try:
        size = path.stat().st_size
    except OSError:
        size = 0
    if size > MAX_LEDGER_BYTES:
        raise QuotaRefused(
            f"refused: the quota ledger {path} holds {size / (1 << 20):.0f} MiB, more than a day of rollout's own "
            f"requests ever writes ({MAX_LEDGER_BYTES >> 20} MiB): something else writes to it, or sends in a "
            "loop; find what, then move the file away (rollout counts today from zero then)")
    for record in json_lines(path, MAX_LINE_BYTES):
        kind = _kind(record)
        if kind is None:
            tally.skipped += 1
        elif kind == "reserve":
            run = record["run"]
            tally.reserved[run] = tally.reserved.get(run, 0) + record["reserve"]
            tally.holders[run] = record
        elif kind == "release":
            tally.released.add(record["release"])
        else:
            model = record["model"]
            tally.used += 1
            tally.by_model[model] = tally.by_model.get(model, 0) + 1
            if record.get("run"):
                tally.spent[record["run"]] = tally.spent.get(record["run"], 0) + 1
            tally.recent += _recent(record, now, mono, boot)
            if record.get("ratelimit"):
                tally.account = {**record["ratelimit"], "seen_ts": record["ts"]}
            elif tally.account is not None and record.get("status") == 200:
                tally.account["answered_after"] = True  # a free model answered since: the quota is not exhausted
    return tally


@dataclass
class QuotaLedger:
    state_dir: Path
    clock: Any = field(default=time.time, repr=False)
    # The clock that never steps; a clock passed in (a test's, a replay's) is taken to be that too.
    monotonic: Any = field(default=None, repr=False)
    run: str = field(default_factory=lambda: os.urandom(6).hex())  # this run's reservations and completions
    reserved_day: str | None = field(default=None, repr=False)  # where this run's reservation is, until released

    @property
    def folder(self) -> Path:
        return self.state_dir / LEDGER_DIR

    def _mono(self) -> float:
        return float((self.monotonic or (time.monotonic if self.clock is time.time else self.clock))())

    def path(self, day: str) -> Path:
        return self.folder / f"{day}.jsonl"

    def record(self, model: str, status: int | None, *, ratelimit: dict[str, int] | None = None) -> None:
        """Count one completion sent upstream (through the gateway) by rollout itself."""
        now = self.clock()
        entry: dict[str, Any] = {"ts": round(now, 3), "model": model, "status": status, "run": self.run,
                                 "mono": round(self._mono(), 3), "boot": boot_id()}
        if ratelimit:
            entry["ratelimit"] = ratelimit
        append_line(self.path(utc_day(now)), entry)

    def usage(self) -> Usage:
        now, mono, boot = self.clock(), self._mono(), boot_id()
        day = utc_day(now)
        today = _fold(self.path(day), now, mono, boot)
        # Requests of the last minute before 00:00 UTC are in yesterday's file.
        yesterday = _fold(self.path(utc_day(now - DAY_S)), now, mono, boot).recent
        return Usage(day=day, used=today.used, last_minute=today.recent + yesterday, by_model=today.by_model,
                     account=today.account, reset_ts=next_reset(now), held=today.held(now),
                     skipped=today.skipped)

    def reserve(self, settings: QuotaSettings, command: str, planned: int) -> Forecast:
        """Check that `planned` more requests fit rollout's share and hold them, in one step under the lock.

        What this run reserved earlier and has not sent yet counts towards
        `planned` (an `advance` reserves for its health and smoke checks at once).
        QuotaRefused (exit 3) when they do not fit; nothing is held then.
        """
        with WorkspaceLock(self.folder, command=f"rollout {command} (quota reservation)"):
            now, boot = self.clock(), boot_id()
            day = utc_day(now)
            today = _fold(self.path(day), now, self._mono(), boot)
            mine = today.left_to(self.run) if day == self.reserved_day else 0
            others = today.held(now, exclude=self.run)
            found = Forecast(command, planned, today.used + others, settings.allowance, settings.daily_limit,
                             settings.rollout_share, next_reset(now), held=others)
            if not found.fits:
                wait = found.reset_ts - now
                raise QuotaRefused(
                    f"refused: {found.text} (in {int(wait // 3600)}h{int(wait % 3600 // 60):02d}m); "
                    "wait for the reset, narrow the run (--model), or raise openrouter.rollout_share / "
                    "openrouter.daily_limit in rollout.yaml"
                )
            extra = planned - mine
            if extra > 0:
                append_line(self.path(day), {"ts": round(now, 3), "reserve": extra, "run": self.run,
                                             "command": command, "writer": ProcessIdentity.current().to_json()})
                self.reserved_day = day
        return found

    def release(self) -> None:
        """What this run reserved and did not send goes back to the share (its completions stay counted)."""
        if self.reserved_day is not None:
            append_line(self.path(self.reserved_day), {"ts": round(self.clock(), 3), "release": self.run})
            self.reserved_day = None
            self.run = os.urandom(6).hex()  # a released run holds nothing: a later reservation is a new one


@dataclass(frozen=True)
class Forecast:
    """What a command would spend, against what is left of rollout's share today."""

    command: str
    planned: int
    used: int  # sent today, plus what runs going on now have reserved
    allowance: int
    daily_limit: int
    rollout_share: float
    reset_ts: float
    held: int = 0  # of `used`: reserved by runs going on now, not sent yet

    @property
    def left(self) -> int:
        return max(self.allowance - self.used, 0)

    @property
    def fits(self) -> bool:
        return self.used + self.planned <= self.allowance

    @property
    def text(self) -> str:
        running = f" ({self.held} held by checks running now)" if self.held else ""
        return (f"{self.command} would send {self.planned} request(s); rollout has used {self.used}{running} of its "
                f"{self.allowance} today ({self.rollout_share * 100:g}% of {self.daily_limit}), "
                f"{self.left} left; the quota resets at {clock_text(self.reset_ts)}")

    def to_json(self) -> dict[str, Any]:
        return {"command": self.command, "planned": self.planned, "used": self.used, "left": self.left,
                "allowance": self.allowance, "daily_limit": self.daily_limit, "rollout_share": self.rollout_share,
                "fits": self.fits, "resets_at": clock_text(self.reset_ts), "reset_ts": self.reset_ts}


def forecast(ledger: QuotaLedger, settings: QuotaSettings, command: str, planned: int) -> Forecast:
    """What `planned` requests would leave, without reserving them (`--plan`, `--dry-run` previews)."""
    usage = ledger.usage()
    return Forecast(command, planned, usage.used + usage.held, settings.allowance, settings.daily_limit,
                    settings.rollout_share, usage.reset_ts, usage.held)


def require_room(ledger: QuotaLedger, settings: QuotaSettings, command: str, planned: int) -> Forecast:
    """Reserve `planned` requests of rollout's share for this run, or QuotaRefused (exit 3) when they do not fit.

    The reservation holds until `ledger.release()` (Evidence does it when it closes) or the run's end.
    """
    return ledger.reserve(settings, command, planned)


@dataclass(frozen=True)
class QuotaPayload:
    """`rollout quota`: today's use by rollout against its share, the per-minute limit, and the reset."""

    settings: QuotaSettings
    usage: Usage
    ledger: str

    @property
    def left(self) -> int:
        return max(self.settings.allowance - self.usage.used - self.usage.held, 0)

    @property
    def account_exhausted(self) -> bool:
        """OpenRouter said 0 left today (X-RateLimit-Remaining), and that quota has not reset since."""
        account = self.usage.account or {}
        reset = account.get("reset")
        return (account.get("remaining") == 0 and not account.get("answered_after")
                and (reset is None or reset / 1000 > self.usage.reset_ts - DAY_S))

    def to_json(self) -> dict[str, Any]:
        return {
            "day": self.usage.day,
            "daily_limit": self.settings.daily_limit,
            "rollout_share": self.settings.rollout_share,
            "allowance": self.settings.allowance,
            "used": self.usage.used,
            "held": self.usage.held,
            "left": self.left,
            "by_model": self.usage.by_model,
            "per_minute": {"used": self.usage.last_minute, "limit": PER_MINUTE_LIMIT},
            "account": self.usage.account,
            "account_exhausted": self.account_exhausted,
            "resets_at": clock_text(self.usage.reset_ts),
            "reset_ts": self.usage.reset_ts,
            "ledger": self.ledger,
            "skipped_lines": self.usage.skipped,
        }


def quota_status(state_dir: Path, settings: QuotaSettings) -> Result[QuotaPayload]:
    """Exit 0 while rollout has requests left today, 3 when its share is spent or the account is exhausted."""
    ledger = QuotaLedger(state_dir)
    usage = ledger.usage()
    payload = QuotaPayload(settings, usage, str(ledger.path(usage.day)))
    messages = [
        f"rollout used {usage.used} of its {settings.allowance} requests today "
        f"({settings.rollout_share * 100:g}% of {settings.daily_limit}); {payload.left} left; "
        f"{usage.last_minute} in the last minute (limit {PER_MINUTE_LIMIT}/min); resets at {clock_text(usage.reset_ts)}"
    ]
    if usage.held:
        messages.append(f"{usage.held} more held by rollout checks running now")
    if usage.skipped:
        messages.append(f"{ledger.path(usage.day)}: skipped {usage.skipped} line(s) that are not ledger records "
                        "(a torn write or a hand edit); they are not counted: check the file")
    if payload.account_exhausted:
        messages.append(f"OpenRouter free quota exhausted: 0 of {(usage.account or {}).get('limit', settings.daily_limit)} "
                        f"left today, resets at {clock_text(usage.reset_ts)}")
    code = ExitCode.HOLD if payload.left == 0 or payload.account_exhausted else ExitCode.OK
    return Result("quota", payload, messages, code)
