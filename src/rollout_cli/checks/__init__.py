"""Checks: the evidence every rollout decision rests on (health, smoke, cost guard).

Plain data in, plain data out: no typer, no rich, no printing. The advance
gates call these functions directly.
"""
