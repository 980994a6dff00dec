"""Human renderings (rich) of each command's Result, one module per area.

Each module registers its renderers with `@human("command")` on import; the
command module imports its view module before rendering.
"""
