"""Human renderings of `rollout gateway ...` and `rollout sandbox ...`, and the wait progress display."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rollout_cli.cli.render import console, esc, human
from rollout_cli.core.result import Result
from rollout_cli.gateway.control import (
    GatewayActionPayload,
    GatewayLogsPayload,
    GatewayStatusPayload,
    GatewayWaitPayload,
)
from rollout_cli.sandbox.commands import SandboxFaultPayload, SandboxStatusPayload, SandboxUpPayload


class _Display:
    """The progress callback handed to the core: a spinner on a terminal, plain step lines elsewhere."""

    def __init__(self, json_output: bool, show_steps: bool) -> None:
        self.quiet = json_output
        self.show_steps = show_steps
        self.err = console(stderr=True)
        self.live = not json_output and sys.stderr.isatty()
        self._status: Any = None
        self._step = "waiting for the gateway"

    def __call__(self, seen: Any) -> None:  # WaitProgress
        if self._status is not None:
            self._status.update(f"{esc(self._step)}: {esc(seen.summary)} "
                                f"[dim]({seen.elapsed_s:.0f}/{seen.timeout_s:g} s)[/]")

    def step(self, text: str) -> None:
        self._step = text
        if self._status is not None:
            self._status.update(esc(text))
        elif self.show_steps and not self.quiet:
            self.err.print(f"[dim]{esc(text)}[/]")

    def __enter__(self) -> _Display:
        if self.live:
            self._status = self.err.status(esc(self._step))
            self._status.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.__exit__(*exc)
            self._status = None


@contextmanager
def wait_display(json_output: bool, steps: bool = False) -> Iterator[_Display]:
    with _Display(json_output, steps) as display:
        yield display


def _state_lines(out: Any, d: dict[str, Any]) -> None:
    state = d.get("state")
    if d.get("runtime_error"):
        out.print(f"  runtime    [bold red]unknown[/]: {esc(d['runtime_error'])}")
    if not state:
        return
    style = "green" if state["running"] else "bold red"
    line = f"  {esc(d['runtime'])}     [{style}]{esc(state['status'])}[/]"
    if state.get("health"):
        line += f", health {esc(state['health'])}"
    if state.get("uptime_s") is not None:
        line += f", up {_duration(state['uptime_s'])}"
    out.print(line + f"  ({esc(state['name'])}, {esc(state['id'])})")
    details = [f"image {esc(state['image'])}", f"restarts {state['restart_count']}"]
    if state.get("exit_code") is not None:
        details.append(f"exit code {state['exit_code']}")
    if state.get("oom_killed"):
        details.append("[bold red]OOM-killed[/]")
    out.print("             " + ", ".join(details))


def _probe(name: str, probe: dict[str, Any]) -> str:
    if probe["ok"]:
        return f"  {name:<10} [green]ok[/] ({probe['latency_ms']:.0f} ms)"
    reason = f"HTTP {probe['status']}" if probe["status"] is not None else esc(probe.get("error") or "no answer")
    return f"  {name:<10} [bold red]failed[/]: {reason}"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


@human(GatewayStatusPayload)
def gateway_status_view(out: Any, result: Result[GatewayStatusPayload]) -> None:
    d = result.data
    verdict = "[green]healthy[/]" if result.payload.healthy else "[bold red]not healthy[/]"
    out.print(f"[bold]gateway[/] {esc(d['url'])}: {verdict}")
    _state_lines(out, d)
    out.print(_probe("liveliness", d["liveliness"]))
    out.print(_probe("readiness", d["readiness"]))


@human(GatewayActionPayload)
def gateway_action_view(out: Any, result: Result[GatewayActionPayload]) -> None:
    d = result.data
    _state_lines(out, d)
    _log_lines(out, d)


def _log_lines(out: Any, d: dict[str, Any]) -> None:
    lines = d.get("log_lines") or []
    if lines:
        out.print(f"[bold]last {len(lines)} log lines[/]:")
        for line in lines:
            out.print("  " + esc(line), style="dim")


@human(GatewayWaitPayload)
def gateway_wait_view(out: Any, result: Result[GatewayWaitPayload]) -> None:
    _log_lines(out, result.data)


@human(GatewayLogsPayload)
def gateway_logs_view(out: Any, result: Result[GatewayLogsPayload]) -> None:
    for line in result.payload.lines:
        out.print(esc(line))


@human(SandboxUpPayload)
def sandbox_up_view(out: Any, result: Result[SandboxUpPayload]) -> None:
    d = result.data
    if not result.payload.up:
        _log_lines(out, d)
        return
    out.print(f"[bold]sandbox[/] {esc(d['dir'])}  (runtime {esc(d['runtime'])})")
    out.print(f"  gateway    {esc(d['gateway_url'])}" + (f"  container {esc(d['container'])}" if d["container"] else
                                                         f"  pid {d['pids'].get('gateway')}"))
    out.print(f"  simulator  {esc(d['simulator_url'])}  pid {d['pids'].get('simulator')}")
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
    where = f"container {esc(gw['container'])}" if d["runtime"] == "docker" else f"pid {gw.get('pid')}"
    health = f", health {esc(gw['health'])}" if gw.get("health") else ""
    out.print(f"  gateway    {esc(gw['url'])}  {where}  {_running(gw.get('running'))}{health}, "
              f"liveliness {'ok' if gw['liveliness'] else 'failed'}, readiness {'ok' if gw['readiness'] else 'failed'}")
    if gw.get("error"):
        out.print(f"             {esc(gw['error'])}")
    app = d.get("app") or {}
    if app.get("running"):
        where = f"container {esc(app['container'])}" if app.get("container") else f"pid {app['process']['pid']}"
        out.print(f"  app        {esc(app['url'])}  {where}  {_running(True)}, sent {app.get('counts', {})}")
    else:
        out.print(f"  app        {_running(False)} (`rollout sandbox app start`)")
    faults = sim.get("faults") or {}
    for model, fault in faults.items():
        out.print(f"  fault      {esc(model)}: " + _fault_text(fault))


def _running(running: bool | None) -> str:
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
    return esc(", ".join(parts))


@human(SandboxFaultPayload)
def sandbox_fault_view(out: Any, result: Result[SandboxFaultPayload]) -> None:
    faults = result.payload.faults
    if faults:
        out.print("[bold]faults in force[/]:")
        for model, fault in faults.items():
            out.print(f"  {esc(model)}: {_fault_text(fault)}")
