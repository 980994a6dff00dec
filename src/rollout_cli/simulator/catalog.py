"""The models the simulated OpenRouter knows, and the gateway aliases of the free ones.

The free models and their fallback order are the project's contract with the
gateway config; other modules import `FREE_MODELS` instead of repeating it.
Paid models exist so that the cost guard has something real to refuse; free
models outside the chain exist so that `rollout models` can propose replacements.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rollout_cli.errors import InputError

OPENROUTER_PREFIX = "openrouter/"

# (gateway alias, OpenRouter model id), in fallback order: the first is primary.
FREE_MODELS: list[tuple[str, str]] = [
    ("glm-4.5-air", "z-ai/glm-4.5-air:free"),
    ("deepseek-chat-v3.1", "deepseek/deepseek-chat-v3.1:free"),
    ("minimax-m2", "minimax/minimax-m2:free"),
    ("kimi-k2", "moonshotai/kimi-k2:free"),
    ("qwen3-coder", "qwen/qwen3-coder:free"),
]

GATEWAY_ALIASES: dict[str, str] = dict(FREE_MODELS)

# OpenRouter's `supported_parameters` vocabulary; `stream` is not in it (every model streams).
_SAMPLING = ("max_tokens", "temperature", "top_p", "stop", "seed", "frequency_penalty", "presence_penalty")
TOOLS = ("tools", "tool_choice")
JSON_OUTPUT = ("response_format", "structured_outputs")


@dataclass(frozen=True)
class CatalogModel:
    """One OpenRouter model; prices are USD per token as decimal strings, as OpenRouter sends them."""

    id: str
    name: str
    provider: str
    context_length: int
    prompt_price: str = "0"
    completion_price: str = "0"
    supported_parameters: tuple[str, ...] = field(default=_SAMPLING)

    @property
    def is_free(self) -> bool:
        return float(self.prompt_price) == 0 and float(self.completion_price) == 0

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        """USD cost of one request, the figure OpenRouter reports in `usage.cost`."""
        return prompt_tokens * float(self.prompt_price) + completion_tokens * float(self.completion_price)

    def to_openrouter(self, *, price: str | None = None, no_tools: bool = False) -> dict[str, Any]:
        """The entry `GET /api/v1/models` returns, in OpenRouter's shape.

        `price` (USD per token) and `no_tools` are faults: the free period ended,
        or the provider that served tool calls left.
        """
        prompt, completion = (price, price) if price is not None else (self.prompt_price, self.completion_price)
        supported = [p for p in self.supported_parameters if not (no_tools and p in TOOLS)]
        return {
            "id": self.id,
            "canonical_slug": self.id.removesuffix(":free"),
            "name": self.name,
            "created": 1_750_000_000,
            "description": f"{self.name} (simulated by rollout; not the real OpenRouter).",
            "context_length": self.context_length,
            "architecture": {
                "modality": "text->text",
                "input_modalities": ["text"],
                "output_modalities": ["text"],
                "tokenizer": "Other",
                "instruct_type": None,
            },
            "pricing": {
                "prompt": prompt,
                "completion": completion,
                "request": "0",
                "image": "0",
                "web_search": "0",
                "internal_reasoning": "0",
            },
            "top_provider": {
                "context_length": self.context_length,
                "max_completion_tokens": None,
                "is_moderated": False,
            },
            "per_request_limits": None,
            "supported_parameters": supported,
        }


def _free(model_id: str, name: str, provider: str, context: int, *extra: tuple[str, ...]) -> CatalogModel:
    params = _SAMPLING + tuple(p for group in extra for p in group)
    return CatalogModel(model_id, name, provider, context, supported_parameters=params)


MODELS: tuple[CatalogModel, ...] = (
    _free("z-ai/glm-4.5-air:free", "Z.AI: GLM 4.5 Air (free)", "Z.AI", 131_072, TOOLS, JSON_OUTPUT),
    _free("deepseek/deepseek-chat-v3.1:free", "DeepSeek: DeepSeek V3.1 (free)", "DeepInfra", 163_840, TOOLS,
          ("response_format",)),
    _free("minimax/minimax-m2:free", "MiniMax: MiniMax M2 (free)", "MiniMax", 204_800, TOOLS),
    _free("moonshotai/kimi-k2:free", "MoonshotAI: Kimi K2 (free)", "Chutes", 32_768, TOOLS, ("response_format",)),
    _free("qwen/qwen3-coder:free", "Qwen: Qwen3 Coder (free)", "Chutes", 262_144, TOOLS),
    # Free models outside the chain: the pool `rollout models` proposes replacements from.
    _free("meta-llama/llama-3.3-70b-instruct:free", "Meta: Llama 3.3 70B Instruct (free)", "Together", 131_072,
          TOOLS, ("response_format",)),
    _free("openai/gpt-oss-20b:free", "OpenAI: gpt-oss-20b (free)", "Chutes", 131_072, TOOLS, JSON_OUTPUT),
    _free("mistralai/mistral-small-3.2-24b-instruct:free", "Mistral: Mistral Small 3.2 24B (free)", "Chutes",
          96_000, TOOLS, JSON_OUTPUT),
    _free("google/gemma-3-27b-it:free", "Google: Gemma 3 27B (free)", "Chutes", 96_000, ("response_format",)),
    CatalogModel("openai/gpt-4o-mini", "OpenAI: GPT-4o-mini", "OpenAI", 128_000, "0.00000015", "0.0000006",
                 _SAMPLING + TOOLS + JSON_OUTPUT),
    CatalogModel(
        "anthropic/claude-3.5-haiku", "Anthropic: Claude 3.5 Haiku", "Anthropic", 200_000, "0.0000008", "0.000004",
        _SAMPLING + TOOLS,
    ),
)

_BY_ID: dict[str, CatalogModel] = {model.id: model for model in MODELS}


def find_model(name: str, *, aliases: bool = True) -> CatalogModel | None:
    """The catalog model a name means, or None.

    Accepts an OpenRouter id with or without LiteLLM's `openrouter/` prefix and,
    when `aliases` is true, a gateway alias. The chat endpoint passes
    `aliases=False`, because real OpenRouter does not know our aliases either.
    """
    model_id = name.removeprefix(OPENROUTER_PREFIX)
    if aliases:
        model_id = GATEWAY_ALIASES.get(model_id, model_id)
    return _BY_ID.get(model_id)


def known_names() -> list[str]:
    """Every name `resolve_model` accepts, aliases first, for error messages."""
    return [alias for alias, _ in FREE_MODELS] + [model.id for model in MODELS]


def resolve_model(name: str) -> CatalogModel:
    """Like `find_model`, but an unknown name is an input error naming the known ones."""
    model = find_model(name)
    if model is None:
        raise InputError(f"unknown model {name!r}; known models: {', '.join(known_names())}")
    return model
