"""A sample app repo and workspace: what the sandbox writes and what the tests use.

The app calls OpenRouter directly at the `pre-gateway` tag; one later commit
("Route LLM calls through the LiteLLM gateway") moves its router behind the
gateway, guarded by LITELLM_ENABLED and LITELLM_ROLLOUT_PERCENTAGE.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

FLAG_KEY = "litellm-gateway"
INTEGRATION_SUBJECT = "Route LLM calls through the LiteLLM gateway"

ROUTER_BEFORE = """\
// Model router: every LLM call goes straight to OpenRouter.
const OPENROUTER_URL = "https://openrouter.ai/api/v1/chat/completions";

export async function complete(messages: object[]): Promise<Response> {
  return fetch(OPENROUTER_URL, {
    method: "POST",
    headers: { Authorization: `Bearer ${process.env.OPENROUTER_API_KEY}` },
    body: JSON.stringify({ model: "z-ai/glm-4.5-air:free", messages }),
  });
}
"""

ROUTER_AFTER = """\
// Model router: a share of LLM calls goes through the LiteLLM gateway.
import { gatewayComplete } from "./litellm-client";

const OPENROUTER_URL = "https://openrouter.ai/api/v1/chat/completions";

function viaGateway(userId: string): boolean {
  if (process.env.LITELLM_ENABLED !== "true") return false;
  const percent = Number(process.env.LITELLM_ROLLOUT_PERCENTAGE ?? "0");
  return bucket(userId) < percent;
}

function bucket(userId: string): number {
  let h = 0;
  for (const c of userId) h = (h * 31 + c.charCodeAt(0)) >>> 0;
  return h % 100;
}

export async function complete(messages: object[], userId = "anonymous"): Promise<Response> {
  if (viaGateway(userId)) return gatewayComplete("glm-4.5-air", messages);
  return fetch(OPENROUTER_URL, {
    method: "POST",
    headers: { Authorization: `Bearer ${process.env.OPENROUTER_API_KEY}` },
    body: JSON.stringify({ model: "z-ai/glm-4.5-air:free", messages }),
  });
}
"""

CLIENT = """\
// LiteLLM gateway client: fallbacks between the five free models happen in the gateway.
export async function gatewayComplete(model: string, messages: object[]): Promise<Response> {
  return fetch(`${process.env.LITELLM_URL}/v1/chat/completions`, {
    method: "POST",
    headers: { Authorization: `Bearer ${process.env.LITELLM_API_KEY}` },
    body: JSON.stringify({ model, messages }),
  });
}
"""


def env_text(percentage: int, enabled: bool, gateway_url: str = "http://127.0.0.1:4000") -> str:
    return (
        "# Sample app settings (read at start-up and on SIGHUP)\n"
        "NODE_ENV=production\n"
        "export PORT=3000\n"
        'OPENROUTER_BASE_URL="https://openrouter.ai/api/v1"\n'
        "\n"
        "# LiteLLM gateway rollout (managed by `rollout`)\n"
        f"LITELLM_URL={gateway_url}\n"
        f"LITELLM_ENABLED={'true' if enabled else 'false'}\n"
        f"LITELLM_ROLLOUT_PERCENTAGE={percentage}  # share of users through the gateway\n"
    )


def flagd_text(percentage: int) -> str:
    doc = {
        "$schema": "https://flagd.dev/schema/v0/flags.json",
        "flags": {
            "new-checkout": {
                "state": "ENABLED",
                "variants": {"on": True, "off": False},
                "defaultVariant": "on",
            },
            FLAG_KEY: {
                "state": "ENABLED",
                "variants": {"on": True, "off": False},
                "defaultVariant": "off",
                "targeting": {
                    "fractional": [
                        {"var": "targetingKey"},
                        ["on", percentage],
                        ["off", 100 - percentage],
                    ]
                },
            },
        },
    }
    return json.dumps(doc, indent=2) + "\n"


@dataclass(frozen=True)
class SampleApp:
    repo: Path
    env_file: Path
    flags_file: Path
    router: str = "server/model-router.ts"


def git(repo: Path, *args: str) -> str:
    env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Sample Dev",
        "GIT_AUTHOR_EMAIL": "dev@example.com",
        "GIT_COMMITTER_NAME": "Sample Dev",
        "GIT_COMMITTER_EMAIL": "dev@example.com",
    }
    return subprocess.run(
        ["git", *args], cwd=repo, env=env, check=True, capture_output=True, text=True
    ).stdout


def write_sample_app(repo: Path, percentage: int = 0, gateway_url: str = "http://127.0.0.1:4000") -> SampleApp:
    """A real git repo: pre-gateway tag, then the gateway-integration commit."""
    (repo / "server").mkdir(parents=True, exist_ok=True)
    git(repo, "init", "-q", "-b", "main")
    (repo / ".gitignore").write_text(".env\nnode_modules/\n")
    (repo / "README.md").write_text("# sample app\n")
    (repo / "server" / "model-router.ts").write_text(ROUTER_BEFORE)
    (repo / "flags.json").write_text(flagd_text(0))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "Sample app calling OpenRouter directly")
    git(repo, "tag", "pre-gateway")
    (repo / "server" / "model-router.ts").write_text(ROUTER_AFTER)
    (repo / "server" / "litellm-client.ts").write_text(CLIENT)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", INTEGRATION_SUBJECT)
    (repo / ".env").write_text(env_text(percentage, enabled=percentage > 0, gateway_url=gateway_url))
    if percentage:
        (repo / "flags.json").write_text(flagd_text(percentage))
        git(repo, "commit", "-q", "-am", f"Set {FLAG_KEY} to {percentage}%")
    return SampleApp(repo, repo / ".env", repo / "flags.json")


def workspace_yaml(app_rel: str = "../app", gateway_url: str = "http://127.0.0.1:4000",
                   container: str | None = "litellm", extra_gateway: str = "", *,
                   master_key_env: str = "LITELLM_MASTER_KEY", master_key_file: str | None = None,
                   config: str | None = None, runtime: str | None = None, header: str = "",
                   app_extra: str = "", prometheus_url: str | None = None, playbooks: str | None = None) -> str:
    optional = "".join(
        f"  {key}: {value}\n"
        for key, value in (("master_key_file", master_key_file), ("runtime", runtime), ("container", container),
                           ("config", config))
        if value
    )
    # With a Prometheus (the sandbox's), every window gate queries it over the exact soak window.
    metrics = f"metrics: {{source: prometheus, url: {prometheus_url}}}\n" if prometheus_url else ""
    metrics += f"playbooks: {playbooks}\n" if playbooks else ""
    return f"""\
{header}# The simulator enforces no daily quota (unless `rollout sandbox fault --quota-left N`), so the
# sandbox's checks get the whole of a generous one; production: 50 or 1000, and a share (`rollout quota`).
openrouter:
  daily_limit: 100000
  rollout_share: 1.0
app:
  env_file: {app_rel}/.env
  flags_file: {app_rel}/flags.json
  flags_format: flagd
  flag_key: {FLAG_KEY}
  repo: {app_rel}
  router_paths: [server/model-router.ts]
  pre_gateway_ref: pre-gateway
  integration_grep: "LiteLLM gateway"
{app_extra}gateway:
  url: {gateway_url}
  master_key_env: {master_key_env}
{optional}{extra_gateway}{metrics}"""
