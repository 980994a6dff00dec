from __future__ import annotations

import typer

from rollout_cli.cli.context import load
from rollout_cli.cli.options import json_option
from rollout_cli.cli.render import render

HELP = (
    "The OpenRouter free quota rollout's own checks spent today (the ledger in .rollout/quota/), against "
    "openrouter.rollout_share of openrouter.daily_limit, the 20/min limit, and when it resets (00:00 UTC). "
    "Exit 0 requests left, 3 rollout's share spent or the account exhausted."
)


def register(app: typer.Typer) -> None:
    @app.command("quota", help=HELP)
    def quota(ctx: typer.Context, json_output: bool = json_option()) -> None:
        from rollout_cli.core.quota import quota_status  # lazy: start-up time

        ws = load(ctx)
        render(quota_status(ws.state_dir, ws.openrouter), json_output)
