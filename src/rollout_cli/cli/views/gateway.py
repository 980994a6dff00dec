"""Human renderings of `rollout gateway ...` (plain text: `gateway status` starts without rich), and the wait display."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from rollout_cli.cli.render import TextOut, console, esc, plain, text
from rollout_cli.core.result import Result
from rollout_cli.gateway.control import (
    GatewayActionPayload,
    GatewayLogsPayload,
    GatewayStatusPayload,
    GatewayWaitPayload,
)


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


def _state_lines(out: TextOut, d: dict[str, Any]) -> None:
    state = d.get("state")
    if d.get("runtime_error"):
        out.print(f"  runtime    {out.style('unknown', 'bold red')}: {plain(d['runtime_error'])}")
    if not state:
        return
    line = f"  {plain(d['runtime'])}     {out.style(plain(state['status']), 'green' if state['running'] else 'bold red')}"
    if state.get("health"):
        line += f", health {plain(state['health'])}"
    if state.get("uptime_s") is not None:
        line += f", up {_duration(state['uptime_s'])}"
    out.print(line + f"  ({plain(state['name'])}, {plain(state['id'])})")
    details = [f"image {plain(state['image'])}", f"restarts {state['restart_count']}"]
    if state.get("exit_code") is not None:
        details.append(f"exit code {state['exit_code']}")
    if state.get("oom_killed"):
        details.append(out.style("OOM-killed", "bold red"))
    out.print("             " + ", ".join(details))


def _probe(out: TextOut, name: str, probe: dict[str, Any]) -> str:
    if probe["ok"]:
        return f"  {name:<10} {out.style('ok', 'green')} ({probe['latency_ms']:.0f} ms)"
    reason = f"HTTP {probe['status']}" if probe["status"] is not None else plain(probe.get("error") or "no answer")
    return f"  {name:<10} {out.style('failed', 'bold red')}: {reason}"


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


@text(GatewayStatusPayload)
def gateway_status_view(out: TextOut, result: Result[GatewayStatusPayload]) -> None:
    d = result.data
    verdict = out.style("healthy", "green") if result.payload.healthy else out.style("not healthy", "bold red")
    out.print(f"{out.style('gateway', 'bold')} {plain(d['url'])}: {verdict}")
    _state_lines(out, d)
    out.print(_probe(out, "liveliness", d["liveliness"]))
    out.print(_probe(out, "readiness", d["readiness"]))
    _replica_lines(out, d)


def _replica_lines(out: TextOut, d: dict[str, Any]) -> None:
    """A swarm service's replicas, one line each: the task, then its own probes."""
    replicas = d.get("replicas")
    if replicas is None:
        return
    running = sum(1 for r in replicas if r["state"] == "running")
    out.print(f"  replicas   {running}/{d['desired']} running")
    for r in replicas:
        task = f"{plain(r['state'])}" + (f" ({plain(r['error'])})" if r.get("error") else "")
        where = f"node {plain(r['node'])}, task {plain(r['task_id'])}, restarts {r['restarts']}"
        verdict = out.style("ok", "green") if r["healthy"] else out.style("not ready", "bold red")
        out.print(f"  replica {r['slot']:<2} {verdict}: task {task}, {where}, {plain(r['url'] or 'no port')}")
        for name in ("liveliness", "readiness"):
            if r["state"] == "running":
                out.print("    " + _probe(out, name, r[name]).lstrip())


@text(GatewayActionPayload)
def gateway_action_view(out: TextOut, result: Result[GatewayActionPayload]) -> None:
    d = result.data
    _state_lines(out, d)
    log_lines(out, d)


def log_lines(out: TextOut, d: dict[str, Any]) -> None:
    """The last log lines a failed start or wait carries, dimmed, each one made safe alone."""
    lines = d.get("log_lines") or []
    if lines:
        out.print(f"{out.style(f'last {len(lines)} log lines', 'bold')}:")
        for line in lines:
            out.print(out.style("  " + plain(line), "dim"))


@text(GatewayWaitPayload)
def gateway_wait_view(out: TextOut, result: Result[GatewayWaitPayload]) -> None:
    log_lines(out, result.data)


@text(GatewayLogsPayload)
def gateway_logs_view(out: TextOut, result: Result[GatewayLogsPayload]) -> None:
    for line in result.payload.lines:
        out.print(plain(line))
