"""What `rollout sandbox up` started, recorded in DIR/.rollout/sandbox.json.

`down` stops exactly what this file names. A process-runtime gateway is
recorded beside it, in `.rollout/gateway-process.json`, the workspace's own
record that `rollout gateway` restarts litellm from. Neither holds a secret: the master key
lives only in the 0600 key files, and the sandbox's "OpenRouter keys" are public
values the simulator knows.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rollout_cli.core.workspace import GatewayConfig, MasterKey, read_key_file
from rollout_cli.errors import InputError, RolloutError
from rollout_cli.gateway.runtime import PROCESS_RECORD, ProcessGateway
from rollout_cli.io.atomic import atomic_write_text
from rollout_cli.io.process import ProcessRecord

STATE_NAME = "sandbox.json"
KEY_NAME = "master.key"
MASTER_KEY_ENV = "ROLLOUT_SANDBOX_MASTER_KEY"  # not LITELLM_MASTER_KEY: a production key in the shell must not win
CONTAINER_PREFIX = "rollout-sandbox-"
LABEL = "rollout.sandbox"
LABEL_DIR = "rollout.sandbox.dir"
CONTAINER_CONFIG = "/etc/litellm/config.yaml"
DEFAULT_IMAGE = "rollout/litellm:local"
IMAGE_ENV = "ROLLOUT_GATEWAY_IMAGE"
HOST = "127.0.0.1"
# The OpenRouter key each caller sends in the sandbox: the gateway one, the app (calling OpenRouter
# directly) another, so the simulator tells them apart and a fault can hit one (`sandbox fault --via`).
# Public values, like the simulator's default key; in production the two may well differ too.
CALLER_KEYS = {"gateway": "sk-or-sandbox-gateway", "direct": "sk-or-sandbox-app"}


def sandbox_id(root: Path) -> str:
    """A short stable id of a sandbox folder, for container names and labels."""
    return hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:10]


def container_name(root: Path) -> str:
    return CONTAINER_PREFIX + sandbox_id(root)


def default_image() -> str:
    return os.environ.get(IMAGE_ENV) or DEFAULT_IMAGE


def litellm_executable() -> Path | None:
    """litellm from the same environment as rollout (the `gateway` extra), else from PATH."""

    beside = Path(sys.executable).parent / "litellm"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    found = shutil.which("litellm")
    return Path(found) if found else None


def litellm_argv(executable: Path | str, config: Path | str, port: int) -> list[str]:
    return [str(executable), "--config", str(config), "--host", HOST, "--port", str(port)]


def gateway_settings(simulator_api_base: str, simulator_key: str) -> dict[str, str]:
    """What the gateway process or container needs besides its master key; the deploy config reads these names."""
    return {
        "OPENROUTER_API_KEY": simulator_key,
        "OPENROUTER_API_BASE": simulator_api_base,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no cost-map download at start: there is no internet
        "LITELLM_LOG": "ERROR",  # as deploy/docker-compose.yml: INFO logs cost ~3 ms a request (docs/SETUP.md)
        "LITELLM_MODE": "PRODUCTION",  # no .env file read from the working folder at start
        "PYTHONUNBUFFERED": "1",  # log lines reach the log file as they happen
    }


@dataclass
class SandboxState:
    root: Path
    runtime: str  # docker | process | swarm
    simulator_port: int
    gateway_port: int
    simulator_key: str
    simulator: ProcessRecord | None = None
    container: str | None = None
    container_id: str | None = None
    image: str | None = None
    created: str = ""
    app_port: int = 0  # the sample app's control and metrics port (rollout.yaml's app.metrics_url names it)
    prometheus_port: int = 0  # 0: no Prometheus (not installed)
    prometheus: ProcessRecord | None = None
    node_exporter_port: int = 0  # 0: no node_exporter (not installed, or no Prometheus to scrape it)
    node_exporter: ProcessRecord | None = None
    receiver_port: int = 0  # the notification receiver (`rollout sandbox notifications`); 0: not started
    receiver: ProcessRecord | None = None
    # runtime swarm (sandbox/swarm.py): the namespace holding its engine, the replicas (replica k on BASE+k),
    # Redis's port there, and the relay joining the namespace's loopback to the host's
    netns: str = ""
    replicas: int = 0
    port_base: int = 0
    redis_port: int = 0
    relay: ProcessRecord | None = None

    @property
    def path(self) -> Path:
        return state_path(self.root)

    @property
    def simulator_url(self) -> str:
        return f"http://{HOST}:{self.simulator_port}"

    @property
    def simulator_api_base(self) -> str:
        return self.simulator_url + "/api/v1"

    @property
    def gateway_url(self) -> str:
        return f"http://{HOST}:{self.gateway_port}"

    @property
    def prometheus_url(self) -> str | None:
        return f"http://{HOST}:{self.prometheus_port}" if self.prometheus_port else None

    @property
    def receiver_url(self) -> str | None:
        return f"http://{HOST}:{self.receiver_port}/hook" if self.receiver_port else None

    @property
    def receiver_log(self) -> Path:
        return self.root / ".rollout" / "receiver.log"

    @property
    def prometheus_log(self) -> Path:
        return self.root / ".rollout" / "prometheus.log"

    @property
    def node_exporter_url(self) -> str | None:
        return f"http://{HOST}:{self.node_exporter_port}" if self.node_exporter_port else None

    @property
    def node_exporter_log(self) -> Path:
        return self.root / ".rollout" / "node-exporter.log"

    @property
    def key_file(self) -> Path:
        return self.root / ".rollout" / KEY_NAME

    def master_key(self) -> MasterKey:
        """Read as the sandbox's rollout.yaml says: $ROLLOUT_SANDBOX_MASTER_KEY, else the key file."""
        return sandbox_master_key(self.root)

    @property
    def gateway_process(self) -> ProcessGateway:
        """The process-runtime gateway, through the same runtime `rollout gateway` uses."""
        return ProcessGateway(self.root / ".rollout" / PROCESS_RECORD, self.master_key(),
                              self.root / "gateway" / "litellm-config.yaml")

    @property
    def gateway_log(self) -> Path:
        return self.root / ".rollout" / "gateway.log"

    @property
    def simulator_log(self) -> Path:
        return self.root / ".rollout" / "simulator.log"

    @property
    def relay_log(self) -> Path:
        return self.root / ".rollout" / "relay.log"

    @property
    def engine_log(self) -> Path:
        return self.root / ".rollout" / "swarm-dockerd.log"

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "root": str(self.root),
            "id": sandbox_id(self.root),
            "runtime": self.runtime,
            "created": self.created,
            "app_port": self.app_port,
            "simulator": {
                "url": self.simulator_url,
                "port": self.simulator_port,
                "api_key": self.simulator_key,  # the simulator's public default, not a secret
                "process": self.simulator.to_json() if self.simulator else None,
            },
            "gateway": {
                "url": self.gateway_url,
                "port": self.gateway_port,
                "container": self.container,
                "container_id": self.container_id,
                "image": self.image,
            },
            "prometheus": {
                "url": self.prometheus_url,
                "port": self.prometheus_port,
                "process": self.prometheus.to_json() if self.prometheus else None,
            } if self.prometheus_port else None,
            "node_exporter": {
                "url": self.node_exporter_url,
                "port": self.node_exporter_port,
                "process": self.node_exporter.to_json() if self.node_exporter else None,
            } if self.node_exporter_port else None,
            "receiver": {
                "url": self.receiver_url,
                "port": self.receiver_port,
                "process": self.receiver.to_json() if self.receiver else None,
            } if self.receiver_port else None,
            "swarm": {
                "netns": self.netns,
                "replicas": self.replicas,
                "port_base": self.port_base,
                "redis_port": self.redis_port,
                "relay": self.relay.to_json() if self.relay else None,
            } if self.netns else None,
        }

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps(self.to_json(), indent=2) + "\n")


def sandbox_master_key(root: Path) -> MasterKey:
    """The sandbox's master key, by the same reader as any workspace's (see workspace_yaml in world.py)."""
    return GatewayConfig(master_key_env=MASTER_KEY_ENV, master_key_file=root / ".rollout" / KEY_NAME).key


def master_key_file_for(root: Path, own: Path) -> Path:
    """A file holding the sandbox's master key, for a process that reads it from one (the sample app, Prometheus).

    The sandbox's key file when it holds the key in force, so the key stays in one file;
    else (the key comes from $ROLLOUT_SANDBOX_MASTER_KEY) `own`, written with mode 0600.
    """
    key = sandbox_master_key(root).require()
    master = root / ".rollout" / KEY_NAME
    own.unlink(missing_ok=True)  # no stale copy; written afresh below, so it gets mode 0600 whatever was there
    try:
        if read_key_file(master) == key:
            return master
    except (OSError, RolloutError):
        pass
    atomic_write_text(own, key + "\n", mode=0o600)
    return own


def state_path(root: Path) -> Path:
    return root / ".rollout" / STATE_NAME


def load_state(root: Path) -> SandboxState | None:
    """The recorded sandbox of `root`, or None when nothing was started there."""
    path = state_path(root)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        sim, gw, prom = raw["simulator"], raw["gateway"], raw.get("prometheus") or {}
        exporter = raw.get("node_exporter") or {}
        receiver = raw.get("receiver") or {}
        swarm = raw.get("swarm") or {}
        return SandboxState(
            root=root,
            runtime=raw["runtime"],
            simulator_port=int(sim["port"]),
            gateway_port=int(gw["port"]),
            simulator_key=sim["api_key"],
            simulator=ProcessRecord.from_json(sim["process"]) if sim.get("process") else None,
            container=gw.get("container"),
            container_id=gw.get("container_id"),
            image=gw.get("image"),
            created=raw.get("created", ""),
            app_port=int(raw.get("app_port") or 0),
            prometheus_port=int(prom.get("port") or 0),
            prometheus=ProcessRecord.from_json(prom["process"]) if prom.get("process") else None,
            node_exporter_port=int(exporter.get("port") or 0),
            node_exporter=ProcessRecord.from_json(exporter["process"]) if exporter.get("process") else None,
            receiver_port=int(receiver.get("port") or 0),
            receiver=ProcessRecord.from_json(receiver["process"]) if receiver.get("process") else None,
            netns=str(swarm.get("netns") or ""),
            replicas=int(swarm.get("replicas") or 0),
            port_base=int(swarm.get("port_base") or 0),
            redis_port=int(swarm.get("redis_port") or 0),
            relay=ProcessRecord.from_json(swarm["relay"]) if swarm.get("relay") else None,
        )
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(
            f"{path} is damaged ({exc.__class__.__name__}: {exc}); stop what it started by hand "
            "(ps, docker ps --filter label=rollout.sandbox) and delete it"
        ) from None
