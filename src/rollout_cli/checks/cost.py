"""The cost guard: every model the gateway config names must be free, or the smoke fails.

Free means both: an OpenRouter `:free` model id (a rule anyone can read in the
config), and a zero price in OpenRouter's own `/models` catalog where that can
be reached (the price is what is actually billed; an id can lie). The catalog
comes from each deployment's `api_base` (`os.environ/OPENROUTER_API_BASE`
resolved like LiteLLM does), else https://openrouter.ai/api/v1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from rollout_cli.checks.catalog import fetch_entries
from rollout_cli.checks.catalog import price_amount as _amount
from rollout_cli.gateway.topology import OPENROUTER_API_BASE, GatewayModel, Topology

FREE = "free"
PAID = "paid"
CATALOG_TIMEOUT_S = 5.0
_PRICE_FIELDS = ("prompt", "completion", "request")


@dataclass
class ModelCost:
    alias: str
    model: str
    status: str  # free | paid
    free_id: bool
    price: dict[str, str] | None = None  # from the catalog; None when it was not reached
    verified: bool = False  # the catalog confirmed a zero price
    reason: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class CostReport:
    models: list[ModelCost]
    catalogs: list[dict[str, Any]] = field(default_factory=list)  # url, reachable, error

    @property
    def ok(self) -> bool:
        return all(m.status == FREE for m in self.models)

    @property
    def paid(self) -> list[str]:
        return [m.alias for m in self.models if m.status != FREE]

    @property
    def requests(self) -> int:
        return len(self.catalogs)

    def to_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "paid": self.paid,
            "models": [m.to_json() for m in self.models],
            "catalogs": self.catalogs,
        }


def catalog_urls(topology: Topology) -> list[str]:
    """The `/models` URLs the guard will read: one per distinct OpenRouter api_base."""
    bases = [_base(m).rstrip("/") for m in topology.models if m.provider == "openrouter"]
    return [f"{base}/models" for base in dict.fromkeys(bases)]


def check_cost(topology: Topology, *, fetch: bool = True, timeout: float = CATALOG_TIMEOUT_S) -> CostReport:
    """Judge every deployment of the gateway config; `fetch=False` checks the ids only."""
    catalogs: list[dict[str, Any]] = []
    prices: dict[str, dict[str, dict[str, str]] | None] = {}
    if fetch:
        for url in catalog_urls(topology):
            table, error = _fetch_catalog(url, timeout)
            prices[url] = table
            catalogs.append({"url": url, "reachable": table is not None, "error": error})
    models = [_judge(m, prices.get(f"{_base(m).rstrip('/')}/models")) for m in topology.models]
    return CostReport(models, catalogs)


def _judge(model: GatewayModel, catalog: dict[str, dict[str, str]] | None) -> ModelCost:
    free_id = model.provider == "openrouter" and model.upstream_id.endswith(":free")
    cost = ModelCost(model.alias, model.model, FREE, free_id)
    if not free_id:
        cost.status = PAID
        cost.reason = (
            f"{model.model} is not an OpenRouter :free model"
            if model.provider == "openrouter"
            else f"{model.model} is not an OpenRouter model, so it is not free"
        )
    if catalog is None:
        if cost.status == FREE:
            cost.reason = "free by its :free id; the OpenRouter catalog was not reached to confirm the price"
        return cost
    price = catalog.get(model.upstream_id)
    if price is None:
        if cost.status == FREE:
            # Retired: no endpoint serves it, so nothing can be billed for it (the catalog gate judges it).
            cost.reason = f"{model.upstream_id} is not in OpenRouter's /models (retired): it cannot be billed"
        return cost
    cost.price = price
    charged = {k: v for k, v in price.items() if k in _PRICE_FIELDS and _amount(v) != 0}
    if charged:
        cost.status = PAID
        shown = ", ".join(f"{k} {v}" for k, v in charged.items())
        cost.reason = (cost.reason + "; " if cost.reason else "") + f"OpenRouter prices it at {shown} USD/token"
    elif cost.status == FREE:
        cost.verified = True
        cost.reason = "free: :free id and zero price in OpenRouter's /models"
    return cost


def _base(model: GatewayModel) -> str:
    return model.api_base or OPENROUTER_API_BASE


def _fetch_catalog(url: str, timeout: float) -> tuple[dict[str, dict[str, str]] | None, str | None]:
    entries, error = fetch_entries(url, timeout)
    if entries is None:
        return None, error
    return {str(e["id"]): {k: str(v) for k, v in (e.get("pricing") or {}).items()} for e in entries}, None
