"""Shared fixtures. Docker-marked tests run against the real engine, never a mock.

The suite runs in parallel (`./scripts/test`: pytest-xdist, `-n 6`;
`ROLLOUT_TEST_WORKERS=0` runs it serially). Every worker is a process of its own,
and so are the other engineers' test runs on this machine. A test is safe there when:

1. It writes only under its own `tmp_path` (or a `tmp_path_factory` folder), never in
   the repo, the home folder or a fixed /tmp path. Per-worker temp roots come for free.
2. Servers bind 127.0.0.1 port 0 (or `io.net.free_port()`), never a fixed port and never 4000.
3. Containers, images and labels it creates carry a unique name (the sandbox names its
   containers after its folder; otherwise `secrets.token_hex`), and it removes them.
   It never creates a container literally named `litellm`: tests/test_rollback.py relies on
   there being none. It never builds, tags or removes `rollout/litellm:local` (setup.sh builds
   it once), never prunes, never stops a container it did not start.
4. Assertions about the Docker engine or the process table filter by what the test itself
   made (a name, a label, its sandbox folder), never count everything (`docker ps`, `ps`).
5. The session `sandbox` is for tests that only read it, or that put back what they changed
   before the next test (the `sb` fixture clears faults and counts). The scheduler below runs
   every test that uses it on one worker, in file order, so it starts once per run, not once per
   worker (a sandbox start is a LiteLLM start: about 6.5 CPU seconds on a suite that is CPU-bound).
   A test that advances, rolls back, stops the gateway or edits the workspace takes a
   sandbox of its own (`support.process_sandbox`, or a module fixture).
6. A module whose tests share a module-scoped sandbox (or depend on their order) names
   `xdist_group` (`pytestmark = pytest.mark.xdist_group("name")`): the scheduler below
   then runs the whole module on one worker, in file order, so its sandbox starts once.
7. No fixed sleeps to let something happen: wait on the condition itself, bounded
   (`support.wait_until`: a counter, a file, a log line, a status). A sleep is only for a
   quiet period the test asserts (e.g. "no request in the last second").
8. A test (or a module kept on one worker) that takes half a minute or more is marked
   `pytest.mark.slow(SECONDS)` with about how long it took in a parallel run: it starts first.
9. A subprocess gets the environment it relies on explicitly; never assume a variable is unset
   (an xdist worker sets COLUMNS and LINES; pytest_configure below takes them out again).
10. No assertion on how long something took, nor on a rate a loaded machine may not reach
   (speed belongs in benchmarks/): the workers share two cores with whatever else runs.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
TEST_IMAGE = "rollout-test/busybox:latest"


# The tests on the session sandbox (rule 5) take about this long together, on their one worker
# (120 s to 150 s in a whole run at 6 workers).
SESSION_SANDBOX_S = 150
# Where the workers tell the xdist controller which tests use the session sandbox: the controller's
# scheduler sees only test ids, and only the collected items know their fixtures.
_SANDBOX_TESTS = pytest.StashKey[Path]()


def pytest_configure(config: pytest.Config) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER"):
        # An xdist worker starts with COLUMNS=80 and LINES=24 set, a serial run with neither: without
        # them the `rollout` processes the tests start render (and wrap) as they do in a serial run.
        os.environ.pop("COLUMNS", None)
        os.environ.pop("LINES", None)
    elif getattr(config.option, "numprocesses", None):
        config.stash[_SANDBOX_TESTS] = Path(tempfile.mkdtemp(prefix="rollout-sandbox-tests-")) / "tests.json"


def pytest_unconfigure(config: pytest.Config) -> None:
    if _SANDBOX_TESTS in config.stash:
        shutil.rmtree(config.stash[_SANDBOX_TESTS].parent, ignore_errors=True)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:  # type: ignore[no-untyped-def]
    if _SANDBOX_TESTS in node.config.stash:
        node.workerinput["rollout_sandbox_tests"] = str(node.config.stash[_SANDBOX_TESTS])


def _uses_session_sandbox(item: pytest.Item) -> bool:
    return "sandbox" in getattr(item, "fixturenames", ())


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Longest work first, so no worker starts a minute-long test while the others run out of work:
    the tests on the session sandbox (rule 5) and the tests marked `slow(SECONDS)`, by their seconds
    (a module kept on one worker marks them for the whole module), then the other modules kept on
    one worker (rule 6), then the rest; file order kept within each (scripts/test passes
    --no-loadscope-reorder, so the scheduler keeps this order). An xdist worker also writes down
    the tests on the session sandbox, for the scheduler."""
    target = getattr(config, "workerinput", {}).get("rollout_sandbox_tests")
    if target:  # every worker collects the same tests: the last rename wins, each whole
        partial = Path(f"{target}.{os.getpid()}")
        partial.write_text(json.dumps([item.nodeid for item in items if _uses_session_sandbox(item)]))
        partial.rename(target)

    def rank(item: pytest.Item) -> tuple[int, float]:
        if _uses_session_sandbox(item):
            return 0, -SESSION_SANDBOX_S
        slow = item.get_closest_marker("slow")
        if slow:  # the longest first: the seconds it says, or its whole module's on one worker
            return 0, -float(slow.args[0] if slow.args else 30)
        return (1 if _one_worker_module(item.nodeid) else 2), 0.0

    items.sort(key=rank)


@functools.cache
def _one_worker_module(nodeid: str) -> bool:
    """Whether the test's module names `xdist_group` (rule 6): then all its tests run on one worker."""
    module = REPO_ROOT / nodeid.split("::", 1)[0]
    return module.suffix == ".py" and "xdist_group" in module.read_text()


def pytest_xdist_make_scheduler(config: pytest.Config, log):  # type: ignore[no-untyped-def]
    """loadgroup, made to work: xdist 3.8 groups by a suffix it writes into `item._nodeid`, which
    pytest 9.2 no longer reads, so `xdist_group` alone would spread a module's tests (and start its
    module sandbox on every worker). Here the tests on the session sandbox are one unit (rule 5),
    then a module that names `xdist_group` is one unit, whole, on one worker, in file order (its
    tests on the session sandbox excepted: they use no sandbox of the module's); every other test
    is a unit of its own. Called once every worker has collected, so has written its list."""
    from xdist.scheduler import LoadScopeScheduling

    class ModulesKeptTogether(LoadScopeScheduling):
        @functools.cached_property
        def on_session_sandbox(self) -> frozenset[str]:
            try:
                return frozenset(json.loads(config.stash[_SANDBOX_TESTS].read_text()))
            except (KeyError, OSError, ValueError):  # no list: each worker starts its own, as before
                return frozenset()

        def _split_scope(self, nodeid: str) -> str:
            if nodeid in self.on_session_sandbox:
                return "the session sandbox"
            return nodeid.split("::", 1)[0] if _one_worker_module(nodeid) else nodeid

    return ModulesKeptTogether(config, log)


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
    (the sandbox's real Prometheus: jobs `litellm`, `app` and `rollout`, the last the node_exporter
    serving `.rollout/rollout.prom`).
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


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem):  # type: ignore[no-untyped-def]
    """ROLLOUT_TEST_TIMELINE=FILE: each test's worker, start, end and worker CPU appended as a JSON line
    (benchmarks/suite_timeline.py reads it: each worker's busy seconds, the modules and tests by seconds and CPU)."""
    path = os.environ.get("ROLLOUT_TEST_TIMELINE")
    if not path:
        yield
        return
    import json
    import resource
    import time

    def cpu() -> float:  # this worker's own CPU seconds, and those of the subprocesses it has waited for
        return sum(r.ru_utime + r.ru_stime for r in map(resource.getrusage,
                                                          (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)))

    start, started_cpu = time.time(), cpu()
    yield
    line = {"worker": os.environ.get("PYTEST_XDIST_WORKER", "main"), "test": item.nodeid,
            "start": start, "end": time.time(), "cpu": round(cpu() - started_cpu, 3)}
    with open(path, "a") as out:
        out.write(json.dumps(line) + "\n")
