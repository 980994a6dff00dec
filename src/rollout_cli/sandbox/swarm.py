"""`rollout sandbox up --runtime swarm`: the gateway as a replicated Swarm service, in a namespace of its own.

Swarm makes networks with addresses of their own, and none may appear on this machine's
interfaces; so, as scripts/swarm-up.sh does for the tests, each swarm sandbox runs a second
dockerd inside a network namespace it creates (`rollout-sb-<id>`, the id of DIR), with its own
socket /var/run/docker-rollout-sb-<id>.sock, data and exec roots. The machine's engine is
never put in swarm mode: it only lends its images (docker save | docker load, once per machine and
image: `down` keeps them as the machine's image cache, scripts/swarm-up.sh).

In that swarm, deploy/docker-stack.yml runs as the stack `sandbox`: the LiteLLM replicas
(service `sandbox_litellm`, replica k on the namespace's 127.0.0.1:BASE+k) and Redis (their
shared router state). Everything else stays where the other runtimes have it, on the host's
loopback: the simulator, Prometheus, the node_exporter, the sample app, the receiver and every
rollout command. The relay (sandbox/relay.py, one process) joins the two loopbacks:
    host 127.0.0.1:GATEWAY_PORT -> every replica, round-robin   (gateway.url: the load balancer)
    host 127.0.0.1:BASE+k       -> replica k                    (rollout's per-replica probes,
                                                                  Prometheus's targets)
    namespace 127.0.0.1:SIMULATOR_PORT -> the host's simulator  (the replicas' OpenRouter)
so the workspace is used from the host exactly as the other runtimes' are; its rollout.yaml
names the service and the engine (gateway.service, gateway.docker_host).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from rollout_cli.errors import InputError, UnavailableError
from rollout_cli.gateway.config import packaged_config
from rollout_cli.io.atomic import atomic_write_text
from rollout_cli.io.net import HOST, loopback_environment
from rollout_cli.io.netns import namespace_path
from rollout_cli.io.process import ProcessRecord, spawn_detached, tail_file
from rollout_cli.sandbox.state import CALLER_KEYS, SandboxState, default_image, gateway_settings, sandbox_id

STACK = "sandbox"
SERVICE = f"{STACK}_litellm"
REDIS_IMAGE_ENV = "ROLLOUT_REDIS_IMAGE"
DEFAULT_REDIS_IMAGE = "rollout/redis:local"
DEFAULT_REPLICAS = 2
MAX_REPLICAS = 16
ENGINE_TIMEOUT_S = 60
RELAY_TIMEOUT_S = 10.0
SCRIPTS = Path(__file__).resolve().parents[3] / "scripts"  # swarm-up.sh / swarm-down.sh: a checkout's


def namespace(root: Path) -> str:
    return f"rollout-sb-{sandbox_id(root)}"


def engine_socket(ns: str) -> str:
    return f"/var/run/docker-{ns}.sock"


def docker_host(ns: str) -> str:
    return f"unix://{engine_socket(ns)}"


def redis_image() -> str:
    return os.environ.get(REDIS_IMAGE_ENV) or DEFAULT_REDIS_IMAGE


def check_replicas(replicas: int) -> int:
    if not 1 <= replicas <= MAX_REPLICAS:
        raise InputError(f"--replicas is {replicas}; use 1..{MAX_REPLICAS}")
    return replicas


def check_available() -> None:
    """What the swarm runtime needs besides the images: root, the scripts, dockerd, nsenter, ip, docker."""
    if os.geteuid() != 0:
        raise UnavailableError("--runtime swarm needs root (a network namespace and a second dockerd); "
                               "run it as root, or use --runtime docker")
    if not (SCRIPTS / "swarm-up.sh").is_file():
        raise UnavailableError(f"--runtime swarm needs scripts/swarm-up.sh from a rollout checkout ({SCRIPTS} has "
                               "none); run it from a clone of the repository")
    missing = [tool for tool in ("dockerd", "docker", "nsenter", "ip") if shutil.which(tool) is None]
    if missing:
        raise UnavailableError(f"--runtime swarm needs {', '.join(missing)} on PATH; run scripts/setup.sh")


def _script_env(ns: str, log: Path | None = None) -> dict[str, str]:
    env = {**os.environ, "ROLLOUT_SWARM_NS": ns, "ROLLOUT_SWARM_SOCKET": engine_socket(ns),
           "ROLLOUT_SWARM_TIMEOUT": str(ENGINE_TIMEOUT_S)}
    if log is not None:
        env["ROLLOUT_SWARM_LOG"] = str(log)
    return env


def engine_up(state: SandboxState) -> None:
    """The namespace, its dockerd in swarm mode, and the images, by scripts/swarm-up.sh."""
    images = [state.image or default_image(), redis_image()]
    _run_script("swarm-up.sh", images, _script_env(state.netns, state.engine_log), ENGINE_TIMEOUT_S + 240)


def engine_down(ns: str) -> bool:
    """Undo engine_up (scripts/swarm-down.sh): swarm, dockerd, namespace, mounts, roots; False: nothing was there."""
    there = namespace_path(ns).exists() or Path(engine_socket(ns)).exists()
    _run_script("swarm-down.sh", [], _script_env(ns), 180)
    return there


def _run_script(name: str, args: list[str], env: dict[str, str], timeout: float) -> None:
    try:
        done = subprocess.run(["bash", str(SCRIPTS / name), *args], env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        raise UnavailableError(f"scripts/{name} did not finish within {timeout:g} s") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise UnavailableError(f"scripts/{name} failed: {last}")


def deploy(state: SandboxState, key: str) -> None:
    """deploy/docker-stack.yml as the stack `sandbox`: the replicas and Redis, with the sandbox's config and keys."""
    folder = state.root / "gateway"
    atomic_write_text(folder / "docker-stack.yml", packaged_config("docker-stack.yml").read_text(encoding="utf-8"))
    settings = gateway_settings(state.simulator_api_base, CALLER_KEYS["gateway"])
    env_file = {"LITELLM_MASTER_KEY": key, "OPENROUTER_API_KEY": settings["OPENROUTER_API_KEY"],
                "OPENROUTER_API_BASE": settings["OPENROUTER_API_BASE"]}
    atomic_write_text(folder / ".env", "".join(f"{k}={v}\n" for k, v in env_file.items()), mode=0o600)
    env = {**loopback_environment(), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
           "DOCKER_HOST": docker_host(state.netns), "LITELLM_IMAGE": state.image or default_image(),
           "LITELLM_REPLICAS": str(state.replicas), "LITELLM_PORT_BASE": str(state.port_base),
           "REDIS_IMAGE": redis_image(), "REDIS_PORT": str(state.redis_port)}
    try:
        done = subprocess.run(["docker", "stack", "deploy", "-c", "docker-stack.yml", STACK], cwd=folder, env=env,
                              capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        raise UnavailableError("docker stack deploy did not finish within 120 s") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["no output"])[-1]
        raise UnavailableError(f"docker stack deploy of the sandbox's gateway failed: {last}")


def replica_ports(state: SandboxState) -> list[int]:
    return [state.port_base + slot for slot in range(1, state.replicas + 1)]


def start_relay(state: SandboxState) -> ProcessRecord:
    """The relay process (sandbox/relay.py); returns once every host port it serves accepts connections."""
    replicas = replica_ports(state)
    argv = [sys.executable, "-m", "rollout_cli.sandbox.relay", "--netns", str(namespace_path(state.netns)),
            "--forward", f"{state.gateway_port}={','.join(map(str, replicas))}",
            *(arg for port in replicas for arg in ("--forward", f"{port}={port}")),
            "--reverse", f"{state.simulator_port}={state.simulator_port}"]
    record = spawn_detached(argv, log=state.relay_log, env={**loopback_environment(), "PYTHONUNBUFFERED": "1"},
                            cwd=state.root)
    deadline = time.monotonic() + RELAY_TIMEOUT_S
    while not any("listening" in line for line in tail_file(state.relay_log, 3)):
        if not record.alive() or time.monotonic() > deadline:
            lines = tail_file(state.relay_log, 3)
            record.stop()
            raise UnavailableError(f"the relay did not start: {lines[-1] if lines else 'no output'} "
                                   f"(log {state.relay_log})")
        time.sleep(0.05)
    return record


def replica_urls(state: SandboxState) -> list[str]:
    return [f"http://{HOST}:{port}" for port in replica_ports(state)]
