"""Playbooks: typed steps loaded from YAML, and the engine that runs them."""

from .model import Playbook, Step, parse_duration
from .steps import STEP_TYPES

__all__ = ["Playbook", "Step", "STEP_TYPES", "parse_duration"]
