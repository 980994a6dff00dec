"""What a step can reach: the workspace, and the outside world opened lazily."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..gitrepo import GitRepo
from ..workspace import Workspace


@dataclass
class StepContext:
    workspace: Workspace
    _docker: Any = field(default=None, repr=False)
    _repo: GitRepo | None = field(default=None, repr=False)

    def containers(self) -> Any:
        """The Docker engine, connected on first use so levels 1-2 never import docker."""
        if self._docker is None:
            from ..container import ContainerRuntime

            self._docker = ContainerRuntime()
        return self._docker

    def repo(self) -> GitRepo:
        if self.workspace.app.repo is None:
            raise InputError("app.repo is not set in rollout.yaml; levels 2 and 4 need the app's git repo")
        if self._repo is None:
            self._repo = GitRepo(self.workspace.app.repo)
        return self._repo

    def container_name(self, override: str | None) -> str:
        name = override or self.workspace.gateway.container
        if not name:
            raise InputError("gateway.container is not set in rollout.yaml; level 3 needs it")
        return name

    def managed_files(self) -> tuple[Path, ...]:
        """Files rollout edits itself; their changes never make the app's tree 'dirty'."""
        files = [self.workspace.app.env_file]
        if self.workspace.app.flags_file is not None:
            files.append(self.workspace.app.flags_file)
        return tuple(files)
