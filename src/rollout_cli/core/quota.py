"""The quota ledger: every request `rollout` itself sends upstream, counted per UTC day.

OpenRouter's free tier is one quota for the whole account (50 requests a day
below $10 of credits bought, 1,000 above; 20 a minute), shared by the app and
by rollout's own checks. The ledger (`.rollout/quota/YYYY-MM-DD.jsonl`, one
line per completion, appended in one write) lets rollout cap its own share
(`openrouter.rollout_share` of `openrouter.daily_limit`) and say when the
quota resets. Sandbox traffic is app traffic: it is not counted.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from rollout_cli.core.audit import append_line, read_lines
from rollout_cli.core.result import Result
from rollout_cli.core.workspace import QuotaSettings
from rollout_cli.errors import ExitCode, RolloutError

LEDGER_DIR = "quota"
PER_MINUTE_LIMIT = 20  # OpenRouter's account-wide limit on :free models
DAY_S = 86_400


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
    used: int
    last_minute: int
    drills: list[float]  # times of requests sent with fallbacks on (the smoke drill): they count as fallbacks
    by_model: dict[str, int]
    account: dict[str, Any] | None  # the last X-RateLimit-* OpenRouter sent today, with its time
    reset_ts: float

    def to_json(self) -> dict[str, Any]:
        return {"day": self.day, "used": self.used, "last_minute": self.last_minute, "by_model": self.by_model,
                "account": self.account, "reset_ts": self.reset_ts}


@dataclass
class QuotaLedger:
    state_dir: Path
    clock: Any = field(default=time.time, repr=False)

    @property
    def folder(self) -> Path:
        return self.state_dir / LEDGER_DIR

    def path(self, day: str) -> Path:
        return self.folder / f"{day}.jsonl"

    def record(self, model: str, status: int | None, *, fallbacks: bool = False,
               ratelimit: dict[str, int] | None = None) -> None:
        """Count one completion sent upstream (through the gateway) by rollout itself."""
        now = self.clock()
        entry: dict[str, Any] = {"ts": round(now, 3), "model": model, "status": status}
        if fallbacks:
            entry["fallbacks"] = True
        if ratelimit:
            entry["ratelimit"] = ratelimit
        append_line(self.path(utc_day(now)), entry)

    def usage(self) -> Usage:
        now = self.clock()
        day = utc_day(now)
        entries = read_lines(self.path(day))
        by_model: dict[str, int] = {}
        account = None
        for e in entries:
            by_model[str(e.get("model"))] = by_model.get(str(e.get("model")), 0) + 1
            if e.get("ratelimit"):
                account = {**e["ratelimit"], "seen_ts": e.get("ts")}
            elif account is not None and e.get("status") == 200:
                account["answered_after"] = True  # a free model answered since: the quota is not exhausted
        return Usage(
            day=day,
            used=len(entries),
            last_minute=sum(1 for e in entries if e.get("ts", 0) > now - 60),
            drills=[float(e["ts"]) for e in entries if e.get("fallbacks")],
            by_model=by_model,
            account=account,
            reset_ts=next_reset(now),
        )

    def drills_since(self, since_ts: float, until_ts: float | None = None) -> int:
        """Requests rollout sent with fallbacks on from `since_ts` (to `until_ts`), over every day's file kept."""
        if not self.folder.is_dir():
            return 0
        first = utc_day(since_ts)
        count = 0
        for path in sorted(self.folder.glob("*.jsonl")):
            if path.stem >= first:
                count += sum(1 for e in read_lines(path) if e.get("fallbacks") and e.get("ts", 0) >= since_ts
                             and (until_ts is None or e.get("ts", 0) <= until_ts))
        return count


@dataclass(frozen=True)
class Forecast:
    """What a command would spend, against what is left of rollout's share today."""

    command: str
    planned: int
    used: int
    allowance: int
    daily_limit: int
    rollout_share: float
    reset_ts: float

    @property
    def left(self) -> int:
        return max(self.allowance - self.used, 0)

    @property
    def fits(self) -> bool:
        return self.used + self.planned <= self.allowance

    @property
    def text(self) -> str:
        return (f"{self.command} would send {self.planned} request(s); rollout has used {self.used} of its "
                f"{self.allowance} today ({self.rollout_share * 100:g}% of {self.daily_limit}), "
                f"{self.left} left; the quota resets at {clock_text(self.reset_ts)}")

    def to_json(self) -> dict[str, Any]:
        return {"command": self.command, "planned": self.planned, "used": self.used, "left": self.left,
                "allowance": self.allowance, "daily_limit": self.daily_limit, "rollout_share": self.rollout_share,
                "fits": self.fits, "resets_at": clock_text(self.reset_ts), "reset_ts": self.reset_ts}


def forecast(ledger: QuotaLedger, settings: QuotaSettings, command: str, planned: int) -> Forecast:
    usage = ledger.usage()
    return Forecast(command, planned, usage.used, settings.allowance, settings.daily_limit,
                    settings.rollout_share, usage.reset_ts)


def require_room(ledger: QuotaLedger, settings: QuotaSettings, command: str, planned: int) -> Forecast:
    """The forecast, or QuotaRefused (exit 3) when it would push rollout's use over its share."""
    found = forecast(ledger, settings, command, planned)
    if not found.fits:
        wait = found.reset_ts - ledger.clock()
        raise QuotaRefused(
            f"refused: {found.text} (in {int(wait // 3600)}h{int(wait % 3600 // 60):02d}m); "
            "wait for the reset, narrow the run (--model), or raise openrouter.rollout_share / "
            "openrouter.daily_limit in rollout.yaml"
        )
    return found


@dataclass(frozen=True)
class QuotaPayload:
    """`rollout quota`: today's use by rollout against its share, the per-minute limit, and the reset."""

    settings: QuotaSettings
    usage: Usage
    ledger: str

    @property
    def left(self) -> int:
        return max(self.settings.allowance - self.usage.used, 0)

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
            "left": self.left,
            "by_model": self.usage.by_model,
            "per_minute": {"used": self.usage.last_minute, "limit": PER_MINUTE_LIMIT},
            "account": self.usage.account,
            "account_exhausted": self.account_exhausted,
            "resets_at": clock_text(self.usage.reset_ts),
            "reset_ts": self.usage.reset_ts,
            "ledger": self.ledger,
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
    if payload.account_exhausted:
        messages.append(f"OpenRouter free quota exhausted: 0 of {(usage.account or {}).get('limit', settings.daily_limit)} "
                        f"left today, resets at {clock_text(usage.reset_ts)}")
    code = ExitCode.HOLD if payload.left == 0 or payload.account_exhausted else ExitCode.OK
    return Result("quota", payload, messages, code)
