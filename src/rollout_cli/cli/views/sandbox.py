"""Human renderings of `rollout sandbox up|status|fault|notifications` (rich)."""

from __future__ import annotations

from typing import Any

from rollout_cli.cli.render import TextOut, esc, human
from rollout_cli.cli.views.gateway import log_lines
from rollout_cli.core.result import Result
from rollout_cli.sandbox.commands import SandboxFaultPayload, SandboxStatusPayload, SandboxUpPayload
from rollout_cli.sandbox.notifications import SandboxNotificationsPayload


@human(SandboxUpPayload)
def sandbox_up_view(out: Any, result: Result[SandboxUpPayload]) -> None:
    d = result.data
    if not result.payload.up:
        log_lines(TextOut(), d)
        return
    out.print(f"[bold]sandbox[/] {esc(d['dir'])}  (runtime {esc(d['runtime'])})")
    if d["runtime"] == "swarm":
        out.print(f"  gateway    {esc(d['gateway_url'])}  load balancer over {esc(', '.join(d['replica_urls']))} "
                  f"(relay pid {d['pids'].get('relay')}), service {esc(d['service'])} at {esc(d['docker_host'])}")
    else:
        out.print(f"  gateway    {esc(d['gateway_url'])}" + (f"  container {esc(d['container'])}" if d["container"]
                                                             else f"  pid {d['pids'].get('gateway')}"))
    out.print(f"  simulator  {esc(d['simulator_url'])}  pid {d['pids'].get('simulator')}")
    if d["prometheus_url"]:
        out.print(f"  prometheus {esc(d['prometheus_url'])}  pid {d['pids'].get('prometheus')}  "
                  "(jobs litellm every 2 s, app every 1 s" + (", rollout every 1 s)" if "node_exporter" in d["pids"]
                                                               else ")"))
    if d["pids"].get("receiver"):
        out.print(f"  receiver   pid {d['pids']['receiver']}: the `sandbox` notify sink (`rollout sandbox notifications`)")
    out.print(f"  workspace  {esc(d['dir'])}/rollout.yaml, app repo {esc(d['dir'])}/app")
    out.print(f"  master key {esc(d['master_key_file'])} (mode 0600)")


@human(SandboxStatusPayload)
def sandbox_status_view(out: Any, result: Result[SandboxStatusPayload]) -> None:
    d = result.data
    if not result.payload.up:
        return
    verdict = "[green]healthy[/]" if d["healthy"] else "[bold red]not healthy[/]"
    out.print(f"[bold]sandbox[/] {esc(d['dir'])}: {verdict} (runtime {esc(d['runtime'])}, since {esc(d['created'])})")
    sim, gw = d["simulator"], d["gateway"]
    out.print(f"  simulator  {esc(sim['url'])}  pid {sim['pid']}  " + _running(sim["running"]))
    where = (f"container {esc(gw['container'])}" if d["runtime"] == "docker" else
             f"service {esc(gw['service'])} ({gw.get('desired', '?')} replicas, relay pid {gw['relay']['pid']}, "
             f"namespace {esc(gw['netns'])})" if d["runtime"] == "swarm" else f"pid {gw.get('pid')}")
    health = f", health {esc(gw['health'])}" if gw.get("health") else ""
    out.print(f"  gateway    {esc(gw['url'])}  {where}  {_running(gw.get('running'))}{health}, "
              f"liveliness {'ok' if gw['liveliness'] else 'failed'}, readiness {'ok' if gw['readiness'] else 'failed'}")
    if gw.get("error"):
        out.print(f"             {esc(gw['error'])}")
    for replica in gw.get("replicas") or []:
        out.print(f"  replica {replica['slot']}  {esc(replica['url'] or '-')}  task {esc(replica['state'])}")
    app = d.get("app") or {}
    if app.get("running"):
        where = f"container {esc(app['container'])}" if app.get("container") else f"pid {app['process']['pid']}"
        out.print(f"  app        {esc(app['url'])}  {where}  {_running(True)}, sent {esc(app.get('counts', {}))}")
    elif app.get("running") is None:  # its container may well run: the Docker engine does not answer
        out.print(f"  app        {esc(app['url'])}  container {esc(app['container'])}  {_running(None)}")
    else:
        out.print(f"  app        {_running(False)} (`rollout sandbox app start`)")
    prom = d.get("prometheus")
    if prom:
        jobs = ", ".join(f"{job} {health}" for job, health in sorted(prom["targets"].items())) or "no targets yet"
        out.print(f"  prometheus {esc(prom['url'])}  pid {prom['pid']}  {_running(prom['running'])}, "
                  f"ready {'ok' if prom['ready'] else 'no'}, targets {esc(jobs)}")
    exporter = d.get("node_exporter")
    if exporter:
        out.print(f"  node_exporter {esc(exporter['url'])}  pid {exporter['pid']}  {_running(exporter['running'])}, "
                  f"serving {esc(d['dir'])}/.rollout/rollout.prom")
    receiver = d.get("receiver")
    if receiver:
        out.print(f"  receiver   {esc(receiver['url'])}  pid {receiver['pid']}  {_running(receiver['running'])}, "
                  f"answers {esc(receiver['answer'])}, received {receiver['received']} "
                  "(`rollout sandbox notifications`)")
    faults = sim.get("faults") or {}
    for model, fault in faults.items():
        out.print(f"  fault      {esc(model)}: " + _fault_text(fault))


def _running(running: bool | None) -> str:
    if running is None:  # the Docker engine did not answer
        return "[yellow]unknown[/]"
    return "[green]running[/]" if running else "[bold red]not running[/]"


def _fault_text(fault: dict[str, Any]) -> str:
    parts = []
    if fault.get("status"):
        parts.append(f"status {fault['status']}")
    if fault.get("mode"):
        parts.append(f"mode {fault['mode']}")
    if fault.get("rate") is not None and (fault.get("status") or fault.get("mode")):
        parts.append(f"rate {fault['rate']:g}")
    if fault.get("latency_ms"):
        parts.append(f"latency {fault['latency_ms']} ms")
    if fault.get("retry_after") is not None:
        parts.append(f"retry-after {fault['retry_after']} s")
    parts += [name for name in ("retired", "no_tools", "upstream") if fault.get(name)]
    if fault.get("via", "both") != "both":
        parts.append(f"{fault['via']} path only")
    if fault.get("price"):
        parts.append(f"priced {fault['price']} USD/token")
    return esc(", ".join(parts))


@human(SandboxFaultPayload)
def sandbox_fault_view(out: Any, result: Result[SandboxFaultPayload]) -> None:
    faults = result.payload.faults
    if faults:
        out.print("[bold]faults in force[/]:")
        for model, fault in faults.items():
            out.print(f"  {esc(model)}: {_fault_text(fault)}")
    account = {k: v for k, v in result.payload.account.items() if k in ("quota_left", "rpm") and v is not None}
    if account:
        out.print("[bold]account-wide[/]: " + esc(", ".join(f"{k.replace('_', ' ')} {v}" for k, v in account.items())))


@human(SandboxNotificationsPayload)
def sandbox_notifications_view(out: Any, result: Result[SandboxNotificationsPayload]) -> None:
    d = result.data
    receiver = d["receiver"]
    out.print(f"[bold]receiver[/] {esc(receiver['url'])}  {_running(receiver['running'])}, answers "
              f"{esc(receiver['answer'])}: {len(d['received'])} notification(s)")
    for entry in d["received"]:
        body = entry.get("body") if isinstance(entry.get("body"), dict) else {}
        stage = body.get("stage") or {}
        moved = f" {stage.get('from')}% -> {stage.get('to')}%" if stage.get("to") is not None else ""
        out.print(f"  {esc(entry.get('time'))}  {esc(body.get('severity', '?')):8}  {esc(body.get('event', '?'))}"
                  f"{esc(moved)}  by {esc(body.get('actor', '?'))}: {esc(body.get('summary', ''))}  "
                  f"[dim](answered {esc(entry.get('answer'))}, signature {esc(entry.get('signature'))})[/]")
        for reason in body.get("reasons") or []:
            out.print(f"      - {esc(reason)}")
