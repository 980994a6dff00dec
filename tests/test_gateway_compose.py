"""`rollout gateway ...` on the container deploy/docker-compose.yml describes, found by its compose service label.

A module of its own, not test_gateway.py's: it shares no sandbox, so it runs on whichever worker is free
rather than lengthening that module's one-worker group (tests/conftest.py, rule 6).
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
import yaml

from support import rollout

REPO = Path(__file__).resolve().parents[1]


def gw(root: Path, *args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return rollout("-w", str(root), "gateway", *args, env=env)


def _ns(duration: str) -> int:
    units = {"ms": 1_000_000, "s": 1_000_000_000, "m": 60_000_000_000}
    for suffix in ("ms", "s", "m"):
        if duration.endswith(suffix):
            return int(float(duration[: -len(suffix)]) * units[suffix])
    raise ValueError(duration)


@pytest.mark.gateway
@pytest.mark.slow(120)
@pytest.mark.docker
def test_compose_service_found_by_its_label_with_the_production_config(docker_engine, tmp_path: Path) -> None:
    """The compose service as written (command, healthcheck, env, read-only config), with the offline image
    for the registry's and a free port for 4000: `rollout gateway` finds it by its compose service label."""
    from rollout_cli.gateway.api import GatewayClient
    from rollout_cli.io.container import COMPOSE_SERVICE_LABEL, ContainerRuntime
    from rollout_cli.io.net import free_port
    from rollout_cli.simulator import Simulator

    service = yaml.safe_load((REPO / "deploy" / "docker-compose.yml").read_text())["services"]["litellm"]
    assert service["network_mode"] == "host" and service["restart"] == "unless-stopped"
    assert service["image"].startswith("ghcr.io/berriai/litellm:v")
    port = free_port()
    swap = lambda text: text.replace("4000", str(port))  # noqa: E731
    health = service["healthcheck"]
    suffix = secrets.token_hex(3)
    name, service_name = f"rollout-test-compose-{suffix}", f"litellm-test-{suffix}"
    key = "sk-" + secrets.token_urlsafe(32)
    runtime = ContainerRuntime(docker_engine)
    with Simulator(api_key="sk-sim-compose") as sim:
        try:
            runtime.run_detached(
                "rollout/litellm:local",
                name,
                command=[swap(part) for part in service["command"]],
                environment={**service["environment"], "LITELLM_MASTER_KEY": key,
                             "OPENROUTER_API_KEY": sim.api_key, "OPENROUTER_API_BASE": sim.api_base},
                volumes={str(REPO / "deploy" / "litellm-config.yaml"): "/app/config.yaml:ro"},
                labels={COMPOSE_SERVICE_LABEL: service_name},
                restart=service["restart"],
                healthcheck={"test": [swap(part) for part in health["test"]], "interval": _ns(health["interval"]),
                             "timeout": _ns(health["timeout"]), "retries": health["retries"],
                             "start_period": _ns(health["start_period"])},
            )
            (tmp_path / "rollout.yaml").write_text(
                f"app: {{env_file: .env}}\ngateway:\n  url: http://127.0.0.1:{port}\n"
                f"  master_key_env: TEST_COMPOSE_KEY\n  container: {service_name}\n"
            )
            # 180 s: the production healthcheck and a cold LiteLLM start, on two cores shared with the other workers
            waited = gw(tmp_path, "wait", "--timeout", "180")
            assert waited.exit_code == 0, waited.output
            data = json.loads(gw(tmp_path, "status", "--json").stdout)
            assert data["runtime"] == "docker" and data["state"]["name"] == name
            assert data["healthy"] is True and data["state"]["health"] in ("starting", "healthy")

            with GatewayClient(f"http://127.0.0.1:{port}", key) as client:
                seen = client.complete("kimi-k2", "ping")
                assert (seen.status, seen.served_by, seen.content) == (200, "kimi-k2", "pong"), seen
                assert client.metrics().count("litellm_") > 10  # the prometheus callback is on
            # `gateway restart` of a container: test_gateway.py, on its docker sandbox (a restart here starts
            # the production config's two workers and their parent again: three LiteLLM imports)
        finally:
            runtime.remove(name)
