"""The staged rollout: stage plan, gates and verdicts, advance, report, watch, status.

May import playbook, checks, gateway, core and io; never typer, rich or the sandbox.
"""
