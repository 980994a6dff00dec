"""The step types a playbook can use. One class each, one line in STEP_TYPES."""

from __future__ import annotations

import difflib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rollout_cli.core.stage import read_stage
from rollout_cli.core.workspace import ENABLED_KEY, PERCENTAGE_KEY
from rollout_cli.errors import CheckFailed, InputError, PlaybookError, RolloutError
from rollout_cli.io.atomic import sha256_of
from rollout_cli.io.dotenv import EnvFile
from rollout_cli.io.flags import FlagStore, open_flags
from rollout_cli.io.gitrepo import GitRepo
from rollout_cli.playbook.context import StepContext
from rollout_cli.playbook.model import Check, Outcome, PartialFailure, Preview, Step
from rollout_cli.playbook.model import checked as _check
from rollout_cli.playbook.program import Run
from rollout_cli.playbook.traffic import TRAFFIC_STEPS

if TYPE_CHECKING:
    from rollout_cli.io.container import ContainerState


def _diff(path: Path, before: str, after: str) -> str | None:
    if before == after:
        return None
    lines = difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True), str(path), str(path)
    )
    return "".join(lines)


def _writable(path: Path) -> str:
    if not os.access(path, os.W_OK) or not os.access(path.parent, os.W_OK):
        raise InputError(f"{path} is not writable; fix its permissions (and its folder's)")
    return f"{path} writable"


def _file_change(path: Path, key: str, before: object, after: object, sha_before: str | None) -> dict:
    return {
        "file": str(path),
        "key": key,
        "before": before,
        "after": after,
        "sha256_before": sha_before,
        "sha256_after": sha256_of(path),
    }


@dataclass
class EnvSet(Step):
    """Set keys in the app's env file, keeping everything else byte for byte."""

    type = "env.set"
    values: dict[str, str]

    def validate(self, where: str) -> None:
        if not self.values:
            raise PlaybookError(f"{where}: field 'values' must name at least one key")
        if PERCENTAGE_KEY in self.values:
            value = self.values[PERCENTAGE_KEY]
            if not value.isdigit() or not 0 <= int(value) <= 100:
                raise PlaybookError(f"{where}: {PERCENTAGE_KEY}={value!r} is outside 0..100")
        if ENABLED_KEY in self.values and self.values[ENABLED_KEY] not in ("true", "false"):
            raise PlaybookError(f"{where}: {ENABLED_KEY} must be true or false")

    def _assignments(self) -> str:
        return ", ".join(f"{k}={v}" for k, v in self.values.items())

    def describe(self, ctx: StepContext) -> str:
        return f"set {self._assignments()} in {ctx.workspace.app.env_file}"

    def preview(self, ctx: StepContext) -> Preview:
        path = ctx.workspace.app.env_file
        env = EnvFile.load(path)
        before = env.text()
        for key, value in self.values.items():
            env.set(key, value)
        diff = _diff(path, before, env.text())
        if diff is None:
            return Preview(f"{path} already has {self._assignments()}", changes=False)
        return Preview(self.describe(ctx), diff)

    def preconditions(self, ctx: StepContext) -> list[Check]:
        path = ctx.workspace.app.env_file
        return [
            _check(f"env file parses: {path}", lambda: EnvFile.load(path) and None),
            _check(f"env file writable: {path}", lambda: _writable(path)),
        ]

    def read_inputs(self, ctx: StepContext) -> None:
        EnvFile.load(ctx.workspace.app.env_file)

    def run(self, ctx: StepContext) -> Outcome:
        path = ctx.workspace.app.env_file
        env = EnvFile.load(path)
        before = {key: env.get(key) for key in self.values}
        changed = [key for key, value in self.values.items() if env.set(key, value)]
        if not changed:
            return Outcome("unchanged", f"{path} already has {self._assignments()}")
        sha_before = sha256_of(path)
        how = env.save()
        changes = [
            _file_change(path, key, before[key], self.values[key], sha_before) for key in changed
        ]
        return Outcome("ok", f"{self.describe(ctx)} ({how})", changes)


@dataclass
class FlagSet(Step):
    """Set the rollout percentage in the flags file (flagd: the fractional weights)."""

    type = "flag.set"
    percentage: int

    def validate(self, where: str) -> None:
        if not 0 <= self.percentage <= 100:
            raise PlaybookError(f"{where}: percentage {self.percentage} is outside 0..100")

    def describe(self, ctx: StepContext) -> str:
        app = ctx.workspace.app
        return f"set flag {app.flag_key} to {self.percentage}% in {app.flags_file}"

    def _open(self, ctx: StepContext, path: Path) -> FlagStore:
        app = ctx.workspace.app
        return open_flags(path, app.flags_format, app.flag_key)

    def preview(self, ctx: StepContext) -> Preview:
        path = ctx.workspace.app.flags_file
        if path is None:
            return Preview("no flags file configured: nothing to do", changes=False)
        flags = self._open(ctx, path)
        before = flags.text()
        flags.set_percentage(self.percentage)
        diff = _diff(path, before, flags.text())
        if diff is None:
            return Preview(f"flag already at {self.percentage}%", changes=False)
        return Preview(self.describe(ctx), diff)

    def preconditions(self, ctx: StepContext) -> list[Check]:
        path = ctx.workspace.app.flags_file
        if path is None:
            return []
        return [
            _check(f"flags file parses: {path}", lambda: self._open(ctx, path) and None),
            _check(f"flags file writable: {path}", lambda: _writable(path)),
        ]

    def read_inputs(self, ctx: StepContext) -> None:
        if ctx.workspace.app.flags_file is not None:
            self._open(ctx, ctx.workspace.app.flags_file)

    def run(self, ctx: StepContext) -> Outcome:
        path = ctx.workspace.app.flags_file
        if path is None:
            return Outcome("skipped", "no flags file configured")
        flags = self._open(ctx, path)
        before = flags.percentage()
        if not flags.set_percentage(self.percentage):
            return Outcome("unchanged", f"flag {ctx.workspace.app.flag_key} already at {self.percentage}%")
        sha_before = sha256_of(path)
        how = flags.save()
        change = _file_change(path, ctx.workspace.app.flag_key, before, self.percentage, sha_before)
        return Outcome("ok", f"{self.describe(ctx)} ({how})", [change])


@dataclass
class Verify(Step):
    """Read the world back and fail unless it is as the level promised."""

    type = "verify"
    stops_by_default = True
    percentage: int | None = None
    container: str | None = None  # running | stopped
    tree_clean: bool | None = None
    router_at_ref: bool | None = None

    def validate(self, where: str) -> None:
        if all(v is None for v in (self.percentage, self.container, self.tree_clean, self.router_at_ref)):
            raise PlaybookError(
                f"{where}: name at least one of percentage, container, tree_clean, router_at_ref"
            )
        if self.container not in (None, "running", "stopped"):
            raise PlaybookError(f"{where}: field 'container' must be running or stopped")
        if self.percentage is not None and not 0 <= self.percentage <= 100:
            raise PlaybookError(f"{where}: percentage {self.percentage} is outside 0..100")

    def describe(self, ctx: StepContext) -> str:
        parts = []
        if self.percentage is not None:
            parts.append(f"env and flags at {self.percentage}%")
        if self.container:
            parts.append(f"gateway {self.container}")
        if self.tree_clean:
            parts.append("git tree clean")
        if self.router_at_ref:
            parts.append(f"router paths at {ctx.workspace.app.pre_gateway_ref}")
        return "verify " + ", ".join(parts)

    def preview(self, ctx: StepContext) -> Preview:
        return Preview("would " + self.describe(ctx), changes=False)

    def run(self, ctx: StepContext) -> Outcome:
        seen = []
        if self.percentage is not None:
            stage = read_stage(ctx.workspace)
            if stage.env_effective != self.percentage:
                raise CheckFailed(
                    f"env file {ctx.workspace.app.env_file} says {stage.env_effective}%, expected {self.percentage}%"
                )
            flags = stage.flags_effective
            if flags is not None and flags != self.percentage:
                raise CheckFailed(
                    f"flags file {ctx.workspace.app.flags_file} says {flags}%, expected {self.percentage}%"
                )
            seen.append(f"traffic {self.percentage}%")
        if self.container:
            state = ctx.gateway().state()
            # paused or restarting is not stopped: it may answer again at any moment
            if (state.running if self.container == "running" else not _up(state)) is False:
                raise CheckFailed(f"gateway {state.name} is {state.status}, expected {self.container}")
            seen.append(f"gateway {state.name} {state.status}")
        if self.tree_clean:
            ctx.repo().require_clean(ctx.managed_files())
            seen.append("git tree clean")
        if self.router_at_ref:
            ref = _pre_gateway_ref(ctx)
            paths = _router_paths(ctx)
            differing = ctx.repo().differs_from(ref, paths)
            if differing:
                raise CheckFailed(f"{', '.join(differing)} still differ from {ref}")
            seen.append(f"{', '.join(paths)} at {ref}")
        return Outcome("ok", "verified: " + ", ".join(seen))


def _up(state: ContainerState) -> bool:
    """Running, restarting or paused: not stopped."""
    return state.running or state.status in ("running", "restarting", "paused")


def _noun(ctx: StepContext, name: str | None) -> str:
    """What the step acts on, in its messages: a named container, or the workspace's gateway runtime."""
    return "service" if name is None and ctx.workspace.gateway.runtime == "swarm" else "container"


def _container_precondition(ctx: StepContext, name: str | None) -> list[Check]:
    def probe() -> str:
        state = ctx.gateway(name).state()
        return f"{_noun(ctx, name)} {state.name} found ({state.status})"

    return [_check("Docker engine answers and the gateway container exists", probe)]


@dataclass
class ContainerStop(Step):
    """Stop the gateway's container through the Docker SDK."""

    type = "container.stop"
    container: str | None = None
    timeout: float = 10.0

    def describe(self, ctx: StepContext) -> str:
        if self.container is None and ctx.workspace.gateway.runtime == "swarm":
            return f"scale the gateway service {ctx.workspace.gateway.service} to 0"
        return f"stop the gateway container {self.container or ctx.workspace.gateway.container or '(sandbox process)'}"

    def preview(self, ctx: StepContext) -> Preview:
        gateway = ctx.gateway(self.container)
        state = gateway.state()
        if not _up(state):
            return Preview(f"{_noun(ctx, self.container)} {state.name} already {state.status}: nothing to do",
                           changes=False)
        return Preview(gateway.stop_preview(state))

    def preconditions(self, ctx: StepContext) -> list[Check]:
        return _container_precondition(ctx, self.container)

    def run(self, ctx: StepContext) -> Outcome:
        gateway = ctx.gateway(self.container)
        before = gateway.state()
        if not _up(before):
            return Outcome("unchanged", f"container {before.name} already {before.status}")
        after = gateway.stop(timeout=int(ctx.time_left(self.timeout)))  # its grace period: never past the budget
        change = {"container": before.name, "before": before.status, "after": after.status}
        return Outcome("ok", f"stopped {_noun(ctx, self.container)} {before.name} ({after.status})", [change])


@dataclass
class ContainerStart(Step):
    """Start the gateway's container (used to undo level 3)."""

    type = "container.start"
    container: str | None = None

    def describe(self, ctx: StepContext) -> str:
        if self.container is None and ctx.workspace.gateway.runtime == "swarm":
            return f"scale the gateway service {ctx.workspace.gateway.service} back to its recorded replica count"
        return f"start the gateway container {self.container or ctx.workspace.gateway.container or '(sandbox process)'}"

    def preconditions(self, ctx: StepContext) -> list[Check]:
        return _container_precondition(ctx, self.container)

    def run(self, ctx: StepContext) -> Outcome:
        gateway = ctx.gateway(self.container)
        before = gateway.state()
        if before.running:
            return Outcome("unchanged", f"container {before.name} already running")
        after = gateway.start()
        change = {"container": before.name, "before": before.status, "after": after.status}
        return Outcome("ok", f"started {_noun(ctx, self.container)} {before.name}", [change])


def _pre_gateway_ref(ctx: StepContext, override: str | None = None) -> str:
    ref = override or ctx.workspace.app.pre_gateway_ref
    if not ref:
        raise InputError("app.pre_gateway_ref is not set in rollout.yaml; level 2 restores from it")
    return ref


def _router_paths(ctx: StepContext, override: list[str] | None = None) -> tuple[str, ...]:
    paths = tuple(override or ctx.workspace.app.router_paths)
    if not paths:
        raise InputError("app.router_paths is empty in rollout.yaml; level 2 restores those paths")
    return paths


def _commit_preconditions(ctx: StepContext) -> list[Check]:
    """What levels 2 and 4 need before they commit: a branch to commit on, and a clean tree."""
    return [
        _check("HEAD on a branch", lambda: f"on branch {ctx.repo().require_branch()}"),
        _check("git tree clean", lambda: ctx.repo().require_clean(ctx.managed_files())),
    ]


@dataclass
class GitRestore(Step):
    """Restore the router paths from the pre-gateway ref, and commit just those."""

    type = "git.restore"
    stops_by_default = True
    paths: list[str] | None = None
    ref: str | None = None
    message: str = "rollout: restore router to its pre-gateway version (rollback level 2)"

    def describe(self, ctx: StepContext) -> str:
        return f"restore {', '.join(_router_paths(ctx, self.paths))} from {_pre_gateway_ref(ctx, self.ref)} and commit"

    def preview(self, ctx: StepContext) -> Preview:
        repo, ref, paths = ctx.repo(), _pre_gateway_ref(ctx, self.ref), _router_paths(ctx, self.paths)
        repo.resolve(ref)
        repo.require_branch()
        diff = repo.diff(ref, paths)
        if not diff:
            return Preview(f"{', '.join(paths)} already at {ref}: nothing to do", changes=False)
        return Preview(self.describe(ctx), diff)

    def preconditions(self, ctx: StepContext) -> list[Check]:
        def ref_present() -> str:
            ref = _pre_gateway_ref(ctx, self.ref)
            return f"{ref} is {ctx.repo().resolve(ref)[:10]}"

        return [
            _check("pre-gateway ref exists", ref_present),
            *_commit_preconditions(ctx),
        ]

    def run(self, ctx: StepContext) -> Outcome:
        repo, ref, paths = ctx.repo(), _pre_gateway_ref(ctx, self.ref), _router_paths(ctx, self.paths)
        repo.resolve(ref)
        repo.require_branch()
        repo.require_clean(ctx.managed_files())
        before = repo.head()
        commit = repo.restore(ref, paths, self.message)
        if commit is None:
            return Outcome("unchanged", f"{', '.join(paths)} already at {ref}")
        change = {"repo": str(repo.path), "action": "restore", "paths": list(paths), "ref": ref,
                  "before": before, "after": commit}
        return Outcome("ok", f"restored {', '.join(paths)} from {ref}, commit {commit[:10]}", [change])


@dataclass(frozen=True)
class RevertTarget:
    """One commit level 4 reverts; `mainline` is the parent a merge commit is reverted against."""

    sha: str
    subject: str
    mainline: int | None = None

    def label(self) -> str:
        return f"{self.sha[:10]} {self.subject}" + (" (merge, against parent 1)" if self.mainline else "")


_REVERT_PREVIEW = {
    "present": "revert",
    "unclear": "revert (may conflict: a later commit changed the same lines)",
    "absent": "already reverted (its changes are not in HEAD)",
    "empty": "nothing to revert (it changes nothing)",
}


@dataclass
class GitRevert(Step):
    """Revert the integration commits, newest first, without an editor.

    A commit counts as reverted when its changes are not in HEAD now, whatever
    the history says: a revert that was itself reverted brings them back, and
    then they are reverted again. A merge commit on the branch's first-parent
    line is reverted against its first parent (`git revert -m 1`: the line it
    was merged into); a merge inside a merged branch is refused before anything
    runs, since which of its sides is "the integration" is not knowable.
    """

    type = "git.revert"
    stops_by_default = True
    commits: list[str] | None = None
    grep: str | None = None

    def targets(self, ctx: StepContext) -> list[RevertTarget]:
        """The commits to revert, newest first."""
        repo, app = ctx.repo(), ctx.workspace.app
        named = self.commits or list(app.integration_commits)
        if named:
            shas = [repo.resolve(ref) for ref in named]
        else:
            pattern = self.grep or app.integration_grep
            if not pattern:
                raise InputError(
                    "rollout.yaml names no integration commits; set app.integration_commits or app.integration_grep"
                )
            shas = [c.sha for c in repo.commits_matching(pattern)]
            if not shas:
                raise InputError(
                    f"no commit in {repo.path} matches app.integration_grep {pattern!r}; check it (git log --grep)"
                )
        order = {sha: i for i, sha in enumerate(repo.git("rev-list", "HEAD").split())}
        missing = [sha for sha in shas if sha not in order]
        if missing:
            raise InputError(f"commit {missing[0][:10]} is not on the current branch of {repo.path}")
        return [_target(repo, sha) for sha in sorted(set(shas), key=order.__getitem__)]

    def describe(self, ctx: StepContext) -> str:
        return "git revert the integration commits, newest first"

    def preview(self, ctx: StepContext) -> Preview:
        repo, targets = ctx.repo(), self.targets(ctx)
        repo.require_branch()
        states = repo.revert_states([(t.sha, t.mainline) for t in targets])
        lines = [f"{_REVERT_PREVIEW[state]} {t.label()}" for t, state in zip(targets, states, strict=True)]
        return Preview("; ".join(lines), changes=any(state in ("present", "unclear") for state in states))

    def preconditions(self, ctx: StepContext) -> list[Check]:
        def revertable() -> str:
            targets = self.targets(ctx)
            states = ctx.repo().revert_states([(t.sha, t.mainline) for t in targets])
            unclear = [t for t, state in zip(targets, states, strict=True) if state == "unclear"]
            if unclear:
                raise CheckFailed(
                    f"commit {unclear[0].label()} no longer reverts cleanly onto HEAD (a later commit changed "
                    "the same lines): a real revert would likely conflict; revert it by hand, or list in "
                    "app.integration_commits the commits to revert"
                )
            merges = sum(1 for t in targets if t.mainline)
            return f"{len(targets)} commit(s)" + (f", {merges} merge(s) reverted against parent 1" if merges else "")

        return [
            _check("integration commits found", lambda: f"{len(self.targets(ctx))} commit(s)"),
            *_commit_preconditions(ctx),
            _check("integration commits revert cleanly", revertable),
        ]

    def run(self, ctx: StepContext) -> Outcome:
        repo = ctx.repo()
        targets = self.targets(ctx)
        repo.require_branch()
        repo.require_clean(ctx.managed_files())
        changes: list[dict] = []
        notes: list[str] = []
        for target in targets:
            try:
                new = self._revert_one(repo, target, notes)
            except RolloutError as exc:
                if changes:  # the commits reverted so far stay reverted: say so
                    raise PartialFailure(exc, changes, "; ".join(notes)) from exc
                raise
            if new is not None:
                changes.append({"repo": str(repo.path), "action": "revert", "commit": target.sha,
                                "subject": target.subject, "after": new,
                                **({"mainline": target.mainline} if target.mainline else {})})
                notes.append(f"reverted {target.sha[:10]} as {new[:10]}")
        return Outcome("ok" if changes else "unchanged", "; ".join(notes), changes)

    @staticmethod
    def _revert_one(repo: GitRepo, target: RevertTarget, notes: list[str]) -> str | None:
        """Revert `target` unless its changes are already out of HEAD; the new commit, or None."""
        state = repo.revert_states([(target.sha, target.mainline)])[0]
        if state in ("absent", "empty"):
            notes.append(f"{target.sha[:10]} {_REVERT_PREVIEW[state]}")
            return None
        new = repo.revert(target.sha, target.mainline)
        if new is None:
            notes.append(f"{target.sha[:10]} already undone")
        return new


def _target(repo: GitRepo, sha: str) -> RevertTarget:
    """A commit to revert, with the parent to revert a merge against (refused when unclear)."""
    subject = repo.subject(sha)
    if len(repo.parents(sha)) < 2:
        return RevertTarget(sha, subject)
    if sha not in repo.first_parent_history():
        raise InputError(
            f"commit {sha[:10]} ({subject}) is a merge inside a merged branch, not on the first-parent "
            "history of HEAD: which side is the integration is unclear; list the commits to revert in "
            "app.integration_commits instead"
        )
    return RevertTarget(sha, subject, mainline=1)


@dataclass
class Wait(Step):
    type = "wait"
    seconds: float

    def describe(self, ctx: StepContext) -> str:
        return f"wait {self.seconds:g} s"

    def run(self, ctx: StepContext) -> Outcome:
        time.sleep(self.seconds)
        return Outcome("ok", self.describe(ctx))


STEP_TYPES: dict[str, type[Step]] = {
    cls.type: cls
    for cls in (EnvSet, FlagSet, Verify, ContainerStop, ContainerStart, GitRestore, GitRevert, Wait, Run)
} | {cls.type: cls for cls in TRAFFIC_STEPS}
