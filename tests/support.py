"""Test support: a real app repo + workspace, and the real `rollout` command in-process."""

from __future__ import annotations

import hashlib
import json
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import TypeVar

from typer.testing import CliRunner

from rollout_cli.cli.app import app
from rollout_cli.sandbox.sample_app import SampleApp, flagd_text, git, workspace_yaml, write_sample_app

# Where a test world's gateway is: a port nothing listens on (binding it needs root, and no sandbox picks it),
# so level 1's traffic check meets a refused connection, never another helper's or a developer's gateway on :4000.
NO_GATEWAY = "http://127.0.0.1:9"
T = TypeVar("T")


class QuietServer(ThreadingHTTPServer):
    """An in-process test server whose clients may hang up mid-answer (a bounded reader giving up is the point).

    http.server prints such a disconnect as a traceback on whatever `sys.stderr` is current when its handler
    thread notices, which may be CliRunner's capture in a later test on the same worker: that test's `--json`
    output then carries the traceback. Disconnects are dropped; any other error is still printed.
    """

    daemon_threads = True

    def handle_error(self, request, client_address):  # type: ignore[no-untyped-def]
        if isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            return
        super().handle_error(request, client_address)
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


def send_load(root: Path, rps: int, seconds: float, model: str) -> dict:
    """Load on a sandbox's app (its control port), asking `model`; returns the app's /status once every request
    it sent has its answer (bounded: a minute past the load's end)."""
    from rollout_cli.sandbox.app import AppControl, load_app
    from rollout_cli.simulator import GATEWAY_ALIASES

    record = load_app(root)
    assert record is not None, f"no sample app runs in {root}"
    control = AppControl(record.url)
    control.load(rps, seconds, model, GATEWAY_ALIASES[model])

    def answered() -> dict | None:
        seen = control.status()
        return seen if seen["now"] >= seen["load"]["until"] and seen["in_flight"] == 0 else None

    seen = wait_until(answered, seconds + 60, f"the app's answers to {rps} rps for {seconds:g} s", poll=0.1)
    scraped_after_now(root)
    return seen


def scraped_after_now(root: Path) -> None:
    """Wait (bounded) until the sandbox's Prometheus, when it runs one, has scraped every target after now.

    A decision's window runs to each target's last scrape before it (promql.scraped_by): a test that compares
    the window's counts with what the app counted waits for the scrapes that carry its last requests.
    """
    from rollout_cli.rollout.promql import Prometheus
    from rollout_cli.sandbox.state import load_state

    state = load_state(root)
    if state is None or not state.prometheus_url:
        return
    prom, now = Prometheus(state.prometheus_url), time.time()

    def scraped() -> bool:
        last = prom.query("timestamp(up) * up", time.time())
        return bool(last) and all(s.value > now for s in last)  # none yet: Prometheus has not scraped at all

    wait_until(scraped, 30, "a scrape of every target by the sandbox's Prometheus", poll=0.2)


def app_counts(root: Path) -> dict[str, dict[str, float]]:
    """The sandbox app's own per-path counts, {path: {requests, failed}}, read from its /metrics."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    from rollout_cli.sandbox.app import load_app

    record = load_app(root)
    assert record is not None, f"no sample app runs in {root}"
    with urllib.request.urlopen(record.url + "/metrics", timeout=5) as answer:
        text = answer.read().decode()
    out = {path: {"requests": 0.0, "failed": 0.0} for path in ("gateway", "direct")}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = {"llm_requests_total": "requests", "llm_request_failures_total": "failed"}.get(sample.name)
            if key:
                out[sample.labels["path"]][key] += sample.value
    return out


PROMETHEUS = "/usr/bin/prometheus"
PROMTOOL = "/usr/bin/promtool"


@contextmanager
def prometheus_server(
    root: Path, *, targets: list[dict] | None = None, backfill: str | None = None, timeout: float = 60.0,
) -> Iterator[str]:
    """A real Prometheus (Debian's) on 127.0.0.1 with a temp data folder, stopped whatever happens; yields its URL.

    `targets`: scrape jobs ({job, url, token}) every second; `backfill`: OpenMetrics
    text written into the data folder first with `promtool tsdb create-blocks-from openmetrics`,
    so a test can judge a 48 h window Prometheus holds from stored history.
    """
    import subprocess
    import time
    import urllib.parse
    import urllib.request

    import yaml

    from rollout_cli.io.net import free_port

    root.mkdir(parents=True, exist_ok=True)
    data = root / "data"
    data.mkdir()
    if backfill is not None:
        source = root / "backfill.om"
        source.write_text(backfill)
        subprocess.run([PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", str(source), str(data)],
                       check=True, capture_output=True, timeout=300)
    jobs = []
    for t in targets or []:
        url = urllib.parse.urlsplit(t["url"])
        job = {"job_name": t["job"], "scrape_interval": "1s", "scrape_timeout": "1s", "metrics_path": url.path or "/",
               "static_configs": [{"targets": [url.netloc]}]}
        if t.get("token"):
            job["authorization"] = {"credentials": t["token"]}
        jobs.append(job)
    config = root / "prometheus.yml"
    config.write_text(yaml.safe_dump({"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                                      "scrape_configs": jobs}))
    port = free_port()
    log = (root / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [PROMETHEUS, f"--config.file={config}", f"--storage.tsdb.path={data}", "--storage.tsdb.retention.time=30d",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        while True:
            try:
                with opener.open(f"{url}/-/ready", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"Prometheus did not start: {(root / 'prometheus.log').read_text()[-2000:]}")
            time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
        log.close()


def use_metrics(root: Path, source: str, url: str | None = None) -> None:
    """Point a workspace's `metrics:` at `source` (and `url`), replacing the line the sandbox wrote."""
    config = root / "rollout.yaml"
    lines = [line for line in config.read_text().splitlines() if not line.startswith("metrics:")]
    where = f", url: {url}" if url else ""
    config.write_text("\n".join([*lines, f"metrics: {{source: {source}{where}}}"]) + "\n")


def openmetrics(families: dict[str, tuple[str, list[tuple[dict[str, str], list[tuple[float, float]]]]]]) -> str:
    """OpenMetrics text for backfilling: {family: (type, [(labels, [(ts, value)])])}; counters get `_total`."""
    lines = []
    for family, (kind, series) in families.items():
        lines.append(f"# TYPE {family} {kind}")
        for labels, points in series:
            name = labels.get("__name__") or (f"{family}_total" if kind == "counter" else family)
            text = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()) if k != "__name__")
            lines += [f"{name}{{{text}}} {value:g} {ts:.3f}" for ts, value in points]
    return "\n".join(lines) + "\n# EOF\n"


def without_redis(config_text: str) -> str:
    """A LiteLLM config with no Redis (every `redis_*` line dropped): what a team that did not set it up runs."""
    return "".join(line for line in config_text.splitlines(keepends=True) if "redis_" not in line)


def at_stage(box, percentage: int) -> None:  # type: ignore[no-untyped-def]
    """Put a sandbox's app files at `percentage` by hand (in place: the app's container holds their inodes)."""
    env = box.root / "app" / ".env"
    text = re.sub(r"(?m)^LITELLM_ENABLED=\w+", "LITELLM_ENABLED=true", env.read_text())
    text = re.sub(r"(?m)^LITELLM_ROLLOUT_PERCENTAGE=\d+", f"LITELLM_ROLLOUT_PERCENTAGE={percentage}", text)
    for path, content in ((env, text), (box.root / "app" / "flags.json", flagd_text(percentage))):
        with open(path, "r+") as handle:  # same inode, as rollout writes a bind-mounted file
            handle.write(content)
            handle.truncate()
