"""The tick's decision, pure: from the judge's breach gates, the streak, the soak and the approvals to one action.

Per gate, a failure is either a breach (the gateway path hurts users now: roll
back once `failure_threshold` ticks in a row breach) or only blocks promotion
(the stage holds; nobody is rolled back). docs/PLAYBOOKS.md, "The autopilot",
has the table; BREACH_GATES is it in code. A failure the direct path shares is
already INCONCLUSIVE from the judge (rollout/judge.py): it holds, never breaches.
"""

from __future__ import annotations

from dataclasses import dataclass

from rollout_cli.rollout.gates import FAIL
from rollout_cli.rollout.judge import Decision

# The gates whose failure is a breach. Every other gate (healthy models, smoke, cost, catalog,
# quota, soak, env/flags agree, added latency, custom gates) only blocks promotion.
BREACH_GATES = ("gateway", "primary model", "error rate", "error rate vs direct", "fallback rate")

# What a tick does (the `action` of its JSON line).
PAUSED, ROLLBACK, BREACH, HOLD, SOAK, AWAIT_APPROVAL, PROMOTE, COMPLETE = (
    "paused", "rollback", "breach", "hold", "soak", "await-approval", "promote", "complete")


@dataclass(frozen=True)
class BreachCheck:
    """The breach gates of one tick: `breach` (one failed), `shared` (the direct path fails too: hold) or `clear`."""

    status: str
    reasons: tuple[str, ...] = ()
    gates: tuple[str, ...] = ()  # the gates behind it: what "the same hold" means (reasons carry counts)


def breach_check(decision: Decision) -> BreachCheck:
    """The breach gates of a decision judged over the last interval."""
    gates = [g for g in decision.gates if g.name in BREACH_GATES]
    failed = [g for g in gates if g.status == FAIL]
    if failed:
        return BreachCheck("breach", tuple(g.reason for g in failed), tuple(g.name for g in failed))
    shared = [g for g in gates if g.name in decision.shared_failures]
    if shared:
        return BreachCheck("shared", tuple(g.reason for g in shared), tuple(g.name for g in shared))
    return BreachCheck("clear")


@dataclass(frozen=True)
class TickFacts:
    """What one tick knows before it acts."""

    stage: int
    next_stage: int | None
    breach: BreachCheck | None  # None at 0%: no gateway traffic, nothing to roll back
    consecutive: int  # breached ticks in a row before this one
    threshold: int
    soak_left_s: float | None  # None: the soak cannot be measured (no audit record of entering the stage)
    approval_needed: bool = False
    approved: bool = False
    paused: str | None = None  # why the autopilot is paused, or None


@dataclass(frozen=True)
class TickPlan:
    action: str
    consecutive: int  # the streak after this tick
    reasons: tuple[str, ...] = ()


def decide(facts: TickFacts) -> TickPlan:
    """One action per tick. A breach is judged even while soaking or waiting for approval."""
    if facts.paused is not None:
        return TickPlan(PAUSED, 0, (facts.paused,))
    check = facts.breach
    if check is not None and check.status == "breach":
        streak = facts.consecutive + 1
        return TickPlan(ROLLBACK if streak >= facts.threshold else BREACH, streak, check.reasons)
    if check is not None and check.status == "shared":
        return TickPlan(HOLD, facts.consecutive, check.reasons)  # neither a breach nor a clear tick
    if facts.next_stage is None:
        return TickPlan(COMPLETE, 0)
    if facts.soak_left_s is None:
        return TickPlan(HOLD, 0, (f"the soak at {facts.stage}% cannot be measured: no audit record of entering it "
                                  "(an interrupted advance? see `rollout status`)",))
    if facts.soak_left_s > 0:
        return TickPlan(SOAK, 0)
    if facts.approval_needed and not facts.approved:
        return TickPlan(AWAIT_APPROVAL, 0, (f"advancing {facts.stage}% -> {facts.next_stage}% waits for "
                                            "`rollout approve --reason TEXT`",))
    return TickPlan(PROMOTE, 0)
