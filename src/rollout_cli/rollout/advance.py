"""`rollout advance`: leave the current stage for the next one, on evidence.

Evaluate every gate (checks run concurrently, outside the lock); on GO write
the next stage into the env and flags files through the same typed steps the
rollback playbooks use (atomic, locked, read back), record it, then post-check
the new path. A failed post-check triggers the plan's rollback level.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rollout_cli.checks.evidence import Evidence
from rollout_cli.checks.health import check_health
from rollout_cli.core.audit import AuditLog
from rollout_cli.core.quota import Forecast, QuotaLedger, forecast
from rollout_cli.core.recovery import recover_app_files
from rollout_cli.core.result import Result
from rollout_cli.core.stage import read_stage
from rollout_cli.core.stagemetrics import refresh_stage_metrics, write_stage_metrics
from rollout_cli.core.workspace import ENABLED_KEY, PERCENTAGE_KEY, Workspace
from rollout_cli.errors import CheckFailed, ExitCode, InputError, RolloutError
from rollout_cli.gateway.topology import load_topology
from rollout_cli.io.lock import WorkspaceLock
from rollout_cli.notify import Delivery, Event, delivery_messages, notify
from rollout_cli.playbook import engine
from rollout_cli.playbook.context import StepContext
from rollout_cli.playbook.levels import RollbackPayload, rollback
from rollout_cli.playbook.model import Playbook
from rollout_cli.playbook.steps import EnvSet, FlagSet, Verify
from rollout_cli.playbook.traffic import ReloadApp, check_traffic
from rollout_cli.rollout.evaluate import evaluate
from rollout_cli.rollout.gates import Verdict, model_text
from rollout_cli.rollout.judge import Decision, direct_failure
from rollout_cli.rollout.plan import StagePlan, load_plan
from rollout_cli.rollout.samples import SampleStore
from rollout_cli.rollout.snapshot import planned_requests, recent_app_paths, scrape_metrics

POST_CHECK_RETRY_S = 3.0  # before the post-check asks an unreachable or unready gateway once more

Confirm = Callable[[Decision], bool]


def stage_playbook(ws: Workspace, percentage: int) -> Playbook:
    """The writes that put the app at `percentage`: env, flags, then read both back."""
    steps = [
        EnvSet(values={ENABLED_KEY: "true" if percentage > 0 else "false", PERCENTAGE_KEY: str(percentage)}),
        FlagSet(percentage=percentage),
        Verify(percentage=percentage),
        ReloadApp(),
    ]
    return Playbook(f"advance to {percentage}%", 0, 30.0, steps, ws.config_path)



@dataclass
class AdvancePayload:
    """`rollout advance`: the decision and, on GO, what was written, the post-check and any rollback.

    With no `decision` the rollout is already complete (only complete, current, next, verdict).
    """

    current: int
    decision: Decision | None = None
    dry_run: bool = False
    written: list[engine.LevelReport] | None = None
    post_check: dict[str, Any] | None = None  # ok, reason (primary, status)
    rollback: RollbackPayload | None = None
    notifications: list[Delivery] | None = None  # None: nothing announced (a dry run, no sinks)

    @property
    def complete(self) -> bool:
        return self.decision is None

    @property
    def verdict(self) -> Verdict:
        return self.decision.verdict if self.decision else Verdict.GO

    def to_json(self) -> dict[str, Any]:
        if self.decision is None:
            return {"complete": True, "current": self.current, "next": None, "verdict": Verdict.GO.value}
        out: dict[str, Any] = {"complete": False, "dry_run": self.dry_run, **self.decision.to_json()}
        if self.written is not None:
            out["written"] = [r.to_json() for r in self.written]
        if self.post_check is not None:
            out["post_check"] = self.post_check
        if self.rollback is not None:
            out["rollback"] = self.rollback.to_json()
        if self.notifications is not None:
            out["notifications"] = [d.to_json() for d in self.notifications]
        return out


@dataclass(frozen=True)
class AdvancePlanPayload:
    """`rollout advance --plan`: the requests an advance would send upstream, against the quota; nothing sent."""

    current: int
    next: int | None
    requests: dict[str, int]  # health, smoke, post_check
    forecast: Forecast

    def to_json(self) -> dict[str, Any]:
        return {"complete": self.next is None, "mode": "plan", "current": self.current, "next": self.next,
                "requests": self.requests, "forecast": self.forecast.to_json()}


def plan_advance(ws: Workspace) -> Result[AdvancePlanPayload]:
    """Exit 0 when the advance fits rollout's share of today's free quota, 3 when it would be refused."""
    plan = load_plan(ws.playbooks)
    stage = read_stage(ws)
    requests = planned_requests(ws, plan, load_topology(ws.gateway.config), post_check=True)
    found = forecast(QuotaLedger(ws.state_dir), ws.openrouter, "advance", sum(requests.values()))
    payload = AdvancePlanPayload(stage.percentage, plan.next_stage(stage.percentage), requests, found)
    breakdown = ", ".join(f"{k.replace('_', '-')} {v}" for k, v in requests.items())
    messages = [f"{found.text} ({breakdown})"]
    if not found.fits:
        messages.append("advance would be refused (exit 3) until the quota resets")
    return Result("advance", payload, messages, ExitCode.OK if found.fits else ExitCode.HOLD)


def advance(
    ws: Workspace,
    *,
    reason: str | None = None,
    dry_run: bool = False,
    skip_soak: bool = False,
    confirm: Confirm | None = None,
    evaluated: Decision | None = None,
    announce_as: str | None = None,
) -> Result[AdvancePayload]:
    """Evaluate, and on GO write the next stage. `evaluated`: a decision judged just now (the autopilot's),
    used instead of gathering the evidence again. `announce_as`: the actor the outcome is announced as to the
    `notify:` sinks once everything is done (`advanced`, `hold`; a post-check rollback announces `rolled_back`
    itself); None announces nothing. A dry run or a complete rollout announces nothing either."""
    result = _advance(ws, reason=reason, dry_run=dry_run, skip_soak=skip_soak, confirm=confirm,
                      evaluated=evaluated, announce_as=announce_as if ws.notify else None)
    event = _announcement(result, announce_as) if announce_as is not None and ws.notify else None
    if event is None:
        return result
    deliveries = notify(ws, event)
    result.payload.notifications = deliveries
    return Result(result.command, result.payload, [*result.messages, *delivery_messages(deliveries)], result.exit_code)


def _announcement(result: Result[AdvancePayload], actor: str) -> Event | None:
    """What a manual advance tells the sinks, from its result; None when it has nothing to tell."""
    data, decision = result.payload, result.payload.decision
    if decision is None or data.dry_run or data.rollback is not None:
        return None  # complete, a dry run, or rolled back (that rollback announced itself)
    current, target = decision.current, decision.next
    if data.written is None:
        severity = "info" if decision.verdict is Verdict.HOLD else "warning"
        return Event("hold", severity, f"advance {current}% -> {target}%: {decision.verdict.value}, "
                     f"stays at {current}%", actor, decision.verdict.value, current, target,
                     tuple(decision.reasons))
    post = data.post_check
    if post is None:  # the write itself failed
        failed = tuple(f"{s.type}: {s.detail}" for r in data.written for s in r.steps if s.status == "failed")
        return Event("hold", "critical", f"advance {current}% -> {target}% failed while writing the stage; "
                     "check `rollout status`", actor, decision.verdict.value, current, target, failed)
    if post["ok"]:
        return Event("advanced", "info", f"advanced {current}% -> {target}%", actor, decision.verdict.value,
                     current, target, tuple(decision.warnings))
    severity = "warning" if post.get("shared_with_direct") else "critical"
    reasons = [f"post-check failed: {post['reason']}"]
    if post.get("shared_with_direct"):
        reasons.append(f"not rolled back: {post['shared_with_direct']} (a provider failure, not the gateway's)")
    else:
        reasons.append("not rolled back: the plan names no rollback (on_post_check_failure: none)")
    return Event("advanced", severity, f"advanced {current}% -> {target}%, but its post-check failed", actor,
                 decision.verdict.value, current, target, tuple(reasons))


def _advance(
    ws: Workspace,
    *,
    reason: str | None,
    dry_run: bool,
    skip_soak: bool,
    confirm: Confirm | None,
    evaluated: Decision | None,
    announce_as: str | None,
) -> Result[AdvancePayload]:
    if skip_soak and not reason:
        raise InputError("--skip-soak needs --reason TEXT: skipping the soak is recorded in the audit trail")
    plan = load_plan(ws.playbooks)
    if not dry_run:  # a writing command: an interrupted in-place write is finished (and said) first
        recover_app_files(ws, "rollout advance")
    stage = read_stage(ws)
    if plan.next_stage(stage.percentage) is None and not stage.drift:
        return Result(
            "advance",
            AdvancePayload(stage.percentage),
            [f"the rollout is complete: {stage.percentage}% of traffic goes through the gateway"],
        )
    decision = evaluated or evaluate(ws, plan, stage, skip_soak_reason=reason if skip_soak else None,
                                     command="advance --dry-run" if dry_run else "advance")
    data = AdvancePayload(decision.current, decision, dry_run)
    if dry_run:
        return Result("advance", data, ["dry run: nothing written"], decision.verdict.exit_code)
    audit = AuditLog(ws.state_dir)
    if decision.verdict is not Verdict.GO:
        audit.append("advance", reason=reason, result=decision.verdict.value, decision=_brief(decision), changes=[])
        refresh_stage_metrics(ws)
        return Result("advance", data, [f"stays at {decision.current}%: nothing written"], decision.verdict.exit_code)
    if confirm is not None and not confirm(decision):
        raise InputError("advance not confirmed; nothing written")
    target = decision.next
    assert target is not None
    written_at = time.monotonic()
    reports = _write_stage(ws, decision, reason=reason, skip_soak=skip_soak)
    code = engine.exit_code_of(reports)
    data.written = reports
    if code != 0:
        return Result("advance", data, [f"writing {target}% failed: see the steps"], code)
    # The gateway config parsed by the gates serves the baseline and the post-check too;
    # the preflight is new: the post-check observes the world after the write.
    with Evidence(ws, topology=decision.topology) as evidence:
        _baseline(ws, target, evidence)
        post = post_check(ws, evidence)
    if probe_failed(post):
        # One probe that did not answer in time (a gateway starved of CPU for a moment) is thin evidence for a
        # rollback: asked once more, afresh, after a pause; a gateway that is down stays unreachable (or unready).
        time.sleep(POST_CHECK_RETRY_S)
        with Evidence(ws, topology=decision.topology) as evidence:
            post = post_check(ws, evidence)
    if post["ok"]:  # the gateway answers: now the app's traffic must follow the new stage
        post["traffic"] = check_traffic(ws, target, written_at)
        if post["traffic"]["status"] == "failed":
            post.update(ok=False, reason=f"traffic: {post['traffic']['detail']}")
    data.post_check = post
    messages = [f"advanced {decision.current}% -> {target}%"]
    if post.get("traffic"):
        messages.append(f"traffic: {post['traffic']['detail']}")
    if post["ok"]:
        if target == 100:
            messages.append("the rollout is complete: 100% of traffic goes through the gateway")
        return Result("advance", data, messages, ExitCode.OK)
    messages.append(f"post-check failed: {post['reason']}")
    shared = direct_failure(recent_app_paths(ws, plan), plan.gates.max_error_rate, "recent") if post.get("primary") else None
    if shared:
        # The provider fails for everyone: rolling back would move users onto the failing direct path.
        post["shared_with_direct"] = shared
        messages.append(f"not rolled back: {shared}: a provider failure, not the gateway's; "
                        "the gateway's fallbacks serve its users (HOLD)")
        return Result("advance", data, messages, ExitCode.HOLD)
    if plan.on_post_check_failure is None:
        messages.append("the plan names no rollback (on_post_check_failure: none): roll back by hand if needed")
        return Result("advance", data, messages, ExitCode.FAILED)
    level = plan.on_post_check_failure
    undo = rollback(ws, level, reason=f"post-check failed after advancing to {target}%: {post['reason']}",
                    announce_as=announce_as)
    data.rollback = undo.payload
    after = read_stage(ws)
    messages.append(
        f"rolled back with level {level} (exit {int(undo.exit_code)}): traffic now {after.percentage}%"
    )
    return Result("advance", data, messages, ExitCode.FAILED)


def _write_stage(ws: Workspace, decision: Decision, *, reason: str | None, skip_soak: bool) -> list[engine.LevelReport]:
    """Write the next stage under the lock, recorded ahead ("started") and before the lock goes ("finished")."""
    current, target = decision.current, decision.next
    with WorkspaceLock(ws.state_dir, command=f"rollout advance to {target}%"):
        now = read_stage(ws).percentage
        if now != current:
            raise CheckFailed(
                f"the stage changed from {current}% to {now}% while the gates were evaluated; run advance again"
            )
        assert target is not None
        op = AuditLog(ws.state_dir).begin("advance", reason=reason)
        reports = engine.execute([stage_playbook(ws, target)], StepContext(ws))
        code = engine.exit_code_of(reports)
        op.finish(
            result="ok" if code == 0 else "failed", exit_code=int(code), skip_soak=skip_soak,
            decision=_brief(decision), changes=[c for r in reports for s in r.steps for c in s.changes],
        )
        write_stage_metrics(ws)
        return reports


def _baseline(ws: Workspace, stage: int, evidence: Evidence) -> None:
    """A metrics sample at the start of the new stage: the window's baseline."""
    scrape, error = scrape_metrics(ws, evidence.client)
    SampleStore(ws.state_dir).append({"stage": stage, "source": "advance", "metrics": scrape, "metrics_error": error})


def probe_failed(post: dict[str, Any]) -> bool:
    """Whether a failed post-check failed on the gateway's own probes (liveliness: unreachable, or readiness:
    not-ready, each with a 3 s budget), not on an answer of the primary's: then it is worth asking once more."""
    return not post["ok"] and str(post.get("reason", "")).endswith((": unreachable", ": not-ready"))


def post_check(ws: Workspace, evidence: Evidence) -> dict[str, Any]:
    """Gateway live and the primary answering well through it, right after the write."""
    try:
        primary = evidence.topology.primary if evidence.topology else None
        report = check_health(ws, [primary] if primary else None, container=False, evidence=evidence)
    except RolloutError as exc:
        return {"ok": False, "reason": str(exc)}
    if report.gateway.problem:
        return {"ok": False, "reason": f"gateway {report.gateway.url}: {report.gateway.problem}"}
    model = report.model(report.primary) if report.primary else None
    if model is None:
        return {"ok": False, "reason": "no primary model to check"}
    return {
        "ok": model.ok,
        "primary": model.alias,
        "status": model.status,
        "reason": f"primary {model.alias}: {model_text(model)}",
    }


def _brief(decision: Decision) -> dict[str, Any]:
    return {
        "verdict": decision.verdict.value,
        "from": decision.current,
        "to": decision.next,
        "reasons": decision.reasons,
        "warnings": decision.warnings,
    }


__all__ = ["StagePlan", "advance", "plan_advance", "post_check", "stage_playbook"]
