"""Evidence gathered once per command or decision, and shared by every check that needs it.

One `advance` evaluation runs health, smoke, the cost guard and a metrics
scrape: they read the gateway config, the master key and the gateway's own
preflight (liveliness, readiness, key) once, through one HTTP client, instead
of each rebuilding them; with `share_answers` they also share completions, so
a question health and smoke both ask a model is sent once.
"""

from __future__ import annotations

import threading
from types import TracebackType
from typing import Any

from rollout_cli.checks.budget import SharedAnswers
from rollout_cli.checks.preflight import GatewayState, check_gateway
from rollout_cli.core.quota import QuotaLedger
from rollout_cli.core.workspace import Workspace
from rollout_cli.errors import RolloutError
from rollout_cli.gateway.api import Completion, GatewayClient
from rollout_cli.gateway.topology import Topology, load_topology

DEFAULT_TIMEOUT_S = 10.0


class Evidence:
    """The workspace's gateway config (parsed), one client with the key (read once) and one preflight."""

    def __init__(
        self, ws: Workspace, *, timeout: float = DEFAULT_TIMEOUT_S, topology: Topology | None = None,
        share_answers: bool = False,
    ) -> None:
        self.ws = ws
        # One decision's checks ask each model the same question once (health's ping is the smoke suite's first case).
        self.answers = SharedAnswers() if share_answers else None
        self.topology = topology if topology is not None else load_topology(ws.gateway.config)
        self.ledger = QuotaLedger(ws.state_dir)
        self.ledger_error: str | None = None
        self.client = GatewayClient(ws.gateway.url, ws.gateway.key.value, timeout, observer=self._count)
        self._gateway: GatewayState | None = None
        self._lock = threading.Lock()

    def gateway(self) -> GatewayState:
        """The preflight (no upstream request), run once however many checks ask, even concurrently."""
        with self._lock:
            if self._gateway is None:
                self._gateway = check_gateway(self.client, self.ws.gateway)
            return self._gateway

    def _count(self, body: dict[str, Any], seen: Completion) -> None:
        """Every completion the gateway answered goes into the quota ledger (best effort: a check never fails on it)."""
        if seen.status is None:
            return
        try:
            self.ledger.record(str(body.get("model")), seen.status, ratelimit=seen.ratelimit)
        except RolloutError as exc:  # append_line names the file and the cause
            self.ledger_error = str(exc)

    def close(self) -> None:
        self.client.close()
        try:
            self.ledger.release()  # what the checks reserved and did not send goes back to the share
        except RolloutError as exc:
            self.ledger_error = str(exc)

    def __enter__(self) -> Evidence:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()
