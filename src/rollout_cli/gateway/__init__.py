"""The gateway: its HTTP API, its LiteLLM config, where it runs (container or local process).

May import core and io; knows nothing of the sandbox or the simulator.
"""
