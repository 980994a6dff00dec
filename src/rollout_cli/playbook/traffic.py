"""Steps about effects, not files: make the app pick the change up, then watch its traffic move.

`app.reload` runs the workspace's `app.reload` (signal, restart, command; none
when the app watches its files). `verify.traffic` watches the gateway's own
request counter (`/metrics/`, rollout's check requests left out) until the
app's traffic matches the stage: for 0 %, no new app request for a quiet
period; for a share, the observed share within a tolerance once enough
requests were seen (the app's total comes from `app.metrics_url`).
"""

from __future__ import annotations

import math
import os
import signal
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rollout_cli.core.audit import append_line, read_lines
from rollout_cli.core.stage import read_stage
from rollout_cli.core.text import printable
from rollout_cli.core.workspace import AppReload, Workspace
from rollout_cli.errors import CheckFailed, ExitCode, InputError, PlaybookError, RolloutError, UnavailableError
from rollout_cli.gateway.prometheus import MetricsInvalid, MetricsRefused, app_requests, counter_total, scrape
from rollout_cli.io.process import command_line, pid_exists, started_at
from rollout_cli.io.textfile import read_text
from rollout_cli.playbook.context import StepContext
from rollout_cli.playbook.model import Check, Outcome, Preview, Step
from rollout_cli.playbook.program import Run

if TYPE_CHECKING:
    from rollout_cli.io.container import ContainerRuntime

POLL_S = 0.25
SCRAPE_TIMEOUT_S = 5.0  # a gateway under load can take seconds to render /metrics/
APP_COUNTER = "llm_requests_total"
RELOAD_HINT = "does it reload its flags? see app.reload in rollout.yaml (docs/SETUP.md)"


class NotVerifiable(RolloutError):
    """The files are written, but the traffic could not show whether the app followed them."""

    exit_code = ExitCode.HOLD

    def __init__(self, message: str, *, retry: bool = False) -> None:
        super().__init__(message)
        self.retry = retry  # a timeout or a refused connection may pass; an HTTP error will not


PID_FILE_LIMIT = 64  # bytes: a pid and a newline, with room to spare
STARTED_SLACK_S = 2.0  # a process's start time is known to about a second (the boot time has whole seconds)
COMMAND_SHOWN = 160  # characters of a signalled process's command line shown in a step's detail


def reload_app(ws: Workspace, timeout: float) -> str:
    """Run `app.reload`; what was done, in words. Raises CheckFailed / UnavailableError / InputError."""
    how = ws.app.reload
    if how.kind == "none":
        return how.describe()
    if how.kind == "command":
        return _command(how, max(timeout, 0.1)).run(StepContext(ws)).detail
    if how.container:
        containers = _containers(how)
        if how.kind == "restart":
            after = containers.restart(how.container, timeout=int(timeout))
            return f"restarted container {how.container} ({after.status})"
        containers.signal(how.container, "SIG" + how.signal)
        return f"sent SIG{how.signal} to container {how.container}"
    pid = app_pid(how)
    try:
        os.kill(pid, getattr(signal, "SIG" + how.signal))
    except ProcessLookupError:
        raise UnavailableError(f"app.reload: no process {pid} (from {how.pid_file}); is the app running?") from None
    return f"sent SIG{how.signal} to pid {pid} ({_command_of(pid, how.process)}) (from {how.pid_file})"


def _command_of(pid: int, process: str | None) -> str:
    """What the signalled process runs, short and on one line: the operator sees which program got it.

    A long command line loses its middle, not its end (the script an interpreter runs is often
    past a long interpreter path); the text `app.reload.signal.process` checked is always shown.
    """
    command = printable(command_line(pid) or "?")
    if len(command) > COMMAND_SHOWN:
        half = (COMMAND_SHOWN - 3) // 2
        command = command[:half] + "..." + command[-half:]
    if process is not None and process not in command:
        command += f", which contains {process!r}"
    return command


def _command(how: AppReload, timeout: float) -> Step:
    # Run as a `run` step runs a program (no shell, timeout, bounded output, its last line on failure).
    return Run(argv=list(how.argv), timeout=timeout)


def _containers(how: AppReload) -> ContainerRuntime:
    # lazy: start-up time (only a container reload needs the Docker SDK)
    from rollout_cli.io.container import ContainerRuntime

    return ContainerRuntime(setting=f"app.reload.{how.kind}.container")


def app_pid(how: AppReload) -> int:
    """The pid in `app.reload`'s pid file, once it is sure to be the app's own process.

    The file is read like every other file (regular files only, bounded: a FIFO
    there cannot hang a rollback). A pid of 0 or 1, or rollout's own (or its
    process group's), is refused: `kill` would reach rollout itself, its group
    or init. The process must have started before the file was last written; one
    that started later got a recycled pid from an app that is gone.
    """
    assert how.pid_file is not None
    where = f"app.reload.signal.pid_file {how.pid_file}"
    try:
        text = read_text(how.pid_file, limit=PID_FILE_LIMIT, label="app.reload.signal.pid_file ").strip()
        written = how.pid_file.stat().st_mtime
    except FileNotFoundError:
        raise UnavailableError(f"{where} does not exist; is the app running?") from None
    if not (text.isascii() and text.isdigit()):
        raise InputError(f"{where} holds {text[:20]!r}, not a pid; fix the file or app.reload")
    pid = int(text)
    if pid <= 1:
        raise InputError(f"{where} holds pid {pid}, which is never an app's (0 is rollout's own process group, "
                         "1 is init); fix the file or app.reload")
    if pid in (os.getpid(), os.getpgrp()):
        raise InputError(f"{where} holds pid {pid}, rollout's own process or process group; point it at the "
                         "app's pid file")
    if not pid_exists(pid):
        raise UnavailableError(f"app.reload: no process {pid} (from {how.pid_file}); is the app running?")
    started = started_at(pid)
    if started is not None and started > written + STARTED_SLACK_S:
        raise UnavailableError(
            f"app.reload: pid {pid} (from {how.pid_file}) started {started - written:.0f} s after the file was "
            "written: the app that wrote it is gone and its pid now belongs to another program; is the app running?"
        )
    command = command_line(pid)
    if command is None:
        raise UnavailableError(f"app.reload: pid {pid} (from {how.pid_file}) has no command line (a kernel thread "
                               "or a process that has exited), never an app; is the app running?")
    if how.process is not None and how.process not in command:
        raise UnavailableError(
            f"app.reload: pid {pid} (from {how.pid_file}) runs {printable(command)[:120]!r}, which does not contain "
            f"{how.process!r} (app.reload.signal.process): not the app; is the app running?")
    return pid


@dataclass
class ReloadApp(Step):
    """Make the app pick up its new files (`app.reload` in rollout.yaml)."""

    type = "app.reload"
    timeout: float = 20.0

    def describe(self, ctx: StepContext) -> str:
        return "reload the app: " + ctx.workspace.app.reload.describe()

    def preview(self, ctx: StepContext) -> Preview:
        how = ctx.workspace.app.reload
        return Preview(self.describe(ctx), changes=how.kind != "none")

    def preconditions(self, ctx: StepContext) -> list[Check]:
        """What the run checks before it acts: the same pid checks, the container, the program."""
        how = ctx.workspace.app.reload
        if how.kind == "command":
            return _command(how, self.timeout).preconditions(ctx)
        if how.container:
            container = how.container
            try:
                state = _containers(how).state(container)
            except RolloutError as exc:
                return [Check(f"app container {container} exists", False, str(exc), int(exc.exit_code))]
            return [Check(f"app container {container} exists", True, f"container {state.name} ({state.status})")]
        if how.pid_file is not None:
            try:
                pid = app_pid(how)
            except RolloutError as exc:
                return [Check("app pid file names a running process", False, str(exc), int(exc.exit_code))]
            return [Check("app pid file names a running process", True,
                          f"pid {pid} ({_command_of(pid, how.process)}), started before its pid file was written")]
        return []

    def run(self, ctx: StepContext) -> Outcome:
        if ctx.workspace.app.reload.kind == "none":
            return Outcome("unchanged", ctx.workspace.app.reload.describe())
        return Outcome("ok", reload_app(ctx.workspace, ctx.time_left(self.timeout)))


@dataclass
class VerifyTraffic(Step):
    """Watch the app's traffic through the gateway until it matches the stage, or the deadline."""

    type = "verify.traffic"
    stops_by_default = False  # the files are written either way; later levels still run
    percentage: int | None = None  # default: the stage the files say now
    deadline: float = 30.0
    quiet: float = 5.0  # 0 %: this long without a new app request through the gateway
    tolerance: float = 5.0  # a share: observed within this many points of the stage
    min_requests: int = 40  # a share: app requests needed before judging it
    idle: float = 5.0  # no app request at all for this long: not verifiable, without waiting out the deadline

    def validate(self, where: str) -> None:
        if self.percentage is not None and not 0 <= self.percentage <= 100:
            raise PlaybookError(f"{where}: percentage {self.percentage} is outside 0..100")
        if self.quiet >= self.deadline:
            raise PlaybookError(f"{where}: quiet ({self.quiet:g} s) must be shorter than deadline ({self.deadline:g} s)")

    def describe(self, ctx: StepContext) -> str:
        target = f"{self.percentage}%" if self.percentage is not None else "the stage in the files"
        return f"verify the app's traffic through the gateway follows {target} (within {self.deadline:g} s)"

    def preview(self, ctx: StepContext) -> Preview:
        return Preview("would " + self.describe(ctx), changes=False)

    def run(self, ctx: StepContext) -> Outcome:
        target = self.percentage if self.percentage is not None else read_stage(ctx.workspace).percentage
        files_at = time.monotonic() - ctx.started
        deadline = ctx.time_left(self.deadline)
        if deadline <= 0:
            raise NotVerifiable(f"not verifiable: the level's time budget was spent before this step "
                                f"(files at {target}% at +{files_at:.2f} s)")
        watch = TrafficWatch(ctx.workspace, ends=time.monotonic() + deadline)
        try:
            if target == 0:
                detail = watch.until_stopped(ctx.started, deadline, self.quiet)
            else:
                detail = watch.until_share(ctx.started, target, deadline, self.tolerance, self.min_requests,
                                           self.idle)
        finally:
            watch.close()
        return Outcome("ok", f"files at {target}% at +{files_at:.2f} s; {detail}")


class TrafficWatch:
    """Scrapes of the gateway's app-request counter (and the app's own, for a share).

    Each scrape is read whole within SCRAPE_TIMEOUT_S in all, and never past
    `ends` (monotonic), the step's deadline: a gateway that drips its answer
    cannot hold a rollback past its budget.
    """

    def __init__(self, ws: Workspace, ends: float | None = None) -> None:
        self.ws = ws
        self.metrics_url = ws.gateway.url.rstrip("/") + "/metrics/"
        self.ends = ends
        self._replica_urls: list[str] | None = None  # a swarm service's, read once: see _metrics_urls

    def _metrics_urls(self) -> list[str]:
        """Where the gateway's app-request counter is read: its URL, or each replica's of a swarm service.

        A swarm's gateway.url is a load balancer: each scrape would read one replica's counter, and two
        replicas' differing counts would look like traffic (or a restart) on every other scrape. So the
        replicas are listed once (their ports do not change during a step) and their counters added up.
        """
        if self.ws.gateway.runtime != "swarm":
            return [self.metrics_url]
        if self._replica_urls is None:
            from rollout_cli.gateway.runtime import runtime_for  # lazy: the Docker engine only for a swarm

            try:
                listed = runtime_for(self.ws).replicas() or []
            except RolloutError as exc:
                raise NotVerifiable(f"not verifiable: the swarm's replicas cannot be listed: {exc}") from None
            urls = [r.url.rstrip("/") + "/metrics/" for r in listed if r.url]
            if not urls:
                raise NotVerifiable(f"not verifiable: service {self.ws.gateway.service} has no replica with a port "
                                    "to read its counter at")
            self._replica_urls = urls
        return self._replica_urls

    def _scrape_timeout(self) -> float:
        if self.ends is None:
            return SCRAPE_TIMEOUT_S
        left = self.ends - time.monotonic()
        if left <= 0:
            raise NotVerifiable("not verifiable: the step's deadline passed before the metrics answered")
        return min(SCRAPE_TIMEOUT_S, left)

    def close(self) -> None:
        """Nothing held open: each scrape is one request."""

    def gateway_count(self) -> float | None:
        """App requests the gateway has served; None when nothing listens at the gateway's address.

        Raises NotVerifiable when the gateway answers but its metrics cannot be read.
        """
        urls = self._metrics_urls()
        total, silent = 0.0, []
        for url in urls:
            try:
                text = scrape(url, self.ws.gateway.key.value, timeout=self._scrape_timeout())
            except UnavailableError as exc:
                raise NotVerifiable(f"not verifiable: {exc}; enable the prometheus callback and check the master "
                                    "key", retry=not isinstance(exc, MetricsRefused)) from None
            if text is None:
                silent.append(url)
                continue
            try:
                total += app_requests(text, f"the gateway's {url}")
            except MetricsInvalid as exc:
                raise NotVerifiable(f"not verifiable: {exc}") from None
        if len(silent) == len(urls):
            return None
        if silent:  # one replica down while others answer: the sum would be short, so no reading at all
            raise NotVerifiable(f"not verifiable: nothing answers at {silent[0]} (one of the service's replicas); "
                                "the sum over its replicas would be incomplete")
        return total

    def first_count(self, deadline: float) -> float | None:
        """The first reading; a busy gateway gets until the deadline to answer one scrape."""
        give_up = min(time.monotonic() + deadline, self.ends or float("inf"))
        while True:
            try:
                return self.gateway_count()
            except NotVerifiable as exc:
                if not exc.retry or time.monotonic() >= give_up:
                    raise
                time.sleep(POLL_S)

    def until_stopped(self, started: float, deadline: float, quiet: float) -> str:
        first = self.first_count(deadline)
        if first is None:
            return f"the gateway at {self.ws.gateway.url} does not answer: no app traffic can pass through it"
        begin = time.monotonic()
        last, last_rise = first, None
        history: list[tuple[float, float]] = [(begin, first)]
        ends = min(begin + deadline, self.ends or float("inf"))
        failure: NotVerifiable | None = None  # the latest scrape's, when it failed
        while True:
            time.sleep(POLL_S)
            value: float | None = last
            read = False
            if time.monotonic() < ends:
                try:
                    value, failure, read = self.gateway_count(), None, True
                except NotVerifiable as exc:
                    # One failed scrape (the gateway busy) is not a verdict; the next one decides. Quiet
                    # is proven only between two readings that were read whole.
                    failure = exc
            now = time.monotonic()
            if value is None:
                return (f"the gateway stopped answering at +{now - started:.1f} s: "
                        "no app traffic can pass through it")
            if value < last:  # the gateway restarted: its counters began again
                last = value
            elif value > last:
                last, last_rise = value, now
            if read:
                history.append((now, value))
                if now - (last_rise or begin) >= quiet:
                    break
            if now >= ends:
                # A scrape cut short by the deadline proves nothing either way, but whole readings that rose
                # (and never went quiet, or the loop would have ended) do: the app still sends.
                if failure is not None and last_rise is None:
                    raise NotVerifiable(f"{failure} (by the step's deadline, {deadline:g} s)")
                window = [(t, v) for t, v in history if t >= now - 30.0]  # the last 30 s: the rate now
                span = window[-1][0] - window[0][0]
                rate = (window[-1][1] - window[0][1]) / (span / 60) if span > 0 else 0.0
                raise CheckFailed(
                    f"the app still sends {rate:.0f} req/min through the gateway {now - started:.0f} s after the "
                    f"flag went to 0%: {RELOAD_HINT}"
                )
        if last_rise is not None:
            return f"app traffic through the gateway stopped at +{last_rise - started:.1f} s"
        if first == 0:
            raise NotVerifiable("not verifiable: no app traffic in the window (the gateway has served no app "
                                "request since it started); the files are written")
        return (f"no app request through the gateway from +{begin - started:.1f} s on "
                f"({quiet:g} s quiet): app traffic had stopped by then")

    def app_total(self) -> float:
        url = self.ws.app.metrics_url
        if not url:
            raise NotVerifiable("not verifiable: a share needs the app's own request count; "
                                "set app.metrics_url in rollout.yaml (docs/SETUP.md)")
        try:
            text = scrape(url, timeout=self._scrape_timeout())
        except UnavailableError as exc:
            text, reason = None, str(exc)
        else:
            reason = "connection refused"
        if text is None:
            raise NotVerifiable(f"not verifiable: the app's metrics at {url} do not answer ({reason})")
        try:
            return counter_total(text, APP_COUNTER, f"the app's metrics at {url}")
        except MetricsInvalid as exc:
            raise NotVerifiable(f"not verifiable: {exc}") from None

    def until_share(self, started: float, target: int, deadline: float, tolerance: float, min_requests: int,
                    idle: float) -> str:
        gateway0, app0 = self.first_count(deadline), self.app_total()
        if gateway0 is None:
            raise CheckFailed(f"the gateway at {self.ws.gateway.url} does not answer: no traffic can reach it "
                              f"at {target}%")
        begin = time.monotonic()
        ends = min(begin + deadline, self.ends or float("inf"))
        share = None
        while time.monotonic() < ends:
            time.sleep(POLL_S * 4)
            gateway, app = self.gateway_count(), self.app_total()
            if gateway is None:
                raise CheckFailed(f"the gateway at {self.ws.gateway.url} stopped answering")
            sent, through = app - app0, gateway - gateway0
            if sent <= 0:
                if time.monotonic() - begin >= idle:
                    break
                continue
            share = 100 * through / sent
            if sent >= min_requests and abs(share - target) <= tolerance:
                return (f"observed {share:.1f}% of {sent:.0f} app requests through the gateway "
                        f"at +{time.monotonic() - started:.1f} s (stage {target}%, tolerance ±{tolerance:g})")
        if share is None:
            raise NotVerifiable(f"not verifiable: no app traffic in the window ({idle:g} s); the files are written")
        if sent < min_requests:
            raise NotVerifiable(f"not verifiable: only {sent:.0f} app requests in {deadline:g} s "
                                f"(need {min_requests}); observed {share:.1f}% so far")
        raise CheckFailed(f"the app sends {share:.1f}% of {sent:.0f} requests through the gateway, not "
                          f"{target}% ± {tolerance:g}, {deadline:g} s after the files changed: {RELOAD_HINT}")


@dataclass
class VerifyApp(Step):
    """With the gateway stopped (level 3): the app's direct path still answers, where `app.probe` names a probe."""

    type = "verify.app"
    timeout: float = 10.0

    def describe(self, ctx: StepContext) -> str:
        probe = ctx.workspace.app.probe
        return f"verify the app's direct path answers ({probe})" if probe else "verify the app's direct path (no app.probe)"

    def preview(self, ctx: StepContext) -> Preview:
        return Preview("would " + self.describe(ctx), changes=False)

    def run(self, ctx: StepContext) -> Outcome:
        probe = ctx.workspace.app.probe
        if not probe:
            return Outcome("skipped", "not checked: rollout.yaml names no app.probe for the app's direct path")
        started = time.monotonic()
        try:
            answered = scrape(probe, timeout=self.timeout)
        except UnavailableError as exc:
            raise CheckFailed(f"the app's direct path does not answer: {exc}") from None
        if answered is None:
            raise CheckFailed(f"the app's probe {probe} refuses connections: is the app running?")
        took = (time.monotonic() - started) * 1000
        return Outcome("ok", f"the app's direct path answers: {probe} in {took:.0f} ms, without the gateway")


def check_traffic(ws: Workspace, percentage: int, started: float, deadline: float = 30.0) -> dict[str, object]:
    """`advance`'s traffic post-check: status ok | not-verifiable | failed, and the detail."""
    step = VerifyTraffic(percentage=percentage, deadline=deadline)
    try:
        outcome = step.run(StepContext(ws, started=started))
    except NotVerifiable as exc:
        return {"status": "not-verifiable", "detail": str(exc)}
    except RolloutError as exc:
        return {"status": "failed", "detail": str(exc)}
    return {"status": "ok", "detail": outcome.detail}


OBSERVED_NAME = "traffic.jsonl"
OBSERVE_WINDOW_S = 300.0
FIRST_LOOK_S = 2.0


def observe_share(ws: Workspace, since: float | None = None) -> dict[str, object] | None:
    """The app's observed share through the gateway over (up to) the last 5 minutes, for `status`.

    Each call records the two counters (the gateway's app requests, the app's own
    `llm_requests_total`) in `.rollout/traffic.jsonl` and compares with the oldest
    record of the window (and not older than `since`, a Unix time: the stage's last
    change); with none, it looks twice, FIRST_LOOK_S apart. None when the workspace
    names no `app.metrics_url`.
    """
    if not ws.app.metrics_url:
        return None
    watch = TrafficWatch(ws)
    failure: list[str] = []

    def unknown(why: str) -> dict[str, object]:
        # A share rollout could not read is unknown, never a number (0 % of an HTML page, -5 %).
        return {"share": None, "requests": 0, "window_s": 0.0, "text": f"observed share unknown: {why}"}

    try:
        def look() -> dict[str, float] | None:
            try:
                gateway, app = watch.gateway_count(), watch.app_total()
            except NotVerifiable as exc:
                failure.append(str(exc).removeprefix("not verifiable: "))
                return None
            if gateway is None:
                failure.append(f"the gateway at {ws.gateway.url} does not answer")
                return None
            return {"ts": time.time(), "gateway": gateway, "app": app}

        now = look()
        if now is None:
            return unknown(failure[-1])
        path = ws.state_dir / OBSERVED_NAME
        earlier = [r for r in read_lines(path)
                   if max(now["ts"] - OBSERVE_WINDOW_S, since or 0) <= _number(r.get("ts")) < now["ts"] - 1
                   and 0 <= _number(r.get("gateway")) <= now["gateway"] and 0 <= _number(r.get("app")) <= now["app"]]
        then: dict[str, float] | None = earlier[0] if earlier else None
        if then is None:
            then, later = now, None
            time.sleep(FIRST_LOOK_S)
            later = look()
            if later is None:
                return unknown(failure[-1])
            now = later
        append_line(path, now)
    finally:
        watch.close()
    sent, through, span = now["app"] - then["app"], now["gateway"] - then["gateway"], now["ts"] - then["ts"]
    window = f"{span / 60:.1f} min" if span >= 60 else f"{span:.0f} s"
    if sent <= 0:
        return {"share": None, "requests": 0, "window_s": round(span, 1),
                "text": f"observed: no app traffic seen in the last {window}"}
    share = round(100 * through / sent, 1)
    return {"share": share, "requests": int(sent), "window_s": round(span, 1),
            "text": f"observed {share}% of {int(sent):,} app requests in the last {window}"}


def _number(value: object) -> float:
    """A stored figure, or NaN (which every comparison rejects) when the line holds something else."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


TRAFFIC_STEPS: tuple[type[Step], ...] = (ReloadApp, VerifyTraffic, VerifyApp)
