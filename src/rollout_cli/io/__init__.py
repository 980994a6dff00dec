"""Adapters to the outside world: files (atomic, locked), env and flags files, git, Docker, processes.

Imports nothing of rollout_cli but its errors.
"""
