"""The core of `rollout sandbox up|down|status|fault`: each returns one Result."""

from __future__ import annotations

import os
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollout_cli.core.result import Result
from rollout_cli.errors import ExitCode, InputError, RolloutError, UnavailableError
from rollout_cli.gateway.control import GatewayNotHealthy
from rollout_cli.sandbox import world
from rollout_cli.sandbox.state import load_state
from rollout_cli.simulator import CALLERS, VIA, FaultBook, SimulatorAdmin

NO_PROMETHEUS = ("Prometheus is not installed, so the sandbox runs without it: install Debian's "
                 "(`apt-get install --no-install-recommends prometheus`, or scripts/setup.sh) and run `sandbox up` again")
NO_NODE_EXPORTER = ("node_exporter is not installed, so Prometheus does not scrape rollout's stage metrics "
                    "(.rollout/rollout.prom): install Debian's (`apt-get install --no-install-recommends "
                    "prometheus-node-exporter`, or scripts/setup.sh) and run `sandbox up` again")


def next_steps(root: Path) -> list[str]:
    """What to try next, with this sandbox's folder spelled out."""
    w = shlex.quote(str(root))
    implied = root == Path(world.DEFAULT_DIR).absolute() and not os.environ.get("ROLLOUT_WORKSPACE")
    fault_w = "" if implied else f"-w {w} "
    return [
        f"rollout -w {w} health",
        f"rollout -w {w} status",
        f"rollout -w {w} rollback --level 1 --drill",
        f"rollout {fault_w}sandbox fault glm-4.5-air --status 500",
        f"rollout sandbox down {w}",
    ]


def _next_lines(root: Path) -> list[str]:
    return ["next, try:", *(f"  {command}" for command in next_steps(root))]


@dataclass(frozen=True)
class SandboxUpPayload:
    """`rollout sandbox up`: what runs where, or (up=False) why the gateway did not come up."""

    dir: str
    info: world.SandboxInfo | None = None  # None: it did not come up
    next: list[str] = field(default_factory=list)
    error: str | None = None
    log_lines: list[str] = field(default_factory=list)
    waited_s: float | None = None

    @property
    def up(self) -> bool:
        return self.info is not None

    def to_json(self) -> dict[str, Any]:
        if self.info is None:
            return {"dir": self.dir, "up": False, "error": self.error, "log_lines": self.log_lines,
                    "waited_s": self.waited_s}
        return {**self.info.to_json(), "up": True, "next": self.next}


@dataclass(frozen=True)
class SandboxDownPayload:
    """`rollout sandbox down`: what was stopped, and the HTML report of the run written before it stopped."""

    dir: str
    stopped: list[str]
    report: str | None = None  # DIR/report.html, or None: not written (nothing was up, --no-report, or it failed)

    def to_json(self) -> dict[str, Any]:
        return {"dir": self.dir, "stopped": self.stopped, "report": self.report}


@dataclass(frozen=True)
class SandboxStatusPayload:
    """`rollout sandbox status`: `world.status()` as it found it, and what to try next when it is up."""

    status: dict[str, Any]
    next: list[str] | None = None

    @property
    def up(self) -> bool:
        return bool(self.status["up"])

    @property
    def healthy(self) -> bool:
        return bool(self.status.get("healthy"))

    def to_json(self) -> dict[str, Any]:
        return {**self.status, "next": self.next} if self.next is not None else dict(self.status)


@dataclass(frozen=True)
class SandboxFaultPayload:
    """`rollout sandbox fault`: the faults in force after the change."""

    dir: str
    simulator_url: str
    faults: dict[str, Any]
    account: dict[str, Any] = field(default_factory=dict)  # quota_left, rpm, daily_limit: account-wide

    def to_json(self) -> dict[str, Any]:
        return {"dir": self.dir, "simulator_url": self.simulator_url, "faults": self.faults, "account": self.account}


def up(root: Path, *, progress: Any = None, step: Any = None, **options: Any) -> Result[SandboxUpPayload]:
    """Start the sandbox; a gateway that does not come up is exit 4 with its last log lines."""

    try:
        info = world.up(root, progress=progress, step=step, **options)
    except GatewayNotHealthy as exc:
        failed = SandboxUpPayload(str(root), error=exc.message, log_lines=exc.log_lines, waited_s=exc.waited_s)
        return Result("sandbox up", failed, [exc.message + "; everything it started was stopped"],
                      ExitCode.UNAVAILABLE)
    if info.already_up:
        messages = [f"the sandbox in {info.root} is already up and healthy: nothing to do "
                    f"(`rollout sandbox down {shlex.quote(str(info.root))}` stops it)"]
    else:
        messages = [f"sandbox up in {info.took_s:g} s: gateway {info.gateway_url} ({info.runtime}), "
                    f"simulator {info.simulator_url}, "
                    + (f"Prometheus {info.prometheus_url}" if info.prometheus_url else "no Prometheus")]
    if info.prometheus_url is None:
        messages.append(NO_PROMETHEUS)
    elif "node_exporter" not in info.pids:
        messages.append(NO_NODE_EXPORTER)
    payload = SandboxUpPayload(str(info.root), info, next_steps(info.root))
    return Result("sandbox up", payload, messages + _next_lines(info.root))


REPORT_NAME = "report.html"


def down(root: Path, *, report: bool = True) -> Result[SandboxDownPayload]:
    """Stop what `up` recorded; harmless (exit 0) when nothing is up.

    With `report`, first the run's HTML report (`rollout report --html DIR/report.html`): the last moment the
    gateway, the app and Prometheus can still be asked. Its verdict does not change down's exit code.
    """
    messages = []
    written = None
    if report and load_state(root.absolute()) is not None:
        written, said = _final_report(root.absolute())
        messages.append(said)
    stopped = world.down(root)
    if stopped:
        messages.append(f"stopped {', '.join(stopped)}; the files in {root} stay "
                        f"(`rollout sandbox up {shlex.quote(str(root))}` starts it again)")
    else:
        messages.append(f"nothing to stop: no sandbox is running in {root}")
    return Result("sandbox down", SandboxDownPayload(str(root), stopped, written), messages)


def _final_report(root: Path) -> tuple[str | None, str]:
    """The report of the run as DIR/report.html, and what to say about it; a failure is said, never raised."""
    from rollout_cli.core.workspace import load_workspace
    from rollout_cli.rollout.report import report  # lazy: the report (and matplotlib) only when one is written

    target = root / REPORT_NAME
    try:
        verdict = report(load_workspace(root), html=target).payload.decision.verdict.value
    except RolloutError as exc:
        return None, f"no HTML report of the run: {exc}"
    except Exception as exc:  # a bug in the report must never keep the sandbox running: down goes on
        return None, f"no HTML report of the run: internal error {type(exc).__name__}; run `rollout report --debug`"
    return str(target), f"the report of this run ({verdict}): {target}"


def status(root: Path) -> Result[SandboxStatusPayload]:
    found = world.status(root)
    if not found["up"]:
        return Result("sandbox status", SandboxStatusPayload(found),
                      [f"no sandbox is up in {root}; start one with `rollout sandbox up {shlex.quote(str(root))}`"],
                      ExitCode.UNAVAILABLE)
    payload = SandboxStatusPayload(found, next_steps(root))
    if found["gateway"].get("engine_answers") is False:  # `sandbox up` could not fix that: say what is wrong
        return Result("sandbox status", payload, [
            f"the sandbox in {root} runs its gateway in Docker: {found['gateway']['error']}"
        ], ExitCode.UNAVAILABLE)
    if payload.healthy:
        return Result("sandbox status", payload, _next_lines(root))
    return Result("sandbox status", payload, [
        f"the sandbox in {root} is not healthy ({found['problem']}); `rollout sandbox up {shlex.quote(str(root))}` restarts it cleanly"
    ], ExitCode.UNAVAILABLE)


def fault(
    root: Path,
    model: str | None,
    *,
    clear: bool = False,
    status: int | None = None,
    rate: float | None = None,
    latency_ms: int | None = None,
    retry_after: int | None = None,
    mode: str | None = None,
    retired: bool = False,
    price: str | None = None,
    no_tools: bool = False,
    upstream: bool = False,
    quota_left: int | None = None,
    rpm: int | None = None,
    via: str | None = None,
) -> Result[SandboxFaultPayload]:
    """Set, clear or list the simulator's faults and account limits; names are checked before any request.

    `via` (gateway, direct, both; None is both) picks the caller the fault is for, told by its OpenRouter key.
    """

    state = load_state(root)
    if state is None:
        raise UnavailableError(f"no sandbox is up in {root}; start one with `rollout sandbox up`"
                               " (or pass -w DIR)")
    if model is not None:
        FaultBook.canonical(model)  # unknown name: InputError listing the known ones
    if via is not None and via not in VIA:
        raise InputError(f"--via is {via!r}; use one of {', '.join(VIA)}")
    admin = SimulatorAdmin(state.simulator_url)
    fields = {"status": status, "rate": rate, "latency_ms": latency_ms, "retry_after": retry_after, "mode": mode,
              "price": price, "retired": retired or None, "no_tools": no_tools or None, "upstream": upstream or None}
    given = {k: v for k, v in fields.items() if v is not None}
    with_via = {**given, "via": via} if via is not None else given
    account = {k: v for k, v in (("quota_left", quota_left), ("rpm", rpm)) if v is not None}
    named = [*with_via, *account]
    if clear:
        if named:
            raise InputError(f"--clear takes no {', '.join(_option(k) for k in named)}; drop them")
        admin.clear(model)
        message = f"cleared the fault of {model}" if model else "cleared every fault and account limit"
    elif account:
        if model is not None or with_via:
            extra = f"MODEL {model}" if model is not None else ", ".join(_option(k) for k in with_via)
            raise InputError(f"--quota-left and --rpm are account-wide: drop {extra}, and set model faults "
                             "in a separate `rollout sandbox fault MODEL ...`")
        limits = admin.set_account(**{**_kept(admin.account()), **account})
        message = "account-wide limits on :free models: " + ", ".join(
            f"{k.replace('_', ' ')} {v}" for k, v in limits.items() if k in ("quota_left", "rpm") and v is not None
        ) + "; lift them with `rollout sandbox fault --clear`"
    elif model is None:
        if with_via:
            raise InputError("name the MODEL the fault is for, e.g. `rollout sandbox fault glm-4.5-air --status 500`")
        message = ""
    else:
        if not given:
            raise InputError("give the fault: --status CODE, --mode hang|malformed|empty|stream-error, "
                             "--latency-ms N, --retired, --price USD or --no-tools")
        if "price" in given:
            given["price"] = _price(str(given["price"]))
        admin.set_fault(model, **with_via)
        only = f" (the {via} path's requests only)" if via in CALLERS else ""
        message = f"set the fault of {model}{only}; clear it with `rollout sandbox fault --clear {model}`"
    faults = admin.faults()
    limits = admin.account()
    messages = [message] if message else []
    if not faults and limits.get("quota_left") is None and limits.get("rpm") is None:
        messages.append("no fault in force")
    return Result("sandbox fault", SandboxFaultPayload(str(root), state.simulator_url, faults, limits), messages)


def _option(key: str) -> str:
    return "--" + key.replace("_", "-")


def _kept(account: dict[str, Any]) -> dict[str, Any]:
    """The limits already in force, so `--rpm` after `--quota-left` keeps the quota."""
    return {k: v for k, v in account.items() if k in ("quota_left", "rpm") and v is not None}


def _price(text: str) -> str:
    try:
        amount = float(text)
    except ValueError:
        amount = -1.0
    if not amount > 0:
        raise InputError(f"--price {text!r} is not a USD-per-token price above 0; e.g. --price 0.000002")
    return text
