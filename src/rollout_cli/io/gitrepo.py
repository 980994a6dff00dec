"""The app's git repository, through the real `git` binary (no shell, no editor)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from rollout_cli.errors import CheckFailed, GitError, InputError

_ENV = {"GIT_EDITOR": "true", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}


@dataclass(frozen=True)
class Commit:
    sha: str
    subject: str

    @property
    def short(self) -> str:
        return self.sha[:10]


class GitRepo:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._identity_args: list[str] | None = None

    def git(self, *args: str, check: bool = True, timeout: float = 60) -> str:
        proc = self._run(*args, timeout=timeout)
        if check and proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).strip().splitlines()
            reason = detail[-1] if detail else f"exit {proc.returncode}"
            if "not a git repository" in reason:
                raise InputError(f"{self.path} is not a git repository; check app.repo in rollout.yaml")
            raise GitError(f"git {' '.join(args[:2])} failed in {self.path}: {reason}")
        return proc.stdout

    def _run(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        if shutil.which("git") is None:
            raise GitError("git is not installed; install it (apt-get install git)")
        if not self.path.is_dir():
            raise InputError(f"app repo {self.path} does not exist; check app.repo in rollout.yaml")
        try:
            proc = subprocess.run(
                ["git", *self._identity(), *args],
                cwd=self.path,
                capture_output=True,
                text=True,
                timeout=timeout,
                env={**os.environ, **_ENV},
            )
        except subprocess.TimeoutExpired as exc:
            raise GitError(f"git {args[0]} in {self.path} timed out after {timeout:.0f} s") from exc
        return proc

    def _identity(self) -> list[str]:
        # A rollback must be able to commit on a machine where nobody set an identity.
        if os.environ.get("GIT_AUTHOR_NAME") or os.environ.get("GIT_COMMITTER_NAME"):
            return []
        if self._identity_args is None:
            probe = subprocess.run(
                ["git", "config", "user.name"], cwd=self.path, capture_output=True, text=True
            )
            named = probe.returncode == 0 and probe.stdout.strip()
            self._identity_args = (
                [] if named else ["-c", "user.name=rollout", "-c", "user.email=rollout@localhost"]
            )
        return self._identity_args

    def resolve(self, ref: str) -> str:
        """The commit `ref` names, or InputError saying it does not exist."""
        out = self.git("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}", check=False)
        if not out.strip():
            raise InputError(
                f"git ref '{ref}' does not exist in {self.path}; "
                "check app.pre_gateway_ref / app.integration_commits (git tag, git log)"
            )
        return out.strip()

    def head(self) -> str:
        return self.git("rev-parse", "HEAD").strip()

    def subject(self, sha: str) -> str:
        return self.git("log", "-1", "--format=%s", sha).strip()

    def dirty_paths(self, ignore: tuple[Path, ...] = ()) -> list[str]:
        """Tracked files with uncommitted changes, less the ones rollout itself manages."""
        ignored = {p.resolve() for p in ignore}
        out = self.git("status", "--porcelain", "--untracked-files=no")
        dirty = []
        for line in out.splitlines():
            name = line[3:].split(" -> ")[-1].strip('"')
            if (self.path / name).resolve() not in ignored:
                dirty.append(name)
        return dirty

    def require_clean(self, ignore: tuple[Path, ...] = ()) -> None:
        dirty = self.dirty_paths(ignore)
        if dirty:
            shown = ", ".join(dirty[:3]) + (" ..." if len(dirty) > 3 else "")
            raise CheckFailed(
                f"git tree {self.path} has uncommitted changes ({shown}); "
                "commit or stash them, then run the rollback again"
            )

    def differs_from(self, ref: str, paths: tuple[str, ...]) -> list[str]:
        """Which of `paths` differ between `ref` and the working tree."""
        out = self.git("diff", "--name-only", ref, "--", *paths)
        return [line for line in out.splitlines() if line]

    def diff(self, ref: str, paths: tuple[str, ...]) -> str:
        return self.git("diff", "-R", ref, "--", *paths)

    def restore(self, ref: str, paths: tuple[str, ...], message: str) -> str | None:
        """Bring `paths` back to `ref` and commit just those; None when nothing differed."""
        changed = self.differs_from(ref, paths)
        if not changed:
            return None
        self.git("checkout", ref, "--", *paths)
        self.git("commit", "--no-verify", "-m", message, "--", *paths)
        return self.head()

    def commits_matching(self, pattern: str) -> list[Commit]:
        """Commits whose message matches, newest first (reverts excluded)."""
        out = self.git("log", "--format=%H%x00%s", f"--grep={pattern}", "--fixed-strings")
        commits = []
        for line in out.splitlines():
            sha, _, subject = line.partition("\x00")
            if not subject.startswith("Revert "):
                commits.append(Commit(sha, subject))
        return commits

    def reverted(self) -> set[str]:
        """Commits already reverted on this branch, so a second run does not revert twice."""
        out = self.git("log", "--format=%B", "--grep=This reverts commit")
        return set(re.findall(r"This reverts commit ([0-9a-f]{40})", out))

    def revert(self, sha: str) -> str | None:
        """Revert one commit without an editor; None when it changes nothing any more."""
        proc = self._run("revert", "--no-edit", sha)
        if proc.returncode == 0:
            return self.head()
        if self.git("rev-parse", "-q", "--verify", "REVERT_HEAD", check=False).strip():
            status = self.git("status", "--porcelain")
            conflicted = [line[3:] for line in status.splitlines() if line[:2] in ("UU", "AA", "DU", "UD")]
            if not conflicted:
                # The revert's changes are already in the tree (e.g. level 2 restored them).
                self.git("revert", "--skip", check=False)
                self.git("revert", "--abort", check=False)
                return None
            self.git("revert", "--abort", check=False)
            raise GitError(
                f"git revert {sha[:10]} conflicts in {', '.join(conflicted)}; "
                "resolve it by hand (git revert) and run the rollback again"
            )
        if "nothing to commit" in proc.stdout + proc.stderr:
            return None
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        raise GitError(f"git revert {sha[:10]} failed in {self.path}: {lines[-1] if lines else proc.returncode}")
