"""The `run` step: a workspace's own program, as a playbook runs it and as a command `app.reload` does.

No shell, a timeout (its whole process group is killed), the last line of its
stderr on failure. Its own module so that `steps` (which registers every step
type) and `traffic` (app.reload) both use it without importing each other.

No secret by default: the program gets rollout's environment minus every
variable holding a secret rollout knows of (the master key, the OpenRouter
key, the Prometheus token, notification URLs and signing secrets;
`core.workspace.secret_variables`). An unattended autopilot runs playbooks
nobody watches; a step that needs a secret names it in `env:`.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from rollout_cli.core.workspace import without_secrets
from rollout_cli.errors import CheckFailed, InputError, PlaybookError
from rollout_cli.io.process import run_in_session
from rollout_cli.playbook.context import StepContext
from rollout_cli.playbook.model import Check, Outcome, Step, checked


@dataclass
class Run(Step):
    """Run a program (argv list, no shell) in the workspace folder, with a timeout."""

    type = "run"
    stops_by_default = True
    argv: list[str]
    timeout: float = 60.0
    cwd: str | None = None
    env: list[str] = field(default_factory=list)  # the secret variables this program gets (none by default)

    def validate(self, where: str) -> None:
        if not self.argv:
            raise PlaybookError(f"{where}: field 'argv' must not be empty")
        bad = next((index for index, name in enumerate(self.env, 1) if not _VARIABLE.fullmatch(name)), None)
        if bad is not None:  # not quoted: it may be a key pasted in place of its variable's name
            raise PlaybookError(f"{where}: field 'env' item {bad} is no variable name (letters, digits, _; value not "
                                "shown); list the names of the variables the program needs, never their values")

    def describe(self, ctx: StepContext) -> str:
        return "run " + " ".join(self.argv) + (f" (with {', '.join(self.env)})" if self.env else "")

    def environment(self, ctx: StepContext) -> dict[str, str]:
        """Rollout's environment without its secrets, but those the step names (the master key from its
        key file when the step names the master key's variable and the variable is not set)."""
        workspace = ctx.workspace
        env = without_secrets(workspace, keep=self.env)
        gateway = workspace.gateway
        if gateway.master_key_env in self.env and gateway.master_key_env not in env and gateway.key.value:
            env[gateway.master_key_env] = gateway.key.value
        return env

    def preconditions(self, ctx: StepContext) -> list[Check]:
        def found() -> str:
            if shutil.which(self.argv[0], path=os.environ.get("PATH")) is None and not Path(self.argv[0]).exists():
                raise InputError(f"program {self.argv[0]!r} not found on PATH")
            return f"{self.argv[0]} found"

        return [checked(f"program {self.argv[0]} present", found)]

    def run(self, ctx: StepContext) -> Outcome:
        cwd = ctx.workspace.root / self.cwd if self.cwd else ctx.workspace.root
        if not cwd.is_dir():
            raise InputError(f"folder {cwd} of {self.describe(ctx)} does not exist; fix 'cwd' in the playbook")
        timeout = ctx.time_left(self.timeout)  # never past the level's budget
        if timeout <= 0:
            raise CheckFailed(f"{self.describe(ctx)} not started: the rollback level's time budget ran out")
        try:
            done = run_in_session(self.argv, cwd=cwd, timeout=timeout, env=self.environment(ctx))
        except FileNotFoundError:
            raise InputError(f"program {self.argv[0]!r} not found on PATH") from None
        except OSError as exc:
            raise InputError(f"cannot start {self.argv[0]!r}: {exc.strerror or type(exc).__name__}") from None
        if done.timed_out:
            budget = "" if timeout == self.timeout else ", what was left of the rollback level's time budget"
            raise CheckFailed(
                f"{self.describe(ctx)} timed out after {timeout:.3g} s{budget} (its process group was killed)"
            )
        if done.returncode != 0:
            raise CheckFailed(
                f"{self.describe(ctx)} exited {done.returncode}" + (f": {done.last_line}" if done.last_line else "")
            )
        return Outcome("ok", f"{self.describe(ctx)}: exit 0")


_VARIABLE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
