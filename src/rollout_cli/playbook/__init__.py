"""Playbooks: typed steps loaded from YAML (model, steps), and the engine that runs them."""
