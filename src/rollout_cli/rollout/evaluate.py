"""One decision: gather the evidence (rollout/snapshot.py), then judge it (rollout/judge.py)."""

from __future__ import annotations

from rollout_cli.core.stage import Stage, read_stage
from rollout_cli.core.workspace import Workspace
from rollout_cli.rollout.judge import Decision, judge
from rollout_cli.rollout.plan import StagePlan
from rollout_cli.rollout.snapshot import gather


def evaluate(
    ws: Workspace, plan: StagePlan, stage: Stage | None = None, *, skip_soak_reason: str | None = None,
    command: str = "report",
) -> Decision:
    """Every gate for leaving the current stage. Checks run concurrently; nothing is written.

    The evidence (gateway config, key, client, preflight, the audit record of
    entering this stage, the window's counters) is gathered once into one snapshot.
    """
    snap, topology = gather(ws, plan, stage or read_stage(ws), command, skip_soak_reason=skip_soak_reason)
    decision = judge(snap, plan)
    decision.topology = topology
    return decision
