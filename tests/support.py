"""Test support: a real app repo + workspace, and the real `rollout` command in-process."""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from typer.testing import CliRunner

from rollout_cli.cli.app import app
from rollout_cli.sandbox.sample_app import SampleApp, flagd_text, git, workspace_yaml, write_sample_app

# Where a test world's gateway is: a port nothing listens on (binding it needs root, and no sandbox picks it),
# so level 1's traffic check meets a refused connection, never another helper's or a developer's gateway on :4000.
NO_GATEWAY = "http://127.0.0.1:9"
T = TypeVar("T")
ALIASES = ["glm-4.5-air", "deepseek-chat-v3.1", "minimax-m2", "kimi-k2", "qwen3-coder"]


@dataclass
class World:
    root: Path
    ws: Path
    app: SampleApp

    def cli(self, *args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
        return rollout("-w", str(self.ws), *args, env=env)

    def snapshot(self) -> dict[str, str]:
        """Content hash of every file in the app and workspace (git internals excluded)."""
        out = {}
        for path in sorted(self.root.rglob("*")):
            rel = path.relative_to(self.root)
            if path.is_file() and ".git" not in rel.parts and ".rollout" not in rel.parts:
                out[str(path.relative_to(self.root))] = hashlib.sha256(path.read_bytes()).hexdigest()
        return out

    def head(self) -> str:
        return git(self.app.repo, "rev-parse", "HEAD").strip()

    def history(self) -> list[dict]:
        path = self.ws / ".rollout" / "history.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def rollout(*args: str, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    # wide enough that rich never wraps a line the tests look for
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "250", **(env or {})}, catch_exceptions=False)


def wait_until(condition: Callable[[], T], timeout: float, what: str, poll: float = 0.05) -> T:
    """Poll `condition` until it returns something truthy, and return that; fail naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:g} s waiting for {what}")
        time.sleep(poll)


def plausible_share(through: int, total: int, percentage: int) -> bool:
    """Whether `through` of `total` app requests through the gateway fits a `percentage` % split.

    The sample app draws a random user id per request and the real flagd provider
    buckets it, so the split is binomial: within 5 standard deviations (a false
    alarm about once in 3.5 million runs), and never a share the stage forbids.
    """
    if percentage in (0, 100):
        return through == total * percentage // 100
    p = percentage / 100
    return abs(through - total * p) <= 5 * (total * p * (1 - p)) ** 0.5


def make_world(tmp_path: Path, percentage: int = 10, container: str = "litellm") -> World:
    app_dir = tmp_path / "app"
    ws = tmp_path / "ws"
    ws.mkdir()
    sample = write_sample_app(app_dir, percentage=percentage)
    (ws / "rollout.yaml").write_text(workspace_yaml(container=container, gateway_url=NO_GATEWAY))
    return World(tmp_path, ws, sample)


@contextmanager
def process_sandbox(root: Path) -> Iterator:  # type: ignore[type-arg]
    """A sandbox of a test's own (process runtime, free ports), stopped whatever happens."""
    from rollout_cli.sandbox import world

    info = world.up(root, runtime="process", gateway_port=0, simulator_port=0, timeout=90)
    try:
        yield info
    finally:
        world.down(root)


def at_stage(box, percentage: int) -> None:  # type: ignore[no-untyped-def]
    """Put a sandbox's app files at `percentage` by hand (in place: the app's container holds their inodes)."""
    env = box.root / "app" / ".env"
    text = re.sub(r"(?m)^LITELLM_ENABLED=\w+", "LITELLM_ENABLED=true", env.read_text())
    text = re.sub(r"(?m)^LITELLM_ROLLOUT_PERCENTAGE=\d+", f"LITELLM_ROLLOUT_PERCENTAGE={percentage}", text)
    for path, content in ((env, text), (box.root / "app" / "flags.json", flagd_text(percentage))):
        with open(path, "r+") as handle:  # same inode, as rollout writes a bind-mounted file
            handle.write(content)
            handle.truncate()
