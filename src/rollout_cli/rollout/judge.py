"""Judging: every gate, the verdict and the per-model matrix, as a pure function of a snapshot and the plan.

No I/O and no clock: `judge(snapshot, plan)` reads only its arguments (the
snapshot carries `now`), so a recorded snapshot judged again gives the same
decision, and each rule is tested on small recorded snapshots
(tests/snapshots/). Gathering is rollout/snapshot.py.

A failure the app's direct path shares in the same window is the provider's,
not the gateway's: the gates a provider can fail (primary model, error rate,
fallback rate, and added latency, whose overhead counts retries against a
failing provider) turn it into HOLD (do not advance into an outage), never
NO-GO and never a reason to roll back (docs/PLAYBOOKS.md, "Shared failures").
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from rollout_cli.gateway.topology import Topology
from rollout_cli.rollout.gates import (
    FAIL,
    INCONCLUSIVE,
    PASS,
    SKIPPED,
    Gate,
    ModelRow,
    Verdict,
    agreement_gate,
    app_latency,
    catalog_gate,
    combine,
    cost_gate,
    custom_gate,
    error_rate_vs_direct_gate,
    fallback_gate,
    fallback_threshold,
    health_gates,
    quota_gate,
    replicas_gate,
    smoke_gate,
    soak_gate,
    verdict_matrix,
    window_gates,
)
from rollout_cli.rollout.plan import StagePlan
from rollout_cli.rollout.snapshot import Snapshot

COMPARATIVE = "error rate vs direct"


@dataclass
class Decision:
    verdict: Verdict
    current: int
    next: int | None
    gates: list[Gate]
    matrix: list[ModelRow]
    warnings: list[str]
    requests_sent: int
    topology: Topology | None = None  # the gateway config the checks read, for the post-check after a write
    requests_shared: int = 0  # answers one check read from another's request instead of sending its own
    snapshot: Snapshot | None = None  # the evidence it was judged on
    error_rate_gate: str | None = None  # which gate decided the error rate: the comparative one or the absolute one
    app_latency: dict[str, Any] | None = None  # gateway path minus direct path, p50/p95 (reported, not gated)
    shared_failures: list[str] = field(default_factory=list)  # gates held because the direct path fails too

    @property
    def reasons(self) -> list[str]:
        wanted = {Verdict.NO_GO: FAIL, Verdict.HOLD: INCONCLUSIVE}.get(self.verdict)
        return [g.reason for g in self.gates if g.status == wanted]

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict.value,
            "current": self.current,
            "next": self.next,
            "reasons": self.reasons,
            "warnings": self.warnings,
            "gates": [g.to_json() for g in self.gates],
            "matrix": [r.to_json() for r in self.matrix],
            "requests_sent": self.requests_sent,
            "requests_shared": self.requests_shared,
            "error_rate_gate": self.error_rate_gate,
            "app_latency": self.app_latency,
            "shared_failures": self.shared_failures,
            "metrics": self.snapshot.metrics_source if self.snapshot else None,
        }


def judge(snap: Snapshot, plan: StagePlan) -> Decision:
    """Every gate for leaving the snapshot's stage, the verdict and the matrix. Pure."""
    stage = snap.stage
    g = plan.gates
    health, smoke = snap.health, snap.smoke
    gates: list[Gate] = []
    if g.env_flags_agree:
        gates.append(agreement_gate(stage))
    gates += health_gates(plan, health, snap.health_error)
    if health is not None and health.replicas is not None:
        gates.append(replicas_gate(plan, health.replicas))
    if g.smoke:
        gates.append(smoke_gate(smoke, snap.smoke_error, health, plan))
    if g.cost_free_only:
        gates.append(cost_gate(smoke, snap.smoke_error))
    if g.catalog:
        gates.append(catalog_gate(snap.catalog, plan))
    gates.append(quota_gate(snap.quota, health))
    decided_by: str | None = None
    latency: dict[str, Any] | None = None
    shared: list[str] = []
    if stage.percentage == 0 or snap.window is None:
        gates += _first_step(plan)
    else:
        gates.append(soak_gate(plan, stage, snap.entered, snap.skip_soak_reason, snap.now))
        window_gates_, decided_by = _window(snap, plan, shared)
        gates += window_gates_
        latency = app_latency(snap.app)
        primary_only = _smoke_fails_only_primary(snap)
        gates = [_unless_shared(gate, snap.app, g.max_error_rate, "recent", shared)
                 if gate.name == "primary model" or (gate.name == "smoke" and primary_only) else gate for gate in gates]
    matrix = verdict_matrix(health, smoke)
    warnings = [w for gate in gates for w in gate.warnings]
    return Decision(combine(gates), stage.percentage, plan.next_stage(stage.percentage), gates, matrix, warnings,
                    snap.requests.get("sent", 0), None, requests_shared=snap.requests.get("shared", 0),
                    snapshot=snap, error_rate_gate=decided_by, app_latency=latency, shared_failures=shared)


def _window(snap: Snapshot, plan: StagePlan, shared: list[str]) -> tuple[list[Gate], str]:
    """The soak window's gates (error rate, comparative, latency, fallbacks, custom), and which decided the error rate."""
    g = plan.gates
    window = snap.window
    assert window is not None
    error_gate, latency_gate = window_gates(plan, window)
    via = window["label"] if window["source"] == "prometheus" else "metrics.source: prometheus, not set"
    comparative = (error_rate_vs_direct_gate(plan, snap.app, f"the app's metrics ({via})")
                   if g.error_rate_vs_direct_margin is not None else None)
    error_gate = _unless_shared(error_gate, snap.app, g.max_error_rate, "window", shared)
    decided_by = "error rate"
    if comparative is not None and comparative.detail is not None and not window.get("problem"):
        decided_by = COMPARATIVE
        if error_gate.name not in shared:  # a provider outage still holds: do not advance into it
            error_gate = replace(error_gate, status=SKIPPED,
                                 reason=f"error rate (gateway counters) {error_gate.value}: decided by "
                                        f"'{COMPARATIVE}' (the app's metrics exist)")
    elif comparative is not None:
        comparative = replace(comparative, status=SKIPPED,
                              reason=f"{comparative.reason}; the absolute error-rate gate decides")
    if window.get("freshness_note"):  # the window may miss the seconds before the decision: say so
        error_gate = replace(error_gate, warnings=[*error_gate.warnings, window["freshness_note"]])
    # LiteLLM's overhead counts the retries' back-off against a failing provider as the gateway's own time
    latency_gate = _unless_shared(latency_gate, snap.app, g.max_error_rate, "window", shared)
    fallback = _unless_shared(fallback_gate(plan, window), snap.app, g.max_fallback_rate, "window", shared)
    found = {c.get("name"): c for c in snap.custom}
    customs = [custom_gate(c, found.get(c.name), f"PromQL ({via})") for c in plan.custom_gates]
    return [error_gate, *([comparative] if comparative else []), latency_gate, fallback, *customs], decided_by


def _first_step(plan: StagePlan) -> list[Gate]:
    g = plan.gates
    note = "first step (0% -> first stage): no traffic through the gateway yet"
    out = [
        Gate("soak", SKIPPED, "n/a", "n/a", "stage plan", f"soak: {note}"),
        Gate("error rate", SKIPPED, "n/a", f"<= {g.max_error_rate * 100:g}%", "stage plan", f"error rate: {note}"),
        Gate("added latency", SKIPPED, "n/a", f"p95 <= {g.max_added_latency_p95_ms:g} ms", "stage plan",
             f"added latency: {note}"),
        Gate("fallback rate", SKIPPED, "n/a", fallback_threshold(plan), "stage plan", f"fallback rate: {note}"),
    ]
    out += [Gate(c.name, SKIPPED, "n/a", "n/a", "stage plan", f"{c.name}: {note}") for c in plan.custom_gates]
    return out


def _smoke_fails_only_primary(snap: Snapshot) -> bool:
    """Whether every failed smoke check is on the primary: the failure health's primary gate already judges."""
    primary = snap.health.primary if snap.health else None
    failed = {c.model for c in (snap.smoke.checks if snap.smoke else []) if c.status == FAIL and c.check != "cost"}
    return primary is not None and failed == {primary}


def direct_failure(app: dict[str, Any] | None, limit: float, span: str) -> str | None:
    """How the app's direct path fails over the window (or its recent part) beyond `limit`, or None when it does not."""
    if not app or app.get("problem") or "direct" not in app:
        return None
    direct = app["direct"]
    requests, failed = (direct["requests"], direct["failed"]) if span == "window" else (
        direct["recent_requests"], direct["recent_failed"])
    if requests <= 0 or failed <= 0 or failed / requests <= limit:
        return None
    where = "in the same window" if span == "window" else f"in the last {app.get('recent_s', 0):.0f} s"
    return f"the direct path fails too: {failed / requests * 100:.2f}% ({failed:.0f} of {requests:.0f}) {where}"


def _unless_shared(gate: Gate, app: dict[str, Any] | None, limit: float, span: str, shared: list[str]) -> Gate:
    """A failed gate the direct path shares becomes HOLD: the provider's failure, not the gateway's."""
    if gate.status != FAIL:
        return gate
    why = direct_failure(app, limit, span)
    if why is None:
        return gate
    shared.append(gate.name)
    serving = ""
    if app and "gateway" in app and app["gateway"]["requests"] > 0:
        gw, direct = app["gateway"], app["direct"]
        better = gw["failed"] / gw["requests"] < direct["failed"] / max(direct["requests"], 1)
        serving = (f"; the gateway path: {gw['failed'] / gw['requests'] * 100:.2f}% errors "
                   f"({gw['failed']:.0f} of {gw['requests']:.0f})" + (", its fallbacks serving" if better else ""))
    detail = {**(gate.detail or {}), "shared_with_direct": why}
    return replace(gate, status=INCONCLUSIVE, detail=detail,
                   reason=f"{gate.reason}; {why}{serving}: a provider failure, not the gateway's (HOLD, no rollback)")


__all__ = ["PASS", "Decision", "judge"]
