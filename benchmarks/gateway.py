"""The gateway's figures: sandbox start, `rollout gateway status`, and the latency the gateway adds.

1. `rollout sandbox up` to a healthy gateway, as a whole process (docker runtime
   with the image present, unless --runtime process), `--up-runs` times, each followed by an
   untimed down. Goal: median <= 12 s.
2. `rollout gateway status` as a whole process, median of `--status-runs`. Goal: <= 0.5 s.
3. Added latency, measured client-side as the app feels it (rollout_cli.checks.latency, the
   method `rollout sandbox traffic` reports with): interleaved pairs of the same completion,
   straight to the simulator and through the gateway, keep-alive, warm-up excluded, at
   concurrency 1, 4 and 16, for every candidate gateway configuration: each its own LiteLLM
   against the sandbox's simulator, all running at once and measured in rotation (a block of
   pairs each, in turn), so the load of a shared machine falls on all of them alike. For each it
   also scrapes /metrics/ before and after: "metrics whole" says whether the gateway counted
   every request it served (the error-rate gate needs that), and "gate sees" is the
   added-latency p95 the advance gate computes from those metrics (rollout.gates).
   Goal: the shipped configuration's added p95 at concurrency 1 <= 10 ms.

Exit 1 when a goal is missed. The machine's load averages are printed before and after: on a
shared machine the interleaving cancels most drift, but not all of it.

Usage: .venv/bin/python benchmarks/gateway.py [--runtime docker|process] [--pairs N]
       [--concurrency 1,4,16] [--configs shipped,before,...] [--up-runs N] [--status-runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

ROLLOUT = shutil.which("rollout", path=str(Path(sys.executable).parent)) or "rollout"
UP_GOAL_S = 12.0
STATUS_GOAL_S = 0.5
ADDED_P95_GOAL_MS = 10.0


@dataclass(frozen=True)
class Candidate:
    """One gateway configuration: environment, config-file settings and server options on top of the shipped ones."""

    name: str  # for --configs
    label: str  # for the table
    env: dict[str, str] = field(default_factory=dict)
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)  # section -> key -> value (None: remove)
    args: tuple[str, ...] = ()


def candidates() -> list[Candidate]:
    # "shipped" is what `rollout sandbox up` starts (gateway_settings + the rendered deploy config);
    # the others change one thing against it, or put back what the sandbox shipped before.
    untuned = {"prometheus_metrics_config": None, "prometheus_latency_buckets": None}
    return [
        Candidate("shipped", "shipped"),
        Candidate("before", "before: LITELLM_LOG=INFO, every metric",
                  env={"LITELLM_LOG": "INFO", "LITELLM_MODE": "DEV"}, settings={"litellm_settings": untuned}),
        Candidate("log-info", "shipped, but LITELLM_LOG=INFO", env={"LITELLM_LOG": "INFO"}),
        Candidate("all-metrics", "shipped, but every prometheus metric", settings={"litellm_settings": untuned}),
        Candidate("no-prometheus", "shipped, prometheus callback off (gates blind)",
                  settings={"litellm_settings": {"callbacks": []}}),
        Candidate("no-spend-logs", "shipped + disable_spend_logs",
                  settings={"general_settings": {"disable_spend_logs": True}}),
        Candidate("httpx", "shipped + httpx transport (aiohttp off)",
                  settings={"litellm_settings": {"disable_aiohttp_transport": True}}),
        Candidate("workers-2", "shipped + 2 workers, PROMETHEUS_MULTIPROC_DIR (the compose file)",
                  env={"PROMETHEUS_MULTIPROC_DIR": "/tmp/litellm-prometheus"},
                  # uvicorn restarts a worker that misses its health check: on a busy machine LiteLLM's
                  # import alone takes longer than the default, and the workers never come up
                  args=("--num_workers", "2", "--timeout_worker_healthcheck", "300")),
        Candidate("granian", "shipped + granian HTTP server", args=("--run_granian",)),
        # LiteLLM reads PYTHON_GC_THRESHOLD at start (proxy/common_utils/debug_utils.py): fewer collections
        Candidate("gc", "shipped + PYTHON_GC_THRESHOLD=100000,50,100", env={"PYTHON_GC_THRESHOLD": "100000,50,100"}),
        Candidate("optimize", "shipped + PYTHONOPTIMIZE=1 (asserts off)", env={"PYTHONOPTIMIZE": "1"}),
    ]


def run(argv: list[str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return elapsed


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load averages {one:.2f} {five:.2f} {fifteen:.2f} on {os.cpu_count()} cores"


def start_candidate(candidate: Candidate, state: Any, key: str, port: int, folder: Path,
                    runtime: str) -> Callable[[], None]:
    """Start the candidate's LiteLLM on `port` against the sandbox's simulator; returns its stop."""
    import yaml

    from rollout_cli.gateway.config import packaged_config, render_sandbox_config
    from rollout_cli.sandbox.state import CONTAINER_CONFIG, default_image, gateway_settings, litellm_executable

    raw = yaml.safe_load(render_sandbox_config(packaged_config(), state.simulator_api_base))
    for section, values in candidate.settings.items():
        for name, value in values.items():
            if value is None:
                raw.setdefault(section, {}).pop(name, None)
            else:
                raw.setdefault(section, {})[name] = value
    config = folder / f"candidate-{port}.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    env = {**gateway_settings(state.simulator_api_base, state.simulator_key), **candidate.env,
           "LITELLM_MASTER_KEY": key}
    if "PROMETHEUS_MULTIPROC_DIR" in env:  # one folder per gateway: process candidates share /tmp
        env["PROMETHEUS_MULTIPROC_DIR"] += f"-{port}"
    if runtime == "docker":
        from rollout_cli.io.container import ContainerRuntime

        containers = ContainerRuntime()
        name = f"rollout-bench-gateway-{port}"
        containers.run_detached(default_image(), name, environment=env,
                                command=["--config", CONTAINER_CONFIG, "--host", "127.0.0.1", "--port", str(port),
                                         *candidate.args],
                                volumes={str(config): f"{CONTAINER_CONFIG}:ro"})
        return lambda: containers.remove(name, force=True) and None
    executable = litellm_executable()
    assert executable is not None
    log = (folder / f"candidate-{port}.log").open("wb")
    proc = subprocess.Popen([executable, "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
                             *candidate.args], env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)

    def stop() -> None:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=20)
        log.close()

    return stop


def scrape(gateway: Any) -> dict[str, Any] | None:
    from rollout_cli.errors import RolloutError
    from rollout_cli.rollout import metrics

    try:
        return metrics.summarize(gateway.metrics())
    except RolloutError:
        return None


def settled(gateway: Any, expected: int, wait_s: float = 30.0) -> dict[str, Any] | None:
    """A scrape once the gateway has counted at least `expected` requests and the count has stood still
    for a second (LiteLLM counts a request just after answering it, later still on a busy machine);
    the last scrape after `wait_s`."""
    deadline = time.monotonic() + wait_s
    last: dict[str, Any] | None = None
    while True:
        found = scrape(gateway)
        if found is None:
            return None
        count = found["requests"] + found["check_requests"]
        still = last is not None and last["requests"] + last["check_requests"] == count
        if (count >= expected and still) or time.monotonic() > deadline:
            return found
        last = found
        time.sleep(1.0)


def measure_all(gateways: list[tuple[Candidate, str]], key: str, state: Any, concurrencies: list[int],
                pairs: int, warmup: int) -> list[tuple[Candidate, dict[str, Any]]]:
    """Every candidate gateway measured in rotation, a block of pairs each in turn, so that the machine's
    load (shared with others) falls on all of them alike instead of on whichever ran during a busy minute."""
    from rollout_cli.checks.latency import PairedLatency, measure_gateway
    from rollout_cli.gateway.api import GatewayClient
    from rollout_cli.rollout import gates, metrics

    clients = [(GatewayClient(url, key, timeout=60),
                GatewayClient(state.simulator_api_base.removesuffix("/v1"), state.simulator_key, timeout=60))
               for _, url in gateways]
    found: list[dict[str, Any]] = [{"runs": []} for _ in gateways]
    try:
        befores = []
        for gateway, _ in clients:
            for _ in range(3):  # LiteLLM mounts /metrics/ with its first request's logging
                gateway.complete("glm-4.5-air", "ping")
        for gateway, _ in clients:
            befores.append(settled(gateway, 3))
        sent = [0] * len(gateways)
        for c in concurrencies:
            block = max(10, 2 * c)
            merged = [PairedLatency(c, warmup=warmup) for _ in gateways]
            rounds = [warmup] + [block] * (pairs // block) + ([pairs % block] if pairs % block else [])
            for number, size in enumerate(rounds):
                order = list(range(len(gateways)))
                order = order[number % len(order):] + order[:number % len(order)]  # who goes first rotates
                for i in order:
                    gateway, direct = clients[i]
                    seen = measure_gateway(gateway, direct, "glm-4.5-air", "z-ai/glm-4.5-air:free",
                                           pairs=size, concurrency=c, warmup=0) if size else None
                    if seen is None:
                        continue
                    sent[i] += seen.pairs + seen.failed
                    if number == 0:
                        continue  # the warm-up round: sent, not counted
                    merged[i].direct_ms += seen.direct_ms
                    merged[i].gateway_ms += seen.gateway_ms
                    merged[i].failed += seen.failed
            for i, seen in enumerate(merged):
                found[i]["runs"].append(seen)
            print(f"  concurrency {c} measured ({load()})", flush=True)
        for i, (gateway, _) in enumerate(clients):
            before = befores[i]
            after = None if before is None else \
                settled(gateway, int(before["requests"] + before["check_requests"]) + sent[i])
            out = found[i]
            if before is None or after is None:
                out.update(metrics_whole="no /metrics/", whole=False, gate_p95_ms=None)
                continue
            window = metrics.delta(after, before)
            # metrics.delta leaves check_requests cumulative (the gates never subtract it): both counts, by hand
            counted = after["requests"] + after["check_requests"] - before["requests"] - before["check_requests"]
            out["metrics_whole"] = f"{counted:g}/{sent[i]}"
            out["whole"] = counted == sent[i]
            out["gate_p95_ms"] = gates.added_latency(window)[0]
    finally:
        for gateway, direct in clients:
            gateway.close()
            direct.close()
    return [(candidate, out) for (candidate, _), out in zip(gateways, found, strict=True)]


def rows(candidate: Candidate, found: dict[str, Any]) -> list[str]:
    gate = found["gate_p95_ms"]
    out = []
    for seen in found["runs"]:
        s = seen.summary()
        a = s["added_ms"]
        out.append(f"| {candidate.label} | {seen.concurrency} | {seen.pairs} | {seen.failed} | {a['p50']:.1f} ms | "
                   f"{a['p95']:.1f} ms | {a['p99']:.1f} ms | {s['direct_ms']['p50']:.1f} ms | "
                   f"{'yes' if found['whole'] else 'NO'} ({found['metrics_whole']}) | "
                   f"{'-' if gate is None else f'{gate:.1f} ms'} |")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runtime", default="docker", choices=("docker", "process"))
    parser.add_argument("--pairs", type=int, default=200, help="counted pairs per concurrency level")
    parser.add_argument("--warmup", type=int, default=20, help="pairs sent first and not counted")
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--configs", default="all", help="comma-separated candidate names, or all")
    parser.add_argument("--up-runs", type=int, default=3)
    parser.add_argument("--status-runs", type=int, default=15)
    args = parser.parse_args()
    # A SIGTERM must still run the finally blocks below: they stop the sandbox and the candidate gateways.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    chosen = [c for c in candidates()
              if args.configs == "all" or c.name in args.configs.split(",")]

    from rollout_cli.errors import RolloutError
    from rollout_cli.gateway.control import wait_until_healthy
    from rollout_cli.io.net import free_port
    from rollout_cli.sandbox.state import load_state, sandbox_master_key

    print(f"before: {load()}", flush=True)
    results: list[tuple[Candidate, dict[str, Any]]] = []
    stops: list[Callable[[], None]] = []
    with tempfile.TemporaryDirectory(prefix="rollout-bench-") as tmp:
        root = Path(tmp) / "sb"
        up = [ROLLOUT, "sandbox", "up", str(root), "--runtime", args.runtime,
              "--gateway-port", "0", "--simulator-port", "0", "--timeout", "120", "--json"]
        up_times: list[float] = []
        status_times: list[float] = []
        try:
            for index in range(args.up_runs):
                up_times.append(run(up))
                if index < args.up_runs - 1:
                    run([ROLLOUT, "sandbox", "down", str(root)])
            if not up_times:
                run(up)
            status_times = [run([ROLLOUT, "-w", str(root), "gateway", "status", "--json"])
                            for _ in range(args.status_runs)]
            state = load_state(root)
            assert state is not None
            key = sandbox_master_key(root).require()
            gateways: list[tuple[Candidate, str]] = []
            try:
                for candidate in chosen:  # all started, then all waited for: they start at the same time
                    if candidate.name == "shipped":
                        gateways.append((candidate, state.gateway_url))
                        continue
                    port = free_port()
                    stops.append(start_candidate(candidate, state, key, port, Path(tmp), args.runtime))
                    gateways.append((candidate, f"http://127.0.0.1:{port}"))
                for candidate, url in list(gateways):
                    try:
                        wait_until_healthy(url, None, 300)
                    except RolloutError as exc:  # one candidate that cannot start must not cost the others
                        print(f"  {candidate.label}: not measured: {exc}", flush=True)
                        gateways.remove((candidate, url))
                print(f"  {len(gateways)} gateways up ({load()})", flush=True)
                results = measure_all(gateways, key, state, concurrencies, args.pairs, args.warmup)
            finally:
                for stop in stops:
                    stop()
        finally:
            subprocess.run([ROLLOUT, "sandbox", "down", str(root)], capture_output=True)

    goals: list[bool] = []
    if up_times:
        met = statistics.median(up_times) <= UP_GOAL_S
        goals.append(met)
        print(f"rollout sandbox up ({args.runtime} runtime, to a healthy gateway): "
              + ", ".join(f"{t:.2f} s" for t in up_times)
              + f"; median {statistics.median(up_times):.2f} s; goal <= {UP_GOAL_S:g} s: {'met' if met else 'MISSED'}")
    if status_times:
        print(f"rollout gateway status (whole process): median {statistics.median(status_times):.3f} s over "
              f"{len(status_times)} runs (min {min(status_times):.3f}, max {max(status_times):.3f}); "
              f"goal <= {STATUS_GOAL_S:g} s")
    print(f"\nadded latency, client-side: {args.pairs} interleaved keep-alive pairs per row after {args.warmup} "
          f"warm-up pairs, same completion both ways ({args.runtime} runtime)")
    print("| configuration | c | pairs | failed | added p50 | added p95 | added p99 | direct p50 | "
          "metrics whole | gate sees p95 |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for candidate, found in results:
        for line in rows(candidate, found):
            print(line)
    shipped = next((found for candidate, found in results if candidate.name == "shipped"), None)
    if shipped is not None:
        first = next((seen for seen in shipped["runs"] if seen.concurrency == 1), None)
        if first is not None:
            p95 = first.added(95)
            met = p95 is not None and p95 <= ADDED_P95_GOAL_MS and shipped["whole"]
            goals.append(met)
            print(f"\nshipped configuration, concurrency 1: added p95 {p95:.1f} ms; goal <= {ADDED_P95_GOAL_MS:g} ms "
                  f"with whole metrics: {'met' if met else 'MISSED'}")
    print(f"after: {load()}")
    return 0 if all(goals) else 1


if __name__ == "__main__":
    raise SystemExit(main())
