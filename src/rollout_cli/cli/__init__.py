"""The `rollout` command line: options, one module per command, and renderers. Only this layer uses typer and rich."""
