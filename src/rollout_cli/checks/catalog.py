"""The catalog watchdog: is every model of the gateway config still listed, still free, still capable?

The real free tier churns: models are retired (gone from OpenRouter's
`/api/v1/models`), stop being free (priced there), or lose a capability the app
needs (`supported_parameters`). This reads the public catalog (no key, no
quota spent) from each deployment's `api_base`, judges every configured model
against `app.requires`, and ranks up to three free replacements for each
failing one. `rollout models` shows it; `advance` and `report` gate on it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

from rollout_cli.gateway.topology import OPENROUTER_API_BASE, GatewayModel, Topology

OK = "ok"
RETIRED = "retired"
NOT_FREE = "not-free"
UNSUPPORTED = "unsupported"
UNKNOWN = "unknown"  # the catalog could not be read
CATALOG_TIMEOUT_S = 5.0
MAX_REPLACEMENTS = 3
IMPLICIT = frozenset({"stream"})  # every OpenRouter model streams; `supported_parameters` never lists it
PRICE_FIELDS = ("prompt", "completion", "request")


@dataclass
class Replacement:
    id: str
    name: str
    context_length: int | None
    why: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ModelEntry:
    """One configured model, as the catalog describes it."""

    alias: str
    model: str  # the OpenRouter id (no `openrouter/` prefix)
    role: str  # primary | fallback N
    status: str  # ok | retired | not-free | unsupported | unknown
    reason: str
    listed: bool | None = None
    free: bool | None = None
    pricing: dict[str, str] | None = None
    context_length: int | None = None
    supported: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # of app.requires
    replacements: list[Replacement] = field(default_factory=list)

    @property
    def failing(self) -> bool:
        return self.status in (RETIRED, NOT_FREE, UNSUPPORTED)

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "replacements": [r.to_json() for r in self.replacements]}


@dataclass
class CatalogReport:
    requires: list[str]
    models: list[ModelEntry]
    catalogs: list[dict[str, Any]]  # url, reachable, error, models (how many listed)
    primary: str | None = None

    @property
    def failing(self) -> list[ModelEntry]:
        return [m for m in self.models if m.failing]

    @property
    def unknown(self) -> list[ModelEntry]:
        return [m for m in self.models if m.status == UNKNOWN]

    def entry(self, alias: str) -> ModelEntry | None:
        return next((m for m in self.models if m.alias == alias), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "requires": self.requires,
            "primary": self.primary,
            "catalogs": self.catalogs,
            "models": [m.to_json() for m in self.models],
            "failing": [m.alias for m in self.failing],
        }


def catalog_url(model: GatewayModel) -> str:
    return f"{(model.api_base or OPENROUTER_API_BASE).rstrip('/')}/models"


def fetch_entries(url: str, timeout: float = CATALOG_TIMEOUT_S) -> tuple[list[dict[str, Any]] | None, str | None]:
    """OpenRouter's `/models` `data` list, or why it could not be read."""
    import httpx  # lazy: start-up time

    host = urlsplit(url).hostname or ""
    loopback = host in ("localhost", "::1") or host.startswith("127.")
    try:
        # A proxy variable may be what reaches the real OpenRouter; loopback never goes through one.
        response = httpx.get(url, timeout=timeout, trust_env=not loopback)
        response.raise_for_status()
        entries = response.json()["data"]
        if not isinstance(entries, list) or not all(isinstance(e, dict) and "id" in e for e in entries):
            raise TypeError
        return entries, None
    except httpx.HTTPError as exc:
        return None, " ".join(str(exc).split())[:200] or type(exc).__name__
    except (ValueError, KeyError, TypeError):
        return None, "the answer is not OpenRouter's /models JSON"


def is_free(entry: dict[str, Any]) -> bool:
    pricing = entry.get("pricing") or {}
    return all(price_amount(pricing.get(k, "0")) == 0 for k in PRICE_FIELDS)


def check_catalog(
    topology: Topology, requires: tuple[str, ...] | list[str] = (), *, timeout: float = CATALOG_TIMEOUT_S
) -> CatalogReport:
    """Judge every model of the gateway config against the live catalog and `requires`."""
    wanted = [r for r in requires if r not in IMPLICIT]
    tables: dict[str, list[dict[str, Any]] | None] = {}
    catalogs = []
    for model in topology.models:
        url = catalog_url(model)
        if url not in tables and model.provider == "openrouter":
            entries, error = fetch_entries(url, timeout)
            tables[url] = entries
            catalogs.append({"url": url, "reachable": entries is not None, "error": error,
                             "models": len(entries) if entries is not None else None})
    chain = topology.aliases
    primary = topology.primary
    in_chain = {m.upstream_id for m in topology.models}
    out = []
    for model in topology.models:
        role = "primary" if model.alias == primary else f"fallback {chain.index(model.alias)}"
        entries = tables.get(catalog_url(model)) if model.provider == "openrouter" else None
        entry = _judge(model, role, entries, wanted)
        if entry.failing and entries is not None:
            entry.replacements = rank_replacements(entries, wanted, exclude=in_chain)
        out.append(entry)
    return CatalogReport(list(requires), out, catalogs, primary)


def _judge(model: GatewayModel, role: str, entries: list[dict[str, Any]] | None, wanted: list[str]) -> ModelEntry:
    upstream = model.upstream_id
    if model.provider != "openrouter":
        return ModelEntry(model.alias, model.model, role, UNKNOWN, f"{model.model} is not an OpenRouter model")
    if entries is None:
        return ModelEntry(model.alias, upstream, role, UNKNOWN, "OpenRouter's catalog could not be read")
    found = next((e for e in entries if e.get("id") == upstream), None)
    if found is None:
        return ModelEntry(model.alias, upstream, role, RETIRED, f"{upstream} is not in OpenRouter's catalog: retired",
                          listed=False)
    supported = [str(p) for p in found.get("supported_parameters") or []]
    entry = ModelEntry(model.alias, upstream, role, OK, "", listed=True, free=is_free(found),
                       pricing={k: str(v) for k, v in (found.get("pricing") or {}).items()},
                       context_length=found.get("context_length"), supported=supported,
                       missing=[r for r in wanted if r not in supported])
    if not entry.free:
        charged = ", ".join(f"{k} {v}" for k, v in (entry.pricing or {}).items() if k in PRICE_FIELDS and price_amount(v))
        entry.status, entry.reason = NOT_FREE, f"{upstream} is no longer free: OpenRouter prices it at {charged} USD/token"
    elif entry.missing:
        entry.status = UNSUPPORTED
        entry.reason = f"{upstream} lacks {', '.join(entry.missing)} (app.requires)"
    else:
        needs = f", supports {', '.join(wanted)}" if wanted else ""
        entry.reason = f"listed, free{needs}"
    return entry


def rank_replacements(
    entries: list[dict[str, Any]], wanted: list[str], *, exclude: set[str], limit: int = MAX_REPLACEMENTS
) -> list[Replacement]:
    """Free models that meet every requirement, best first: the longest context, then the most parameters.

    A `:free` id and a zero price both, so a replacement never costs money.
    """
    pool = [
        e for e in entries
        if str(e["id"]).endswith(":free") and is_free(e) and e["id"] not in exclude
        and all(r in (e.get("supported_parameters") or []) for r in wanted)
    ]
    pool.sort(key=lambda e: (-(e.get("context_length") or 0), -len(e.get("supported_parameters") or []), e["id"]))
    out = []
    for e in pool[:limit]:
        params = e.get("supported_parameters") or []
        extras = [p for p in ("tools", "response_format", "structured_outputs") if p in params and p not in wanted]
        why = ["free"]
        if wanted:
            why.append(f"supports {', '.join(wanted)}")
        why.append(f"{e.get('context_length') or 0:,}-token context")
        if extras:
            why.append(f"also {', '.join(extras)}")
        out.append(Replacement(str(e["id"]), str(e.get("name") or e["id"]), e.get("context_length"), "; ".join(why)))
    return out


def price_amount(value: Any) -> float:
    """A price string as a number; unreadable is -1, never free."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return -1.0  # unreadable price: never counted as free
