"""A workspace's own program, run as a `run` step or a command `app.reload` runs it.

No shell, a timeout (its whole process group is killed), the last line of its
stderr on failure. Its own module so that `steps` and `traffic` both use it
without importing each other.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from rollout_cli.errors import CheckFailed, InputError
from rollout_cli.io.process import run_in_session


def describe_program(argv: Sequence[str]) -> str:
    return "run " + " ".join(argv)


def run_program(argv: Sequence[str], *, cwd: Path, timeout: float) -> str:
    """Run `argv` in `cwd`; what it did, in words. Raises InputError (cannot start) or CheckFailed."""
    what = describe_program(argv)
    try:
        done = run_in_session(argv, cwd=cwd, timeout=timeout)
    except FileNotFoundError:
        raise InputError(f"program {argv[0]!r} not found on PATH") from None
    except OSError as exc:
        raise InputError(f"cannot start {argv[0]!r}: {exc.strerror or type(exc).__name__}") from None
    if done.timed_out:
        raise CheckFailed(f"{what} timed out after {timeout:g} s (its process group was killed)")
    if done.returncode != 0:
        raise CheckFailed(f"{what} exited {done.returncode}" + (f": {done.last_line}" if done.last_line else ""))
    return f"{what}: exit 0"
