"""What a step can reach: the workspace, and the outside world opened lazily."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rollout_cli.core.workspace import Workspace
from rollout_cli.errors import InputError
from rollout_cli.io.gitrepo import GitRepo


@dataclass
class StepContext:
    workspace: Workspace
    _docker: Any = field(default=None, repr=False)
    _repo: GitRepo | None = field(default=None, repr=False)
    started: float = field(default_factory=time.monotonic)  # the command's start: steps report times from it
    ends: float | None = None  # monotonic: the running level's budget runs out (set by the engine)

    def time_left(self, wanted: float) -> float:
        """`wanted` seconds, or fewer when the level's budget ends sooner: no step outlives its budget."""
        return wanted if self.ends is None else max(0.0, min(wanted, self.ends - time.monotonic()))

    def gateway(self, name: str | None = None) -> Any:
        """The gateway's runtime: its container (by name or compose service), or a
        process-runtime sandbox's litellm process. Opened on first use, so levels
        1-2 never import docker."""
        # lazy: start-up time (levels 1-2 never reach the gateway's runtime)
        from rollout_cli.gateway.runtime import DockerGateway, runtime_for

        if name is not None:
            return DockerGateway(name)
        if self._docker is None:
            self._docker = runtime_for(self.workspace)
        return self._docker

    def repo(self) -> GitRepo:
        if self.workspace.app.repo is None:
            raise InputError("app.repo is not set in rollout.yaml; levels 2 and 4 need the app's git repo")
        if self._repo is None:
            self._repo = GitRepo(self.workspace.app.repo)
        self._repo.ends = self.ends  # the running level's budget bounds every git call
        return self._repo


    def managed_files(self) -> tuple[Path, ...]:
        """Files rollout edits itself; their changes never make the app's tree 'dirty'."""
        files = [self.workspace.app.env_file]
        if self.workspace.app.flags_file is not None:
            files.append(self.workspace.app.flags_file)
        return tuple(files)
