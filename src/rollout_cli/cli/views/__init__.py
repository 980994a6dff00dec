"""Human renderings (rich) of each command's Result, one module per area.

Each module registers its renderers with `@human(PayloadType)`; render() imports
them all before it renders a human result.
"""
