"""rollout: move an application's LLM traffic behind a LiteLLM gateway in stages."""

__version__ = "0.1.0"
