"""One exception hierarchy; the CLI maps each class to a documented exit code.

Every message is one line that names the file, key or value at fault and says
what to do about it.
"""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0  # done, or GO
    FAILED = 1  # a check failed, or NO-GO
    BAD_INPUT = 2  # malformed files, unknown keys, levels, percentages, options
    HOLD = 3  # HOLD, or only inconclusive results
    UNAVAILABLE = 4  # something it depends on does not answer (Docker, gateway, git, lock)


MAX_MESSAGE = 1000  # characters: a message is one line a person reads, whatever value it quotes


def shortened(message: str) -> str:
    """`message` cut in the middle past MAX_MESSAGE characters, keeping the advice at its end."""
    if len(message) <= MAX_MESSAGE:
        return message
    head, tail = MAX_MESSAGE * 7 // 10, MAX_MESSAGE // 5
    return f"{message[:head]} ... ({len(message) - head - tail} characters cut) ... {message[-tail:]}"


class RolloutError(Exception):
    """Base of every error `rollout` reports to a user."""

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str) -> None:
        message = shortened(message)
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InputError(RolloutError):
    """Bad input: a config, state file, playbook or option the CLI cannot accept."""

    exit_code = ExitCode.BAD_INPUT


class StateFileError(InputError):
    """An env or flags file that cannot be parsed or does not hold the expected key."""


class PlaybookError(InputError):
    """A playbook that does not validate."""


class CheckFailed(RolloutError):
    """A precondition or verification did not hold."""

    exit_code = ExitCode.FAILED


class UnavailableError(RolloutError):
    """Something the CLI depends on does not answer."""

    exit_code = ExitCode.UNAVAILABLE


class DockerUnavailable(UnavailableError):
    """The Docker engine does not answer."""


class ContainerNotFound(UnavailableError):
    """No container matches the configured name or compose service."""


class GatewayUnavailable(UnavailableError):
    """The gateway's HTTP API does not answer."""


class GitError(UnavailableError):
    """git failed or is not installed."""


class LockError(UnavailableError):
    """Another `rollout` holds the workspace lock."""
