"""The sample app's lifecycle: `rollout sandbox app start|stop|status`, also run by `sandbox up/down`.

Two runtimes, like the gateway's:
- process: `python app_main.py`, detached, pid file in `.rollout/app.pid`;
- docker: the same script in a container of the gateway image (it has Python),
  host networking, bind-mounting `.env` and `flags.json` one by one (the compose
  pattern that pins their inodes) and, read-only, the OpenFeature packages of
  rollout's own environment (no registry here to build an image from).

The app's gateway key (the sandbox's master key) reaches it as a file, never in
its environment, where `docker inspect` or /proc/PID/environ would show it: the
sandbox's key file `.rollout/master.key` itself, or, when the key comes from
$ROLLOUT_SANDBOX_MASTER_KEY instead, `.rollout/app-gateway.key` (mode 0600,
removed when the app stops); bind-mounted read-only into a container.

What was started is recorded in `.rollout/app.json`; `stop` stops exactly that.
"""

from __future__ import annotations

import json
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollout_cli.core.result import Result
from rollout_cli.errors import DockerUnavailable, ExitCode, InputError, RolloutError, UnavailableError
from rollout_cli.io.atomic import atomic_write_text
from rollout_cli.io.net import HOST, free_port, loopback_environment
from rollout_cli.io.process import ProcessRecord, spawn_detached, tail_file
from rollout_cli.sandbox import app_main
from rollout_cli.sandbox.sample_app import FLAG_KEY
from rollout_cli.sandbox.state import (
    CALLER_KEYS,
    LABEL,
    LABEL_DIR,
    default_image,
    load_state,
    master_key_file_for,
    sandbox_id,
)
from rollout_cli.simulator import GATEWAY_ALIASES

APP_RUNTIMES = ("process", "docker")
PRIMARY = "glm-4.5-air"
RECORD_NAME = "app.json"
PID_NAME = "app.pid"
APP_KEY_NAME = "app-gateway.key"
CONTAINER_PREFIX = "rollout-app-"
IN_CONTAINER = {"env": "/app/.env", "flags": "/etc/flagd/flags.json", "script": "/app/sample_app.py",
                "key": "/run/secrets/litellm_api_key"}
CONTAINER_PYTHON = "/opt/litellm/bin/python"
START_TIMEOUT_S = 30.0


def app_container_name(root: Path) -> str:
    return CONTAINER_PREFIX + sandbox_id(root)


@dataclass
class AppRecord:
    root: Path
    runtime: str  # process | docker
    port: int
    reads_files_once: bool
    process: ProcessRecord | None = None
    container: str | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.root / ".rollout" / PID_NAME

    @property
    def own_key_file(self) -> Path:
        """The app's copy of the key, written only when the sandbox's key is not in a file."""
        return self.root / ".rollout" / APP_KEY_NAME

    @property
    def log(self) -> Path:
        return self.root / ".rollout" / "app.log"

    def to_json(self) -> dict[str, Any]:
        return {"runtime": self.runtime, "port": self.port, "url": self.url, "reads_files_once": self.reads_files_once,
                "process": self.process.to_json() if self.process else None, "container": self.container,
                "pid_file": str(self.pid_file) if self.runtime == "process" else None}

    def save(self) -> None:
        atomic_write_text(self.root / ".rollout" / RECORD_NAME, json.dumps(self.to_json(), indent=2) + "\n")


def load_app(root: Path) -> AppRecord | None:
    path = root / ".rollout" / RECORD_NAME
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        return AppRecord(root, raw["runtime"], int(raw["port"]), bool(raw["reads_files_once"]),
                         ProcessRecord.from_json(raw["process"]) if raw.get("process") else None,
                         raw.get("container"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"{path} is damaged ({exc}); stop the sample app by hand and delete the file") from None


def start_app(root: Path, *, runtime: str = "process", reads_files_once: bool = False) -> AppRecord:
    """Start the sample app of the sandbox in `root` (stopping one already running) and wait until it answers."""
    if runtime not in APP_RUNTIMES:
        raise InputError(f"--runtime is {runtime!r}; use one of {', '.join(APP_RUNTIMES)}")
    state = load_state(root)
    if state is None:
        raise UnavailableError(f"no sandbox is up in {root}; start one with `rollout sandbox up {root}`")
    stop_app(root)
    app_dir = root / "app"
    settings = {
        "APP_FLAG_KEY": FLAG_KEY,
        "APP_MODEL": PRIMARY,  # the model it asks for until `sandbox traffic --model` says otherwise
        "APP_DIRECT_MODEL": GATEWAY_ALIASES[PRIMARY],
        "APP_READS_FILES_ONCE": "1" if reads_files_once else "0",
        "OPENROUTER_BASE_URL": state.simulator_api_base,
        "OPENROUTER_API_KEY": CALLER_KEYS["direct"],  # not the gateway's: the simulator tells the callers apart
        "PYTHONUNBUFFERED": "1",
    }
    record = AppRecord(root, runtime, state.app_port or free_port(), reads_files_once)
    key_file = master_key_file_for(root, record.own_key_file)  # the app's gateway key: the sandbox's master key
    script = Path(app_main.__file__)
    if runtime == "process":
        env = {**loopback_environment(), **settings, "APP_PORT": str(record.port),
               "APP_ENV_FILE": str(app_dir / ".env"), "APP_FLAGS_FILE": str(app_dir / "flags.json"),
               "APP_PID_FILE": str(record.pid_file), "LITELLM_API_KEY_FILE": str(key_file)}
        record.process = spawn_detached([sys.executable, str(script)], log=record.log, env=env, cwd=app_dir)
    else:
        # lazy: start-up time
        from rollout_cli.io.container import ContainerRuntime

        deps = sysconfig.get_paths()["purelib"]  # openfeature and its dependencies, as rollout's venv has them
        name = app_container_name(root)
        containers = ContainerRuntime()
        containers.remove(name, force=True)
        containers.run_detached(
            default_image(), name,
            entrypoint=[CONTAINER_PYTHON, IN_CONTAINER["script"]],
            environment={**settings, "APP_PORT": str(record.port), "APP_ENV_FILE": IN_CONTAINER["env"],
                         "APP_FLAGS_FILE": IN_CONTAINER["flags"], "LITELLM_API_KEY_FILE": IN_CONTAINER["key"],
                         "PYTHONPATH": deps},
            volumes={str(app_dir / ".env"): f"{IN_CONTAINER['env']}:ro",
                     str(key_file): f"{IN_CONTAINER['key']}:ro",
                     str(app_dir / "flags.json"): f"{IN_CONTAINER['flags']}:ro",
                     str(script): f"{IN_CONTAINER['script']}:ro",
                     deps: f"{deps}:ro"},
            labels={LABEL: sandbox_id(root), LABEL_DIR: str(root)},
        )
        record.container = name
    record.save()
    _wait_until_answering(record)
    return record


def _wait_until_answering(record: AppRecord) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            AppControl(record.url, timeout=1.0).status()
            return
        except UnavailableError:
            pass
        if time.monotonic() > deadline or not _running(record):
            lines = _logs(record, 5)
            stop_app(record.root)
            raise UnavailableError(f"the sample app did not start ({record.runtime}): "
                                   + (lines[-1] if lines else "no output") + f" (log {record.log})")
        time.sleep(0.1)


def _running(record: AppRecord) -> bool:
    return bool(_state(record)[0])


def _state(record: AppRecord) -> tuple[bool | None, str | None]:
    """Whether the app runs; None (and why) when the Docker engine does not answer: its container may well run."""
    if record.runtime == "process":
        return record.process is not None and record.process.alive(), None
    from rollout_cli.io.container import ContainerRuntime  # lazy: start-up time

    try:
        return ContainerRuntime().state(record.container or app_container_name(record.root)).running, None
    except DockerUnavailable as exc:
        return None, exc.message
    except RolloutError:
        return False, None


def _logs(record: AppRecord, lines: int) -> list[str]:
    if record.runtime == "process":
        return tail_file(record.log, lines)
    from rollout_cli.io.container import ContainerRuntime  # lazy: start-up time

    try:
        return ContainerRuntime().logs(record.container or app_container_name(record.root), lines).splitlines()
    except RolloutError as exc:
        return [exc.message]


def stop_app(root: Path) -> list[str]:
    """Stop the recorded sample app; what was stopped, in words."""
    record = load_app(root)
    if record is None:
        return []
    stopped = []
    if record.process is not None and record.process.stop(grace_s=3):
        stopped.append(f"sample app process {record.process.pid}")
    if record.container:
        from rollout_cli.io.container import ContainerRuntime  # lazy: start-up time

        containers = ContainerRuntime()
        if record.container in containers.names_with_label(f"{LABEL}={sandbox_id(root)}") and \
                containers.remove(record.container, force=True):
            stopped.append(f"sample app container {record.container}")
    record.pid_file.unlink(missing_ok=True)
    record.own_key_file.unlink(missing_ok=True)
    (root / ".rollout" / RECORD_NAME).unlink(missing_ok=True)
    return stopped


def app_status(root: Path) -> dict[str, Any]:
    """The recorded app, whether it runs, and what it says about itself."""
    record = load_app(root)
    if record is None:
        return {"running": False}
    running, engine_error = _state(record)
    out: dict[str, Any] = {**record.to_json(), "running": running}
    if engine_error:
        out["error"] = engine_error
    if out["running"]:
        try:
            seen = AppControl(record.url, timeout=2.0).status()
            out.update(counts=seen["counts"], env=seen["env"], reloads=seen["reloads"])
        except UnavailableError as exc:
            out["error"] = exc.message
    return out


class AppControl:
    """The app's loopback control port."""

    def __init__(self, url: str, timeout: float = 5.0) -> None:
        self.url, self.timeout = url, timeout

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        import httpx  # lazy: start-up time

        try:
            answer = httpx.request(method, self.url + path, json=body, timeout=self.timeout, trust_env=False)
            answer.raise_for_status()
            return dict(answer.json())
        except (httpx.HTTPError, ValueError) as exc:
            raise UnavailableError(f"the sample app does not answer at {self.url}: {exc}") from None

    def status(self) -> dict[str, Any]:
        return self._call("GET", "/status")

    def load(self, rps: float, duration_s: float, model: str, direct_model: str) -> dict[str, Any]:
        return self._call("POST", "/load", {"rps": rps, "duration_s": duration_s, "model": model,
                                            "direct_model": direct_model})

    def requests(self, since: float) -> list[dict[str, Any]]:
        return list(self._call("GET", f"/requests?since={since}")["requests"])


# --- `rollout sandbox app start|stop|status` ---------------------------------------


@dataclass(frozen=True)
class SandboxAppPayload:
    """`rollout sandbox app`: the sample app after the action (`app` as `app_status` found it)."""

    dir: str
    action: str  # start | stop | status
    app: dict[str, Any]
    stopped: list[str]

    def to_json(self) -> dict[str, Any]:
        return {"dir": self.dir, "action": self.action, "app": self.app, "stopped": self.stopped}


def app_command(root: Path, action: str, *, runtime: str = "process", reads_files_once: bool = False) -> Result[SandboxAppPayload]:
    stopped: list[str] = []
    if action == "start":
        record = start_app(root, runtime=runtime, reads_files_once=reads_files_once)
        messages = [f"sample app up ({record.runtime}) on {record.url}: "
                    + ("it reads .env and flags.json once (SIGHUP re-reads them)" if reads_files_once
                       else "it watches .env and flags.json")]
    elif action == "stop":
        stopped = stop_app(root)
        messages = [f"stopped {', '.join(stopped)}" if stopped else "the sample app was not running"]
    else:
        messages = []
    found = app_status(root)
    if action == "status" and found["running"] is None:  # the Docker engine does not answer
        messages = [f"sample app in container {found['container']}: unknown ({found['error']})"]
    elif action == "status":
        messages = [f"sample app {'running' if found['running'] else 'not running'}"
                    + (f" ({found['runtime']}, {found['url']}): sent {found.get('counts', {})}" if found["running"] else "")]
    code = ExitCode.UNAVAILABLE if action == "status" and not found["running"] else ExitCode.OK
    return Result(f"sandbox app {action}", SandboxAppPayload(str(root), action, found, stopped), messages, code)
