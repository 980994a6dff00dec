"""The swarm engines' image cache (scripts/swarm-up.sh, scripts/swarm-down.sh; `sandbox up --runtime swarm` runs them).

`down` keeps its engine's images (and nothing else) as the machine's cache; the next new engine
claims it by a rename instead of copying the images again, unless an image in it no longer has
the machine engine's id. A private cache and namespaces of this module's own, with the small test
image: the machine-wide cache (`/var/lib/docker-rollout-image-cache`) is not touched.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO_ROOT, TEST_IMAGE

pytestmark = [pytest.mark.xdist_group("swarm_image_cache"), pytest.mark.docker, pytest.mark.slow(60),
              pytest.mark.timeout(600)]

MAIN = "unix:///var/run/docker.sock"


def script(name: str, ns: str, cache: Path, *args: str) -> str:
    env = {**os.environ, "ROLLOUT_SWARM_NS": ns, "ROLLOUT_SWARM_IMAGE_CACHE": str(cache),
           "ROLLOUT_SWARM_LOG": str(cache.parent / f"{ns}-dockerd.log")}
    env.pop("ROLLOUT_SWARM_SOCKET", None)
    env.pop("ROLLOUT_SWARM_KEEP_DATA", None)
    done = subprocess.run(["bash", str(REPO_ROOT / "scripts" / name), *args], env=env, capture_output=True,
                          text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    return done.stderr


def image_id(host: str) -> str:
    return subprocess.run(["docker", "-H", host, "image", "inspect", "--format", "{{.Id}}", TEST_IMAGE],
                          capture_output=True, text=True, check=True, timeout=30).stdout.strip()


def engine(ns: str, *args: str) -> str:
    return subprocess.run(["docker", "-H", f"unix:///var/run/docker-{ns}.sock", *args], capture_output=True,
                          text=True, check=True, timeout=30).stdout.strip()


def assert_gone(ns: str) -> None:
    """What `sandbox down` promises: no namespace, engine, socket, data or exec root, mount or process."""
    assert ns not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10).stdout
    for path in (f"/var/run/netns/{ns}", f"/var/run/docker-{ns}.sock", f"/var/lib/docker-{ns}",
                 f"/var/run/docker-{ns}", f"/var/run/docker-{ns}.pid"):
        assert not Path(path).exists(), path
    assert ns not in Path("/proc/mounts").read_text()
    assert not [p for p in Path("/proc").iterdir() if p.name.isdigit() and ns in _cmdline(p)]


def _cmdline(proc: Path) -> str:
    try:
        return (proc / "cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


@pytest.fixture
def cache():  # type: ignore[no-untyped-def]
    # under /var/lib, as the engines' data roots are: claiming the cache is a rename on one filesystem
    folder = Path(f"/var/lib/rollout-test-cache-{secrets.token_hex(4)}")
    folder.mkdir()
    yield folder / "images"
    shutil.rmtree(folder, ignore_errors=True)


def test_down_keeps_the_images_and_the_next_engine_reuses_them_unless_an_id_changed(cache: Path) -> None:
    first, second, third = (f"rollout-ct-{secrets.token_hex(3)}" for _ in range(3))
    want = image_id(MAIN)
    try:
        said = script("swarm-up.sh", first, cache, TEST_IMAGE)
        assert f"loading {TEST_IMAGE}" in said
        # a container, which the cache must not keep
        engine(first, "run", "--network", "none", "--name", "leftover", TEST_IMAGE, "true")
        said = script("swarm-down.sh", first, cache)
        assert f"kept the images as the cache {cache}" in said
        assert_gone(first)
        assert f"{TEST_IMAGE} {want}" in (cache / "rollout-images").read_text().splitlines()
        assert not (cache / "swarm").exists() and not (cache / "network").exists()

        # the next engine takes the cache by a rename: no copy, the same image, a new swarm, no leftover
        said = script("swarm-up.sh", second, cache, TEST_IMAGE)
        assert f"reusing the image cache {cache}" in said and "loading" not in said
        assert not cache.exists()
        assert engine(second, "image", "inspect", "--format", "{{.Id}}", TEST_IMAGE) == want
        assert engine(second, "ps", "-aq") == ""
        assert engine(second, "info", "--format", "{{.Swarm.LocalNodeState}}") == "active"
        script("swarm-down.sh", second, cache)
        assert_gone(second)

        # a cache whose image has another id than the machine's is deleted, never used
        listed = cache / "rollout-images"
        listed.write_text(re.sub(r"sha256:\w+", "sha256:" + "0" * 64, listed.read_text()))
        said = script("swarm-up.sh", third, cache, TEST_IMAGE)
        assert f"deleting the image cache {cache}" in said and f"loading {TEST_IMAGE}" in said
        assert "reusing" not in said and not cache.exists()
        assert engine(third, "image", "inspect", "--format", "{{.Id}}", TEST_IMAGE) == want
    finally:
        for ns in (first, second, third):
            script("swarm-down.sh", ns, cache)
    assert_gone(third)
    # the machine's own engine never joined a swarm
    assert subprocess.run(["docker", "-H", MAIN, "info", "--format", "{{.Swarm.LocalNodeState}}"],
                          capture_output=True, text=True, timeout=30).stdout.strip() == "inactive"
