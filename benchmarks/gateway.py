"""The gateway's figures: sandbox start, `rollout gateway status`, and the latency the gateway adds.

1. `rollout sandbox up` to a healthy gateway, as a whole process (docker runtime
   with the image present, unless --runtime process), `UP_RUNS` times, each followed by an untimed down.
2. `rollout gateway status` as a whole process, median of `STATUS_RUNS`.
3. Overhead: `PAIRS` paired non-streaming requests with the same prompt, interleaved
   (direct to the simulator, then through the gateway, then direct, ...), each client on its own
   keep-alive connection, after a warm-up. Reported: p50/p95 of each path and of the per-pair
   difference (gateway minus direct), and LiteLLM's own x-litellm-overhead-duration-ms.

Usage: .venv/bin/python benchmarks/gateway.py [--runtime docker|process] [--pairs N]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))

ROLLOUT = shutil.which("rollout", path=str(Path(sys.executable).parent)) or "rollout"
PROMPT = "Reply with one word to this ping"


def run(argv: list[str]) -> float:
    started = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return elapsed


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def describe(name: str, values: list[float]) -> str:
    return f"{name:<34} p50 {pct(values, 50):7.2f} ms   p95 {pct(values, 95):7.2f} ms   (n={len(values)})"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runtime", default="docker", choices=("docker", "process"))
    parser.add_argument("--pairs", type=int, default=300)
    parser.add_argument("--up-runs", type=int, default=3)
    parser.add_argument("--status-runs", type=int, default=15)
    args = parser.parse_args()

    import httpx

    from rollout_cli.sandbox.state import load_state
    from rollout_cli.sandbox.world import SandboxInfo

    with tempfile.TemporaryDirectory(prefix="rollout-bench-") as tmp:
        root = Path(tmp) / "sb"
        up = [ROLLOUT, "sandbox", "up", str(root), "--runtime", args.runtime,
              "--gateway-port", "0", "--simulator-port", "0", "--timeout", "120", "--json"]
        up_times = []
        try:
            for index in range(args.up_runs):
                up_times.append(run(up))
                if index < args.up_runs - 1:
                    run([ROLLOUT, "sandbox", "down", str(root)])
            status_times = [run([ROLLOUT, "-w", str(root), "gateway", "status", "--json"])
                            for _ in range(args.status_runs)]

            state = load_state(root)
            assert state is not None
            key = SandboxInfo(root, state.runtime, state.gateway_url, state.simulator_url, state.gateway_port,
                              state.simulator_port).master_key
            direct = httpx.Client(base_url=state.simulator_api_base, trust_env=False, timeout=30,
                                  headers={"Authorization": f"Bearer {state.simulator_key}"})
            gateway = httpx.Client(base_url=state.gateway_url, trust_env=False, timeout=30,
                                   headers={"Authorization": f"Bearer {key}"})
            direct_body = {"model": "z-ai/glm-4.5-air:free", "usage": {"include": True},
                           "messages": [{"role": "user", "content": PROMPT}]}
            gateway_body = {"model": "glm-4.5-air", "messages": [{"role": "user", "content": PROMPT}]}

            def timed_post(client: httpx.Client, path: str, body: dict) -> tuple[float, httpx.Response]:
                started = time.perf_counter()
                response = client.post(path, json=body)
                elapsed = (time.perf_counter() - started) * 1000
                if response.status_code != 200 or response.json()["choices"][0]["message"]["content"] != "pong":
                    raise SystemExit(f"{path}: HTTP {response.status_code} {response.text[:200]}")
                return elapsed, response

            for _ in range(30):  # warm-up: connections, LiteLLM's caches, the router's first-call paths
                timed_post(direct, "/chat/completions", direct_body)
                timed_post(gateway, "/v1/chat/completions", gateway_body)
            direct_ms, gateway_ms, diff_ms, litellm_overhead = [], [], [], []
            for _ in range(args.pairs):
                d, _ = timed_post(direct, "/chat/completions", direct_body)
                g, response = timed_post(gateway, "/v1/chat/completions", gateway_body)
                direct_ms.append(d)
                gateway_ms.append(g)
                diff_ms.append(g - d)
                header = response.headers.get("x-litellm-overhead-duration-ms")
                if header:
                    litellm_overhead.append(float(header))
            direct.close()
            gateway.close()
        finally:
            subprocess.run([ROLLOUT, "sandbox", "down", str(root)], capture_output=True)

    print(f"rollout sandbox up ({args.runtime} runtime, to a healthy gateway): "
          + ", ".join(f"{t:.2f} s" for t in up_times)
          + f"; median {statistics.median(up_times):.2f} s; goal <= 12 s")
    print(f"rollout gateway status (whole process): median {statistics.median(status_times):.3f} s over "
          f"{len(status_times)} runs (min {min(status_times):.3f}, max {max(status_times):.3f}); goal <= 0.5 s")
    print(f"latency over {args.pairs} interleaved pairs, non-streaming, same prompt ({args.runtime} runtime):")
    print("  " + describe("direct to the simulator", direct_ms))
    print("  " + describe("through the gateway", gateway_ms))
    print("  " + describe("added by the gateway (per pair)", diff_ms))
    if litellm_overhead:
        print("  " + describe("x-litellm-overhead-duration-ms", litellm_overhead))
    verdict = "within" if pct(diff_ms, 95) <= 10 else "OVER"
    print(f"  the rollout gate allows 10 ms added: p95 {pct(diff_ms, 95):.2f} ms is {verdict} it")


if __name__ == "__main__":
    main()
