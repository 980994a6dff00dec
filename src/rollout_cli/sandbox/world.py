"""`rollout sandbox up/down/status`: the whole world on one machine, and its Python API.

WORKS (process runtime and docker runtime): `up()`, `down()`, `SandboxInfo`;
tests use them through the session fixture `sandbox` in tests/conftest.py.

Layout of a sandbox folder DIR (DIR is also a complete rollout workspace):
    DIR/rollout.yaml                 gateway.url, master_key_file, container (docker runtime)
    DIR/app/                         sample app git repo: .env at 0%, flagd flags, pre-gateway tag
    DIR/playbooks/rollout.yaml       the stage plan: soaks of seconds, the autopilot's settings
    DIR/gateway/litellm-config.yaml  rendered from deploy/litellm-config.yaml (sandbox overrides)
    DIR/.rollout/master.key          generated master key, mode 0600
    DIR/.rollout/sandbox.json        what was started: pids with start times, the container
    DIR/prometheus/                  prometheus.yml (from deploy/prometheus.yml), data/
    DIR/.rollout/rollout.prom        the stage as metrics (core/stagemetrics.py), served by node_exporter
    DIR/.rollout/{simulator,gateway,prometheus,node-exporter,receiver}.log
    DIR/.rollout/notify-url, notify-secret   the notification receiver's URL and signing secret (0600),
                                     named by rollout.yaml's `notify:`; what it got: notifications.jsonl

`up` on a sandbox that is already up and healthy changes nothing and says so;
one that is partly up (a process died) is stopped and started again cleanly.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollout_cli.core.audit import utc_now
from rollout_cli.core.stagemetrics import write_stage_metrics
from rollout_cli.core.workspace import load_workspace, read_key_file
from rollout_cli.errors import DockerUnavailable, InputError, RolloutError, UnavailableError
from rollout_cli.gateway.api import GatewayClient, Probe
from rollout_cli.gateway.config import check_master_key, generate_master_key, packaged_config, render_sandbox_config
from rollout_cli.gateway.control import wait_until_healthy
from rollout_cli.gateway.runtime import DockerGateway, GatewayProcess, GatewayRuntime, SwarmGateway
from rollout_cli.io.atomic import atomic_write_text
from rollout_cli.io.container import ContainerRuntime, connect
from rollout_cli.io.lock import WorkspaceLock
from rollout_cli.io.net import HOST, ensure_port_free, free_port, loopback_environment
from rollout_cli.io.process import spawn_detached, tail_file
from rollout_cli.sandbox import prometheus, swarm
from rollout_cli.sandbox.app import APP_RUNTIMES, app_status, start_app, stop_app
from rollout_cli.sandbox.notifications import (
    NOTIFY_YAML,
    receiver_running,
    receiver_status,
    start_receiver,
    stop_receiver,
)
from rollout_cli.sandbox.sample_app import workspace_yaml, write_sample_app
from rollout_cli.sandbox.state import (
    CALLER_KEYS,
    CONTAINER_CONFIG,
    KEY_NAME,
    LABEL,
    LABEL_DIR,
    MASTER_KEY_ENV,
    SandboxState,
    container_name,
    default_image,
    gateway_settings,
    litellm_argv,
    litellm_executable,
    load_state,
    sandbox_id,
    sandbox_master_key,
)
from rollout_cli.simulator import DEFAULT_API_KEY, SimulatorAdmin

if TYPE_CHECKING:
    from rollout_cli.gateway.control import Progress

DEFAULT_DIR = "sandbox"
DEFAULT_GATEWAY_PORT = 4000
DEFAULT_SIMULATOR_PORT = 4010
DEFAULT_TIMEOUT_S = 60.0
SIMULATOR_START_TIMEOUT_S = 10.0
RUNTIMES = ("auto", "docker", "process", "swarm")
APP_RUNTIMES_UP = ("auto", "none", *APP_RUNTIMES)
HEADER = "# Written by `rollout sandbox up`: a workspace for trying every rollout command locally.\n"
BUILD_SCRIPT = "scripts/build-gateway-image.sh"

Step = Callable[[str], None]  # "starting the simulator", ... for a progress display


@dataclass
class SandboxInfo:
    """A running sandbox, as tests and the CLI see it. The master key is read on demand, never held in JSON."""

    root: Path
    runtime: str
    gateway_url: str
    simulator_url: str
    gateway_port: int
    simulator_port: int
    container: str | None = None
    pids: dict[str, int] = field(default_factory=dict)
    already_up: bool = False
    took_s: float = 0.0
    prometheus_url: str | None = None  # None: Prometheus is not installed, the sandbox runs without it
    replica_urls: list[str] = field(default_factory=list)  # runtime swarm: each replica, relayed to the host
    service: str | None = None  # runtime swarm
    docker_host: str | None = None  # runtime swarm: the sandbox's own engine

    @property
    def key_file(self) -> Path:
        return self.root / ".rollout" / KEY_NAME

    @property
    def master_key(self) -> str:
        return sandbox_master_key(self.root).require()

    @property
    def admin(self) -> SimulatorAdmin:
        return SimulatorAdmin(self.simulator_url)

    def client(self, timeout: float = 30.0) -> GatewayClient:
        return GatewayClient(self.gateway_url, self.master_key, timeout)

    def to_json(self) -> dict[str, Any]:
        return {
            "dir": str(self.root),
            "runtime": self.runtime,
            "gateway_url": self.gateway_url,
            "simulator_url": self.simulator_url,
            "prometheus_url": self.prometheus_url,
            "container": self.container,
            "replica_urls": self.replica_urls,
            "service": self.service,
            "docker_host": self.docker_host,
            "pids": self.pids,
            "master_key_file": str(self.key_file),
            "already_up": self.already_up,
            "took_s": self.took_s,
        }


def resolve_dir(directory: str | os.PathLike[str] | None, workspace: str | None = None) -> Path:
    """DIR, else -w, else $ROLLOUT_WORKSPACE, else ./sandbox."""
    chosen = directory or workspace or os.environ.get("ROLLOUT_WORKSPACE") or DEFAULT_DIR
    return Path(chosen).expanduser().absolute()


# --- up ----------------------------------------------------------------------


def up(
    root: Path,
    *,
    runtime: str = "auto",
    gateway_port: int | None = None,
    simulator_port: int | None = None,
    image: str | None = None,
    gateway_config: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT_S,
    progress: Progress | None = None,
    step: Step | None = None,
    app_runtime: str | None = "auto",
    prometheus_port: int | None = None,
    replicas: int | None = None,
) -> SandboxInfo:
    """Start the simulator, the gateway, the sample app and Prometheus, and write a complete workspace in `root`.

    Port 0 means any free port; None the port an earlier `up` of this folder
    recorded, else 4000 (gateway), 4010 (simulator) and a free one (Prometheus,
    when it is installed). Runtime "auto" also
    keeps the recorded runtime when a partly-up sandbox is restarted. Raises InputError (2) for bad input, found
    before anything starts; UnavailableError (4) when a dependency is missing;
    GatewayNotHealthy (4, with the gateway's last log lines) when the gateway
    does not become healthy within `timeout`, after stopping what it started.
    """

    if runtime not in RUNTIMES:
        raise InputError(f"--runtime is {runtime!r}; use one of {', '.join(RUNTIMES)}")
    if app_runtime not in (None, *APP_RUNTIMES_UP):
        raise InputError(f"--app-runtime is {app_runtime!r}; use one of {', '.join(APP_RUNTIMES_UP)}")
    for option, port in (("--gateway-port", gateway_port), ("--simulator-port", simulator_port),
                         ("--prometheus-port", prometheus_port)):
        if port is not None and not 0 <= port <= 65535:
            raise InputError(f"{option} is {port}; use 1..65535, or 0 for any free port")
    if timeout <= 0:
        raise InputError(f"--timeout is {timeout:g}; use a number of seconds > 0")
    if replicas is not None:
        if runtime != "swarm":
            raise InputError(f"--replicas goes with --runtime swarm, not {runtime}; add --runtime swarm")
        swarm.check_replicas(replicas)
    root = root.absolute()
    _check_folder(root)
    say = step or (lambda _text: None)
    started = time.monotonic()
    with WorkspaceLock(root / ".rollout", "rollout sandbox up", timeout=10):
        existing = load_state(root)
        if existing is not None:
            if _healthy(existing):
                if runtime != "auto" and runtime != existing.runtime:
                    raise InputError(
                        f"the sandbox in {root} is up with runtime {existing.runtime}; "
                        f"run `rollout sandbox down {root}` first to switch to {runtime}"
                    )
                _ensure_app(existing, app_runtime, say)
                _ensure_prometheus(existing, say)
                _ensure_receiver(existing, say)
                return _info(existing, already_up=True)
            say("stopping the leftovers of an earlier sandbox")
            _stop_all(existing)
            existing.path.unlink(missing_ok=True)
            # Restarted as it was, unless told otherwise: the workspace files name these ports.
            runtime = existing.runtime if runtime == "auto" else runtime
            gateway_port = existing.gateway_port if gateway_port is None else gateway_port
            simulator_port = existing.simulator_port if simulator_port is None else simulator_port
            if prometheus_port is None and existing.prometheus_port:
                prometheus_port = existing.prometheus_port
            if replicas is None and existing.replicas:
                replicas = existing.replicas

        # Everything that can be checked is checked before anything starts.
        _render_config(gateway_config)  # validated before anything starts
        key = _master_key(root)
        chosen, image = _choose_runtime(runtime, image)
        gateway_port = _port(DEFAULT_GATEWAY_PORT if gateway_port is None else gateway_port, "--gateway-port")
        simulator_port = _port(DEFAULT_SIMULATOR_PORT if simulator_port is None else simulator_port,
                               "--simulator-port", avoid=gateway_port)
        if gateway_port == simulator_port:
            raise InputError(f"--gateway-port and --simulator-port are both {gateway_port}; choose two ports")
        app_port = (existing.app_port if existing is not None and existing.app_port else 0) or free_port(gateway_port)
        # the swarm's replicas: replica k on BASE+k, inside the namespace and (the relay) on the host
        port_base = _free_port_run(replicas or swarm.DEFAULT_REPLICAS, {gateway_port, simulator_port, app_port}) \
            if chosen == "swarm" else 0
        if prometheus.prometheus_executable() is None:
            prometheus_port = 0  # not installed: the sandbox runs without it, and `up` says so
        elif prometheus_port:
            ensure_port_free(prometheus_port, "--prometheus-port")
        else:
            prometheus_port = _free_port_besides({gateway_port, simulator_port, app_port})

        say("writing the workspace")
        config_text = _render_config(gateway_config, f"http://127.0.0.1:{simulator_port}/api/v1")
        _write_workspace(root, config_text, chosen, gateway_port, app_port, prometheus_port)
        # the stage as metrics from the start, so the node_exporter serves it before any rollout command ran
        write_stage_metrics(load_workspace(root))

        state = SandboxState(
            root=root, runtime=chosen, simulator_port=simulator_port, gateway_port=gateway_port,
            simulator_key=DEFAULT_API_KEY, image=image if chosen in ("docker", "swarm") else None,
            created=utc_now(), app_port=app_port, prometheus_port=prometheus_port,
        )
        if chosen == "swarm":
            state.netns, state.replicas, state.port_base = swarm.namespace(root), replicas or 2, port_base
            state.redis_port = port_base  # inside the namespace only: the replicas' ports are above it

        try:
            _start_prometheus(state)  # becomes ready while the gateway boots
            say(f"starting the OpenRouter simulator on {state.simulator_url}")
            _start_simulator(state)
            say("starting the notification receiver")
            start_receiver(state, {gateway_port, simulator_port, app_port, prometheus_port, state.node_exporter_port})
            say(f"starting the gateway ({chosen}) on {state.gateway_url}")
            gateway = _start_gateway(state, key)
            say("waiting for the gateway to become healthy")

            wait_until_healthy(state.gateway_url, gateway, timeout, progress,
                               logs=lambda: gateway.logs(40))
            _ensure_app(state, app_runtime, say)
            _wait_prometheus(state, say)
        except BaseException:
            _stop_all(state)  # also on Ctrl-C: never leave half a sandbox running
            state.path.unlink(missing_ok=True)
            raise
    return _info(state, took_s=round(time.monotonic() - started, 2))


def _ensure_app(state: SandboxState, app_runtime: str | None, say: Step) -> None:
    """The sample app, in its own runtime ("auto": the gateway's), unless one already answers."""
    if app_runtime is None or app_runtime == "none" or app_status(state.root).get("running"):
        return
    # auto: the gateway's runtime; beside a swarm gateway, a process (the app is one, not a service)
    chosen = (state.runtime if state.runtime in APP_RUNTIMES else "process") if app_runtime == "auto" else app_runtime
    say(f"starting the sample app ({chosen})")
    start_app(state.root, runtime=chosen)


def _start_prometheus(state: SandboxState) -> None:
    """Prometheus and, when it is installed, the node_exporter serving `.rollout/rollout.prom` to its job `rollout`."""
    executable = prometheus.prometheus_executable()
    if executable is None or not state.prometheus_port:
        return
    exporter = prometheus.node_exporter_executable()
    state.node_exporter_port = 0
    if exporter is not None:
        state.node_exporter_port = _free_port_besides({state.gateway_port, state.simulator_port, state.app_port,
                                                       state.prometheus_port})
        state.node_exporter = prometheus.start_node_exporter(state.root, exporter, state.node_exporter_port,
                                                             state.node_exporter_log)
        state.save()
    prometheus.write_files(state.root, state.gateway_port, state.app_port, state.node_exporter_port,
                           swarm.replica_ports(state) if state.runtime == "swarm" else None)
    state.prometheus = prometheus.start(state.root, executable, state.prometheus_port, state.prometheus_log)
    state.save()


def _wait_prometheus(state: SandboxState, say: Step) -> None:
    if state.node_exporter is not None and state.node_exporter_url is not None:
        prometheus.wait_ready(state.node_exporter_url, state.node_exporter, state.node_exporter_log,
                              what="node_exporter", path="/metrics")
    if state.prometheus is None or state.prometheus_url is None:
        return
    say(f"waiting for Prometheus on {state.prometheus_url}")
    prometheus.wait_ready(state.prometheus_url, state.prometheus, state.prometheus_log)


def _ensure_prometheus(state: SandboxState, say: Step) -> None:
    """A healthy sandbox whose Prometheus or node_exporter died (or was stopped) gets both back, Prometheus on its
    recorded port (its config names the node_exporter's new one)."""
    if prometheus.prometheus_executable() is None:
        return
    exporter_up = prometheus.node_exporter_executable() is None or (
        state.node_exporter is not None and state.node_exporter.alive())
    if state.prometheus is not None and state.prometheus.alive() and exporter_up:
        return
    _stop_prometheus(state)
    if not state.prometheus_port:
        state.prometheus_port = _free_port_besides({state.gateway_port, state.simulator_port, state.app_port})
    say(f"starting Prometheus on {state.prometheus_url}")
    _start_prometheus(state)
    _wait_prometheus(state, say)


def _stop_prometheus(state: SandboxState) -> list[str]:
    stopped = []
    if state.prometheus is not None and state.prometheus.stop():
        stopped.append(f"prometheus process {state.prometheus.pid}")
    if state.node_exporter is not None and state.node_exporter.stop():
        stopped.append(f"node_exporter process {state.node_exporter.pid}")
    return stopped


def _ensure_receiver(state: SandboxState, say: Step) -> None:
    """A healthy sandbox whose receiver died (or that predates it) gets one, and its URL file the new port."""
    if receiver_running(state):
        return
    say("starting the notification receiver")
    start_receiver(state, {state.gateway_port, state.simulator_port, state.app_port, state.prometheus_port,
                           state.node_exporter_port})


def _free_port_run(count: int, taken: set[int]) -> int:
    """BASE such that BASE+1..BASE+count are free on the host's loopback (the swarm replicas' relayed ports)."""
    for _ in range(64):
        base = free_port() - 1
        ports = range(base + 1, base + count + 1)
        if taken.isdisjoint(ports) and all(_port_free(port) for port in ports):
            return base
    raise UnavailableError(f"found no {count} free consecutive ports on {HOST} for the swarm's replicas")


def _port_free(port: int) -> bool:
    try:
        ensure_port_free(port, "--replicas")
        return True
    except InputError:
        return False


def _free_port_besides(taken: set[int]) -> int:
    """A free port that none of the sandbox's other, not yet listening, servers was given."""
    while (port := free_port()) in taken:
        pass
    return port


def _check_folder(root: Path) -> None:
    if root.exists() and not root.is_dir():
        raise InputError(f"{root} is a file; choose a folder for the sandbox")
    if not root.exists() or not any(root.iterdir()):
        return
    config = root / "rollout.yaml"
    ours = config.is_file() and config.read_text(encoding="utf-8", errors="replace").startswith(HEADER)
    only_state = {p.name for p in root.iterdir()} <= {".rollout"}
    if not (ours or only_state):
        raise InputError(
            f"{root} is not empty and not a sandbox (no rollout.yaml written by `rollout sandbox up`); "
            "choose an empty or new DIR"
        )


def _render_config(source: Path | None, api_base: str | None = None) -> str:
    path = source or packaged_config()
    if not path.is_file():
        raise InputError(f"gateway config {path} does not exist; pass --gateway-config FILE or reinstall rollout")
    return render_sandbox_config(path, api_base)


def _master_key(root: Path) -> str:
    """$ROLLOUT_SANDBOX_MASTER_KEY, else the key file, else a new key written to it (0600)."""

    from_env = os.environ.get(MASTER_KEY_ENV)
    if from_env is not None:
        return check_master_key(from_env, f"${MASTER_KEY_ENV}")
    path = root / ".rollout" / KEY_NAME
    if path.exists():
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)  # a key readable by others is fixed, not trusted as is
        return check_master_key(read_key_file(path), str(path))
    key = generate_master_key()
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, key + "\n", mode=0o600)
    return key


def _choose_runtime(runtime: str, image: str | None) -> tuple[str, str]:
    """docker when asked, or on auto when an engine answers and the image is there; else process."""
    image = image or default_image()
    if runtime == "swarm":
        swarm.check_available()
        for needed in (image, swarm.redis_image()):
            if not _image_present(needed):
                raise UnavailableError(f"image {needed!r} is not in the machine's Docker engine; build it with "
                                       f"scripts/setup.sh (the swarm's engine loads it from there)")
        return "swarm", image
    if runtime in ("auto", "docker"):
        try:
            present = _image_present(image)
        except DockerUnavailable as exc:
            if runtime == "docker":
                raise DockerUnavailable(
                    f"{exc.message}; or run the gateway as a local process: "
                    "`rollout sandbox up --runtime process`"
                ) from None
            present = False
        if present:
            return "docker", image
        if runtime == "docker":
            raise UnavailableError(
                f"gateway image {image!r} is not in the Docker engine; build it with {BUILD_SCRIPT} {image} "
                "(offline, a few minutes), or use `--runtime process`"
            )
    if litellm_executable() is None:
        raise UnavailableError(
            "litellm is not installed for the process runtime; install the gateway extra "
            "(`pip install -e '.[gateway]'`, or scripts/setup.sh), or build the image with " + BUILD_SCRIPT
        )
    return "process", image


def _image_present(image: str) -> bool:
    import docker.errors  # lazy: start-up time


    client = connect(timeout=3)
    try:
        client.images.get(image)
        return True
    except docker.errors.ImageNotFound:
        return False
    except docker.errors.APIError as exc:
        raise UnavailableError(f"Docker engine cannot look up image {image!r}: {exc.explanation}") from None
    finally:
        client.close()


def _port(port: int, option: str, avoid: int | None = None) -> int:
    if port == 0:
        return free_port(avoid)
    ensure_port_free(port, option)
    return port


# The shipped plan with soaks short enough to watch the autopilot promote by itself.
SANDBOX_PLAN = """\
# Written by `rollout sandbox up`: the shipped stage plan (docs/PLAYBOOKS.md) with soaks of seconds,
# so `rollout autopilot` can be watched promoting 0 -> 10 -> 50 -> 100 (100 after `rollout approve`).
kind: rollout
stages: [10, 50, 100]
soak: 20s
gates:
  max_added_latency_p95_ms: 5000   # the sandbox's gateway shares a laptop's cores: tens of ms, not 10
autopilot:
  interval: 3s
  failure_threshold: 2
  on_breach: rollback-1
  approve_before: [100]
"""


def _write_workspace(root: Path, config_text: str, runtime: str, gateway_port: int, app_port: int,
                     prometheus_port: int) -> None:
    """rollout.yaml, the gateway's config and (once) the sample app; with a Prometheus, the window gates read it."""
    gateway_url = f"http://{HOST}:{gateway_port}"
    app = root / "app"
    if not (app / ".git").is_dir():  # an existing app keeps its stage and history
        write_sample_app(app, percentage=0, gateway_url=gateway_url)
    plan = root / "playbooks" / "rollout.yaml"
    if not plan.exists():  # an existing sandbox keeps its (perhaps edited) plan
        plan.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(plan, SANDBOX_PLAN)
    (root / "gateway").mkdir(parents=True, exist_ok=True)
    atomic_write_text(root / "gateway" / "litellm-config.yaml", config_text)
    atomic_write_text(
        root / "rollout.yaml",
        workspace_yaml(
            app_rel="./app",
            gateway_url=gateway_url,
            container=container_name(root) if runtime == "docker" else None,
            extra_gateway=(f"  service: {swarm.SERVICE}  # the replicas, in the sandbox's own swarm\n"
                           f"  docker_host: {swarm.docker_host(swarm.namespace(root))}\n") if runtime == "swarm" else "",
            master_key_env=MASTER_KEY_ENV,
            master_key_file=f".rollout/{KEY_NAME}",
            config="./gateway/litellm-config.yaml",
            runtime=runtime,
            playbooks="./playbooks",
            header=HEADER + f"# Gateway runtime: {runtime}. Stop it all with `rollout sandbox down {root}`.\n",
            app_extra=f"  metrics_url: http://{HOST}:{app_port}/metrics  # the sample app's request counter\n"
                      f"  probe: http://{HOST}:{app_port}/probe  # its direct path, checked by level 3\n",
            prometheus_url=prometheus.url_of(prometheus_port) if prometheus_port else None,
        ) + NOTIFY_YAML,
    )
    key_file = root / ".rollout" / KEY_NAME
    if key_file.exists():
        key_file.chmod(0o600)  # whatever happened to it since: the key stays private


def _start_simulator(state: SandboxState) -> None:
    argv = [sys.executable, "-m", "rollout_cli.simulator", "--host", HOST,
            "--port", str(state.simulator_port), "--api-key", state.simulator_key,
            *(f"--caller={name}={key}" for name, key in CALLER_KEYS.items())]
    env = {**loopback_environment(), "PYTHONUNBUFFERED": "1"}
    state.simulator = spawn_detached(argv, log=state.simulator_log, env=env, cwd=state.root)
    state.save()
    admin = SimulatorAdmin(state.simulator_url, timeout=1.0)
    deadline = time.monotonic() + SIMULATOR_START_TIMEOUT_S
    while True:
        try:
            admin.health()
            return
        except RolloutError:
            pass
        if not state.simulator.alive() or time.monotonic() > deadline:
            lines = tail_file(state.simulator_log, 5)
            raise UnavailableError(
                f"the simulator did not start on {state.simulator_url}: "
                + (lines[-1] if lines else "no output") + f" (log {state.simulator_log})"
            )
        time.sleep(0.05)


def _start_gateway(state: SandboxState, key: str) -> GatewayRuntime:
    config = state.root / "gateway" / "litellm-config.yaml"
    if state.runtime == "swarm":
        swarm.engine_up(state)
        swarm.deploy(state, key)
        state.relay = swarm.start_relay(state)
        state.save()
        return SwarmGateway(swarm.SERVICE, state.gateway_url, docker_host=swarm.docker_host(state.netns))
    settings = gateway_settings(state.simulator_api_base, CALLER_KEYS["gateway"])
    if state.runtime == "process":
        executable = litellm_executable()
        assert executable is not None  # checked by _choose_runtime
        gateway = state.gateway_process
        GatewayProcess(
            argv=litellm_argv(executable, config, state.gateway_port), cwd=state.root, log=state.gateway_log,
            env=settings, port=state.gateway_port,
        ).save(gateway.record_path)
        gateway.start()
        return gateway
    env = {**settings, "LITELLM_MASTER_KEY": key}


    name = container_name(state.root)
    containers = ContainerRuntime()
    _remove_ours(containers, state.root)  # a container left by a crashed `up` of this same sandbox
    port = state.gateway_port
    probe = (
        "import urllib.request; "
        f"urllib.request.urlopen('http://{HOST}:{port}/health/liveliness', timeout=3)"
    )
    box = containers.run_detached(
        state.image or default_image(),
        name,
        command=["--config", CONTAINER_CONFIG, "--host", HOST, "--port", str(port)],
        environment=env,
        volumes={str(config): f"{CONTAINER_CONFIG}:ro"},
        labels={LABEL: sandbox_id(state.root), LABEL_DIR: str(state.root)},
        healthcheck={
            "test": ["CMD", "/opt/litellm/bin/python", "-c", probe],
            "interval": 3_000_000_000,
            "timeout": 3_000_000_000,
            "retries": 3,
            "start_period": 60_000_000_000,
        },
    )
    state.container, state.container_id = name, box.id
    state.save()
    return DockerGateway(name, containers)


def _healthy(state: SandboxState) -> bool:
    if state.simulator is None or not state.simulator.alive():
        return False
    if state.runtime == "process" and not state.gateway_process.state().running:
        return False
    if state.runtime == "swarm" and (state.relay is None or not state.relay.alive()):
        return False
    with GatewayClient(state.gateway_url, None) as client:
        return client.liveliness().ok and client.readiness().ok


def _info(state: SandboxState, *, already_up: bool = False, took_s: float = 0.0) -> SandboxInfo:
    pids = {}
    if state.simulator:
        pids["simulator"] = state.simulator.pid
    record = state.gateway_process.record() if state.runtime == "process" else None
    if record is not None and record.process is not None:
        pids["gateway"] = record.process.pid
    if state.prometheus:
        pids["prometheus"] = state.prometheus.pid
    if state.node_exporter:
        pids["node_exporter"] = state.node_exporter.pid
    if state.receiver:
        pids["receiver"] = state.receiver.pid
    if state.relay:
        pids["relay"] = state.relay.pid
    return SandboxInfo(
        root=state.root, runtime=state.runtime, gateway_url=state.gateway_url,
        simulator_url=state.simulator_url, gateway_port=state.gateway_port,
        simulator_port=state.simulator_port, container=state.container, pids=pids,
        already_up=already_up, took_s=took_s, prometheus_url=state.prometheus_url,
        replica_urls=swarm.replica_urls(state) if state.netns else [],
        service=swarm.SERVICE if state.netns else None,
        docker_host=swarm.docker_host(state.netns) if state.netns else None,
    )


# --- down --------------------------------------------------------------------


def down(root: Path) -> list[str]:
    """Stop exactly what `up` recorded; what was stopped, in words (empty: nothing was up)."""

    root = root.absolute()
    if not (root / ".rollout").is_dir():
        return []
    with WorkspaceLock(root / ".rollout", "rollout sandbox down", timeout=10):
        state = load_state(root)
        if state is None:
            return []
        stopped = _stop_all(state)
        state.path.unlink(missing_ok=True)
    return stopped


def _stop_all(state: SandboxState) -> list[str]:
    """Prometheus and the app first (they call the others), the gateway (it calls the simulator), the simulator,
    the notification receiver; errors do not stop the rest."""
    problems: list[str] = []
    stopped = _stop_prometheus(state)
    try:
        stopped += stop_app(state.root)  # the app first: it calls the gateway and the simulator
    except RolloutError as exc:
        problems.append(exc.message)
    if state.runtime == "process":
        gateway = state.gateway_process
        record = gateway.record()
        if gateway.stop(timeout=5).changed and record is not None and record.process is not None:
            stopped.append(f"gateway process {record.process.pid}")
        gateway.record_path.unlink(missing_ok=True)
    if state.container:
        try:
            from rollout_cli.io.container import ContainerRuntime

            if _remove_ours(ContainerRuntime(), state.root):
                stopped.append(f"gateway container {state.container}")
        except RolloutError as exc:
            problems.append(exc.message)
    if state.netns:
        if state.relay is not None and state.relay.stop():
            stopped.append(f"relay process {state.relay.pid}")
        try:
            if swarm.engine_down(state.netns):
                stopped.append(f"swarm engine and network namespace {state.netns}")
        except RolloutError as exc:
            problems.append(exc.message)
    if state.simulator is not None and state.simulator.stop():
        stopped.append(f"simulator process {state.simulator.pid}")
    stopped += stop_receiver(state)  # last: nothing calls it but rollout
    if problems:
        raise UnavailableError(
            f"stopped {', '.join(stopped) or 'nothing'}, but not "
            f"{'the swarm engine' if state.netns else 'the gateway container'}: {problems[0]}"
        )
    return stopped


def _swarm_status(state: SandboxState) -> dict[str, Any]:
    """The service, its replicas (each one's URL and task state), the relay and the namespace."""
    relay = state.relay is not None and state.relay.alive()
    found: dict[str, Any] = {
        "service": swarm.SERVICE, "image": state.image, "netns": state.netns,
        "docker_host": swarm.docker_host(state.netns), "load_balancer": True,
        "relay": {"pid": state.relay.pid if state.relay else None, "running": relay},
        "replica_urls": swarm.replica_urls(state),
    }
    try:
        gateway = SwarmGateway(swarm.SERVICE, state.gateway_url, docker_host=swarm.docker_host(state.netns))
        service = gateway.service()
        found.update(running=service.running > 0 and relay, status=service.status, desired=service.desired,
                     replicas=[{"slot": r.task.slot, "url": r.url, "state": r.task.state} for r in gateway.replicas()])
    except RolloutError as exc:
        found.update(running=False, status="unknown", error=exc.message)
    return found


def _problem(sim_alive: bool, gateway: dict[str, Any], live: Probe, ready: Probe | None) -> str | None:
    """The first reason the sandbox is not healthy, in words; None when it is."""
    if not sim_alive:
        return "the simulator is not running"
    if not gateway.get("running"):
        return "the gateway is not running"
    if not live.ok:
        return f"the gateway's liveliness probe: {live.error or live.status}"
    if ready is not None and not ready.ok:  # None: not probed, liveliness already failed
        return f"the gateway's readiness probe: {ready.error or ready.status}"
    return None


def _remove_ours(containers: ContainerRuntime, root: Path) -> bool:
    """Remove this sandbox's container: its name AND its label must match, so nothing else is touched."""
    name = container_name(root)
    if name not in containers.names_with_label(f"{LABEL}={sandbox_id(root)}"):
        return False
    return containers.remove(name, force=True)


# --- status ------------------------------------------------------------------


def status(root: Path) -> dict[str, Any]:
    """What runs of the sandbox in `root`: processes, container, the gateway's probes."""

    root = root.absolute()
    state = load_state(root)
    if state is None:
        return {"dir": str(root), "up": False, "runtime": None}
    sim_alive = state.simulator is not None and state.simulator.alive()
    gateway: dict[str, Any] = {"url": state.gateway_url, "port": state.gateway_port}
    if state.runtime == "process":
        runtime = state.gateway_process
        record = runtime.record()
        box = runtime.state()
        gateway.update(pid=record.process.pid if record and record.process else None, running=box.running,
                       uptime_s=box.uptime_s, restarts=box.restart_count)
    elif state.runtime == "swarm":
        gateway.update(_swarm_status(state))
    else:
        gateway.update(container=state.container, image=state.image)
        try:
            from rollout_cli.io.container import ContainerRuntime

            box = ContainerRuntime().state(state.container or container_name(root))
            gateway.update(running=box.running, status=box.status, health=box.health, uptime_s=box.uptime_s)
        except DockerUnavailable as exc:  # the container may well run: nobody can tell
            gateway.update(running=None, status="unknown", error=exc.message, engine_answers=False)
        except RolloutError as exc:
            gateway.update(running=False, status="unknown", error=exc.message)
    with GatewayClient(state.gateway_url, None) as client:  # the probes' own 3 s: a loaded machine's gateway is slow
        live = client.liveliness()
        ready = client.readiness() if live.ok else None
    gateway.update(liveliness=live.ok, readiness=bool(ready and ready.ok))
    faults: dict[str, Any] | None = None
    if sim_alive:
        try:
            from rollout_cli.simulator import SimulatorAdmin

            faults = SimulatorAdmin(state.simulator_url, timeout=2).faults()
        except RolloutError:
            faults = None
    simulator = {
        "url": state.simulator_url, "port": state.simulator_port,
        "pid": state.simulator.pid if state.simulator else None, "running": sim_alive, "faults": faults,
    }
    problem = _problem(sim_alive, gateway, live, ready)
    metrics = (prometheus.status(state.prometheus_url, state.prometheus, state.prometheus_port)
               if state.prometheus_url else None)
    exporter = (prometheus.node_exporter_status(state.node_exporter_url, state.node_exporter, state.node_exporter_port)
                if state.node_exporter_url else None)
    return {"dir": str(root), "up": True, "healthy": problem is None, "problem": problem, "runtime": state.runtime,
            "created": state.created, "simulator": simulator, "gateway": gateway, "app": app_status(root),
            "prometheus": metrics, "node_exporter": exporter, "receiver": receiver_status(state)}
