"""Human renderings (rich) of each command's Result, one module per area.

Each module registers its renderers with `@human("command")`; render() imports
them all before it renders a human result.
"""
