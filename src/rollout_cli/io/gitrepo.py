"""The app's git repository, through the real `git` binary (no shell, no editor).

Every git command runs with settings that keep the repository from running a
program of its own choosing when we only meant to read or to commit: no
fsmonitor hook, no hooks at all (a rollback must not be blocked or extended by
a developer's commit hooks), and no implicit bare repository (a folder laid out
as a git dir, with its own config, where a work tree is expected). Reading
(status, diff, log: everything but the commands that write the work tree in a
real rollback) also switches off the clean/smudge filter drivers the
repository's own config defines (a `.gitattributes` line `*.ts filter=x` with
`filter.x.clean` in `.git/config` would otherwise run whenever git hashes a
work-tree file), and takes no optional lock (`git status` leaves the index alone).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rollout_cli.errors import CheckFailed, GitError, InputError

_ENV = {"GIT_EDITOR": "true", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "GIT_OPTIONAL_LOCKS": "0"}
_FILTER_KEY = r"^filter\..+\.(clean|smudge|process)$"
_SAFE = ("-c", "core.fsmonitor=", "-c", "safe.bareRepository=explicit", "-c", "core.hooksPath=/dev/null")

# Whether a commit's changes are in a tree: "present" (its reverse applies), "absent"
# (its forward patch applies: already reverted or undone), "unclear" (neither applies
# cleanly: a later commit touched the same lines; only a real revert can tell), or
# "empty" (the commit changes nothing against its mainline parent).
RevertState = Literal["present", "absent", "unclear", "empty"]


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
        self.ends: float | None = None  # monotonic: a rollback level's budget runs out; no git call outlives it
        self._identity_args: list[str] | None = None
        self._filters_off: list[str] | None = None

    def git(self, *args: str, check: bool = True, timeout: float = 60, stdin: str | None = None,
            env: dict[str, str] | None = None, convert: bool = False) -> str:
        """Run git; `convert=True` only for the commands of a real rollback that write the work tree
        or commit it, where the repository's own filters apply as they would for its developers."""
        proc = self._run(*args, timeout=timeout, stdin=stdin, env=env, convert=convert)
        if check and proc.returncode != 0:
            reason = _reason(proc)
            if "not a git repository" in reason:
                raise InputError(f"{self.path} is not a git repository; check app.repo in rollout.yaml")
            if "cannot use bare repository" in reason:
                raise InputError(
                    f"{self.path} is a bare git directory, not a work tree; app.repo must be the app's "
                    "checkout (the folder holding .git)"
                )
            raise GitError(f"git {' '.join(args[:2])} failed in {self.path}: {reason}")
        return proc.stdout

    def _run(self, *args: str, timeout: float = 60, stdin: str | None = None,
             env: dict[str, str] | None = None, convert: bool = False) -> subprocess.CompletedProcess[str]:
        if shutil.which("git") is None:
            raise GitError("git is not installed; install it (apt-get install git)")
        if not self.path.is_dir():
            raise InputError(f"app repo {self.path} does not exist; check app.repo in rollout.yaml")
        filters_off = [] if convert else self._repo_filters_off()
        if self.ends is not None:
            left = self.ends - time.monotonic()
            if left <= 0:
                raise GitError(f"git {args[0]} in {self.path} not started: the rollback level's time budget ran out")
            timeout = min(timeout, left)
        try:
            proc = subprocess.run(
                ["git", *_SAFE, *filters_off, *self._identity(), *args],
                cwd=self.path,
                input=stdin,
                stdin=None if stdin is not None else subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                env={**os.environ, **_ENV, **(env or {})},
            )
        except subprocess.TimeoutExpired as exc:
            raise GitError(f"git {args[0]} in {self.path} timed out after {timeout:.0f} s") from exc
        return proc

    def _repo_filters_off(self) -> list[str]:
        """`-c` settings that switch off every filter driver the repository's own config (local or
        worktree, includes followed) defines: reading its config runs nothing."""
        if self._filters_off is None:
            probe = subprocess.run(
                ["git", *_SAFE, "config", "--show-scope", "--name-only", "--get-regexp", _FILTER_KEY],
                cwd=self.path, capture_output=True, text=True, stdin=subprocess.DEVNULL, env={**os.environ, **_ENV},
            )
            names = set()
            for line in probe.stdout.splitlines():
                scope, _, key = line.partition("\t")
                if scope in ("local", "worktree"):
                    names.add(key[len("filter."):key.rindex(".")])
            self._filters_off = [
                arg for name in sorted(names)
                for setting in ("clean", "smudge", "process")
                for arg in ("-c", f"filter.{name}.{setting}=")
            ] + [arg for name in sorted(names) for arg in ("-c", f"filter.{name}.required=false")]
        return self._filters_off

    def _identity(self) -> list[str]:
        # A rollback must be able to commit on a machine where nobody set an identity.
        if os.environ.get("GIT_AUTHOR_NAME") or os.environ.get("GIT_COMMITTER_NAME"):
            return []
        if self._identity_args is None:
            probe = subprocess.run(
                ["git", *_SAFE, "config", "user.name"], cwd=self.path, capture_output=True, text=True,
                stdin=subprocess.DEVNULL, env={**os.environ, **_ENV},
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

    def parents(self, sha: str) -> list[str]:
        return self.git("rev-list", "--parents", "-n", "1", sha).split()[1:]

    def first_parent_history(self) -> set[str]:
        """Commits on HEAD's first-parent line: the branch's own history, merged branches left out."""
        return set(self.git("rev-list", "--first-parent", "HEAD").split())

    def require_branch(self) -> str:
        """The branch HEAD is on; GitError on a detached HEAD, where a commit would belong to no branch."""
        branch = self.git("symbolic-ref", "-q", "--short", "HEAD", check=False).strip()
        if not branch:
            raise GitError(
                f"git repo {self.path} has a detached HEAD (at {self.head()[:10]}): a rollback commit there "
                "would be on no branch; check out the branch the app deploys from (git switch BRANCH), "
                "then run the rollback again"
            )
        return branch

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
        out = self.git("diff", "--no-ext-diff", "--no-textconv", "--name-only", ref, "--", *paths)
        return [line for line in out.splitlines() if line]

    def diff(self, ref: str, paths: tuple[str, ...]) -> str:
        return self.git("diff", "--no-ext-diff", "--no-textconv", "--no-color", "-R", ref, "--", *paths)

    def restore(self, ref: str, paths: tuple[str, ...], message: str) -> str | None:
        """Bring `paths` back to `ref` and commit just those; None when nothing differed.

        A failed commit (a signer that fails, a full disk) leaves the paths as
        they were, so the tree is clean for the retry.
        """
        changed = self.differs_from(ref, paths)
        if not changed:
            return None
        try:
            self.git("checkout", ref, "--", *paths, convert=True)
            self.git("commit", "--no-verify", "-m", message, "--", *paths, convert=True)
        except GitError as exc:
            raise GitError(f"{exc}; {self._discard_staged()}") from exc
        return self.head()

    def _discard_staged(self) -> str:
        """Put every staged path back as HEAD has it, in the index and the work tree; say how the tree is.

        Called after a failed commit on a tree that was clean before (apart
        from the unstaged env and flags files), so what is staged is ours.
        """
        def staged() -> list[str]:
            out = self.git("diff", "--cached", "--name-only", "-z", "--no-ext-diff", "HEAD", check=False)
            return [name for name in out.split("\0") if name]

        paths = staged()
        if paths:
            self.git("restore", "--source=HEAD", "--staged", "--worktree", "--", *paths, check=False, convert=True)
        left = staged()
        if left:
            return f"staged changes remain in {', '.join(left[:3])}: git restore --staged --worktree them"
        return "the tree is as it was"

    def commits_matching(self, pattern: str) -> list[Commit]:
        """Commits whose message matches, newest first (reverts excluded)."""
        out = self.git("log", "--format=%H%x00%s", f"--grep={pattern}", "--fixed-strings")
        commits = []
        for line in out.splitlines():
            sha, _, subject = line.partition("\x00")
            if not subject.startswith("Revert "):
                commits.append(Commit(sha, subject))
        return commits

    def _patch(self, sha: str, mainline: int | None, *, reverse: bool) -> str:
        """The commit's change against its (mainline) parent, as a patch `git apply` takes.

        diff-tree is plumbing: no colour, external diff, prefix or textconv
        settings of the repository change its output.
        """
        parents = self.parents(sha)
        base = parents[(mainline or 1) - 1] if parents else self.git("hash-object", "-t", "tree", "/dev/null").strip()
        old, new = (sha, base) if reverse else (base, sha)
        return self.git("diff-tree", "-p", "--binary", "--full-index", "--no-color", old, new)

    def revert_states(self, commits: list[tuple[str, int | None]]) -> list[RevertState]:
        """Whether each commit's changes are in HEAD, judged in order as if the earlier ones were reverted.

        `commits` are (sha, mainline parent or None), newest first. Nothing in
        the repository changes: the patches are checked (`git apply --check`)
        against a temporary index holding HEAD's tree.
        """
        states: list[RevertState] = []
        with tempfile.TemporaryDirectory(prefix="rollout-git-") as scratch:
            env = {"GIT_INDEX_FILE": str(Path(scratch) / "index")}
            self.git("read-tree", "HEAD", env=env)
            reverted = ""  # the reverse patches of the commits judged present so far

            def applies(patch: str) -> bool:
                proc = self._run("apply", "--check", "--cached", stdin=reverted + patch, env=env)
                return proc.returncode == 0

            for sha, mainline in commits:
                back = self._patch(sha, mainline, reverse=True)
                if not back.strip():
                    states.append("empty")
                elif applies(back):
                    states.append("present")
                    reverted += back
                elif applies(self._patch(sha, mainline, reverse=False)):
                    states.append("absent")
                else:
                    states.append("unclear")
        return states

    def revert(self, sha: str, mainline: int | None = None) -> str | None:
        """Revert one commit without an editor; None when it changes nothing any more.

        Whatever fails, the tree is left as it was: a conflict is aborted, a
        failed commit (e.g. a signer that fails) has its staged changes discarded.
        A merge commit is reverted against `mainline` (`git revert -m`).
        """
        args = ["revert", "--no-edit", *(["-m", str(mainline)] if mainline else []), sha]
        proc = self._run(*args, convert=True)
        if proc.returncode == 0:
            return self.head()
        output = proc.stdout + proc.stderr
        if self.git("rev-parse", "-q", "--verify", "REVERT_HEAD", check=False).strip():
            status = self.git("status", "--porcelain")
            conflicted = [line[3:] for line in status.splitlines() if line[:2] in ("UU", "AA", "DU", "UD")]
            if not conflicted and "nothing to commit" in output:
                # The revert's changes are already in the tree (e.g. level 2 restored them).
                self.git("revert", "--skip", check=False, convert=True)
                self.git("revert", "--abort", check=False, convert=True)
                return None
            self.git("revert", "--abort", check=False, convert=True)
            if conflicted:
                raise GitError(
                    f"git revert {sha[:10]} conflicts in {', '.join(conflicted)}; "
                    "resolve it by hand (git revert) and run the rollback again"
                )
        elif "nothing to commit" in output:
            return None
        raise GitError(f"git revert {sha[:10]} failed in {self.path}: {_reason(proc)}; {self._discard_staged()}")


def _reason(proc: subprocess.CompletedProcess[str]) -> str:
    """Why git failed, in one line: its first "error:" line (the cause; the "fatal:" after it is the
    consequence), else its last line."""
    lines = (proc.stderr or proc.stdout).strip().splitlines()
    return next((line for line in lines if line.startswith("error:")), lines[-1] if lines else f"exit {proc.returncode}")
