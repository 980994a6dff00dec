"""Where playbook files come from (the workspace's override, else the packaged default), and their durations."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any

from rollout_cli.errors import PlaybookError
from rollout_cli.io.yamlfile import read_yaml as _read_yaml

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: Any, where: str) -> float:
    """Seconds from `30`, `30s`, `5m`, `48h`, `1.5h`."""
    if isinstance(value, bool):
        raise PlaybookError(f"{where}: expected a duration like 30s, 5m or 48h, got {value!r}")
    if isinstance(value, (int, float)) and value >= 0:
        return float(value)
    match = _DURATION.match(str(value)) if isinstance(value, str) else None
    if not match:
        raise PlaybookError(f"{where}: expected a duration like 30s, 5m or 48h, got {value!r}")
    return float(match.group(1)) * _UNIT[match.group(2)]


def format_duration(seconds: float) -> str:
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def packaged_dir() -> Path:
    """The default playbooks: inside the wheel, or the repo's `playbooks/` in a checkout."""
    shipped = resources.files("rollout_cli") / "playbooks"
    if shipped.is_dir():
        return Path(str(shipped))
    return Path(__file__).resolve().parents[3] / "playbooks"


def find_playbook(filename: str, override_dir: Path | None) -> Path:
    """The workspace's copy when it has one, else the packaged default.

    A `playbooks:` folder that is not there is refused, not skipped: silently
    running the packaged defaults instead of the operator's own levels would
    be a different rollback from the one that was reviewed.
    """
    if override_dir is not None:
        if not override_dir.is_dir():
            state = "is not a folder" if override_dir.exists() else "does not exist"
            raise PlaybookError(f"the playbooks folder {override_dir} ('playbooks' in rollout.yaml) {state}; "
                                "create it, fix the path, or remove the key to use the packaged playbooks")
        if (override_dir / filename).is_file():
            return override_dir / filename
    path = packaged_dir() / filename
    if not path.is_file():
        raise PlaybookError(f"playbook {filename} not found in {packaged_dir()}; reinstall rollout")
    return path


def read_yaml(path: Path) -> Any:
    """A playbook file parsed; a syntax error is a PlaybookError naming file, line and column."""
    return _read_yaml(path, label="playbook ", error=PlaybookError)
