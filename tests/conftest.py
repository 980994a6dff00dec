"""Shared fixtures. Docker-marked tests run against the real engine, never a mock."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_IMAGE = "rollout-test/busybox:latest"


@pytest.fixture(scope="session")
def docker_engine():
    """A client for the real Docker engine; a missing engine fails the test.

    Failing, not skipping, keeps CI honest: a green run means the Docker
    paths were exercised. ROLLOUT_TESTS_ALLOW_NO_DOCKER=1 skips instead (local dev only).
    """
    from rollout_cli.errors import DockerUnavailable
    from rollout_cli.io.container import connect

    try:
        client = connect()
    except DockerUnavailable as exc:
        reason = str(exc)  # fail/skip outside the except: no chained traceback
    else:
        yield client
        client.close()
        return
    if os.environ.get("ROLLOUT_TESTS_ALLOW_NO_DOCKER") == "1":
        pytest.skip(f"{reason} (ROLLOUT_TESTS_ALLOW_NO_DOCKER=1)")
    pytest.fail(
        f"{reason}. Docker-marked tests need a real engine: run scripts/docker-up.sh "
        "(or set ROLLOUT_TESTS_ALLOW_NO_DOCKER=1 to skip them, local dev only)",
        pytrace=False,
    )


@pytest.fixture(autouse=True)
def _docker_marker_needs_engine(request: pytest.FixtureRequest) -> None:
    """Any test marked `docker` gets the engine check, even if it does not ask for the client."""
    if request.node.get_closest_marker("docker"):
        request.getfixturevalue("docker_engine")


@pytest.fixture(scope="session")
def busybox_image(docker_engine) -> str:
    """The tiny offline test image, built by scripts/build-test-image.sh when missing."""
    import docker.errors

    try:
        docker_engine.images.get(TEST_IMAGE)
    except docker.errors.ImageNotFound:
        build = subprocess.run(
            [str(REPO_ROOT / "scripts" / "build-test-image.sh"), TEST_IMAGE],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if build.returncode != 0:
            pytest.fail(f"scripts/build-test-image.sh failed:\n{build.stderr}", pytrace=False)
        docker_engine.images.get(TEST_IMAGE)
    return TEST_IMAGE


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory):
    """One real sandbox for the whole session: simulator + the real LiteLLM proxy (process runtime).

    Yields a `rollout_cli.sandbox.world.SandboxInfo`: `.root` (a complete workspace,
    use `rollout -w <root> ...`), `.gateway_url`, `.simulator_url`, `.master_key`,
    `.admin` (SimulatorAdmin: set_fault/clear/stats), `.client()` (GatewayClient), `.prometheus_url`
    (the sandbox's real Prometheus: jobs `litellm` and `app`, scraped every 1 s).
    Tests that inject faults must clear them (`sandbox.admin.clear()`) when done.
    Starting it costs about 6 s, once per session; free ports, never 4000.
    """
    from rollout_cli.sandbox import world

    root = tmp_path_factory.mktemp("sandbox") / "sb"
    info = world.up(root, runtime="process", gateway_port=0, simulator_port=0, timeout=90)
    try:
        yield info
    finally:
        world.down(root)


@pytest.fixture
def sb(sandbox):
    """The session sandbox with no fault in force and its request counts at zero."""
    sandbox.admin.clear()
    sandbox.admin.reset_stats()
    yield sandbox
    sandbox.admin.clear()
