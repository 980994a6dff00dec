"""Where the rollout stands: the percentage the app's env file and flags file say."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from rollout_cli.core.workspace import ENABLED_KEY, PERCENTAGE_KEY, Workspace
from rollout_cli.errors import StateFileError
from rollout_cli.io.dotenv import EnvFile
from rollout_cli.io.flags import open_flags

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}


def parse_enabled(value: str | None, where: str) -> bool | None:
    if value is None:
        return None
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise StateFileError(f"{where}: {ENABLED_KEY}={value!r} is not true/false; fix the file")


def parse_percentage(value: str | None, where: str) -> int | None:
    if value is None:
        return None
    try:
        number = int(value.strip())
    except ValueError:
        raise StateFileError(
            f"{where}: {PERCENTAGE_KEY}={value!r} is not a whole number 0..100; fix the file"
        ) from None
    if not 0 <= number <= 100:
        raise StateFileError(f"{where}: {PERCENTAGE_KEY}={number} is outside 0..100; fix the file")
    return number


@dataclass(frozen=True)
class Stage:
    env_percentage: int | None
    env_enabled: bool | None
    flags_percentage: int | None
    flags_enabled: bool | None
    has_flags_file: bool

    @property
    def env_effective(self) -> int:
        """What share of traffic the env file sends through the gateway."""
        return (self.env_percentage or 0) if self.env_enabled is not False else 0

    @property
    def flags_effective(self) -> int | None:
        if not self.has_flags_file:
            return None
        return (self.flags_percentage or 0) if self.flags_enabled is not False else 0

    @property
    def percentage(self) -> int:
        """The stage: the larger of the two, since that much traffic may reach the gateway."""
        flags = self.flags_effective
        return max(self.env_effective, flags if flags is not None else 0)

    @property
    def drift(self) -> str | None:
        """Why the env file and the flags file disagree, or None when they agree."""
        flags = self.flags_effective
        if flags is None or flags == self.env_effective:
            return None
        return (
            f"env file says {self.env_effective}% "
            f"({ENABLED_KEY}={format_setting(self.env_enabled)}, {PERCENTAGE_KEY}={format_setting(self.env_percentage)}) "
            f"but flags file says {flags}%"
        )

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "percentage": self.percentage, "drift": self.drift}


def format_setting(value: object) -> str:
    """A setting as the operator wrote it: unset, true/false, or the value."""
    if value is None:
        return "unset"
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def read_stage(ws: Workspace) -> Stage:
    env = EnvFile.load(ws.app.env_file)
    where = str(ws.app.env_file)
    flags_pct = flags_enabled = None
    if ws.app.flags_file is not None:
        flags = open_flags(ws.app.flags_file, ws.app.flags_format, ws.app.flag_key)
        flags_pct = flags.percentage()
        flags_enabled = flags.enabled()
    return Stage(
        env_percentage=parse_percentage(env.get(PERCENTAGE_KEY), where),
        env_enabled=parse_enabled(env.get(ENABLED_KEY), where),
        flags_percentage=flags_pct,
        flags_enabled=flags_enabled,
        has_flags_file=ws.app.flags_file is not None,
    )
