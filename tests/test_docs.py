"""Keeps docs/ true to the code.

- docs/CLI.md names every command and subcommand of the typer app, and each
  command's section names its every long option and argument;
- docs/CLI.md's exit-code table lists every ExitCode;
- every ```yaml block of docs/PLAYBOOKS.md with `kind: rollback`, `kind: rollout`
  or `kind: smoke` loads with the project's own loaders, and a block marked
  `<!-- shipped: PATH -->` is a verbatim copy of that file;
- every ```yaml block of docs/SETUP.md with an `app:` key loads as a workspace.

A failure here means the code changed under the docs (or the docs are wrong).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
CLI_MD = DOCS / "CLI.md"
PLAYBOOKS_MD = DOCS / "PLAYBOOKS.md"
SETUP_MD = DOCS / "SETUP.md"

_HEADING = re.compile(r"^(#{1,6}) +(.*?)\s*$", re.MULTILINE)
_YAML_BLOCK = re.compile(r"(?:<!-- shipped: (?P<shipped>\S+) -->\n)?```yaml\n(?P<body>.*?)^```", re.MULTILINE | re.DOTALL)


def _commands() -> list[tuple[tuple[str, ...], object]]:
    """(path, click command) for the app and every command and subcommand under it."""
    import typer.main

    from rollout_cli.cli.app import app

    found: list[tuple[tuple[str, ...], object]] = []

    def walk(command: object, path: tuple[str, ...]) -> None:
        found.append((path, command))
        for name, sub in sorted((getattr(command, "commands", None) or {}).items()):
            walk(sub, (*path, name))

    walk(typer.main.get_command(app), ())
    return found


def _long_options(command: object) -> list[str]:
    out = []
    for param in getattr(command, "params", []):
        for opt in [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]:
            if opt.startswith("--"):
                out.append(opt)
    return out


def _arguments(command: object) -> list[str]:
    """Positional arguments, as the docs spell them: DIRECTORY, MODEL."""
    return [
        param.name.upper()
        for param in getattr(command, "params", [])
        if getattr(param, "param_type_name", "") == "argument" and param.name
    ]


def _section(text: str, title: str) -> str | None:
    """The text under the heading whose title is exactly `title`, up to the next heading of the same or higher level."""
    headings = list(_HEADING.finditer(text))
    for i, match in enumerate(headings):
        if match.group(2) != title:
            continue
        level = len(match.group(1))
        end = len(text)
        for later in headings[i + 1 :]:
            if len(later.group(1)) <= level:
                end = later.start()
                break
        return text[match.end() : end]
    return None


def _mentions(text: str, token: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(token)}(?![\w-])", text) is not None


COMMANDS = _commands()


@pytest.mark.parametrize("path,command", COMMANDS, ids=[" ".join(p) or "rollout" for p, _ in COMMANDS])
def test_cli_md_documents_every_command_and_option(path: tuple[str, ...], command: object) -> None:
    text = CLI_MD.read_text(encoding="utf-8")
    if not path:
        section = _section(text, "Global options")
        assert section is not None, "docs/CLI.md has no '## Global options' section"
        where = "the 'Global options' section"
    else:
        title = "`rollout " + " ".join(path) + "`"
        section = _section(text, title)
        assert section is not None, f"docs/CLI.md has no heading {title}"
        where = f"the {title} section"
    missing = [opt for opt in _long_options(command) if not _mentions(section, opt)]
    assert not missing, f"docs/CLI.md: {where} does not mention {', '.join(missing)}"
    missing_args = [arg for arg in _arguments(command) if not _mentions(section, arg)]
    assert not missing_args, f"docs/CLI.md: {where} does not mention argument {', '.join(missing_args)}"


def test_cli_md_lists_every_exit_code() -> None:
    from rollout_cli.errors import ExitCode

    section = _section(CLI_MD.read_text(encoding="utf-8"), "Exit codes")
    assert section is not None, "docs/CLI.md has no '## Exit codes' section"
    missing = [code for code in ExitCode if not re.search(rf"^\| {int(code)} \|", section, re.MULTILINE)]
    assert not missing, f"docs/CLI.md exit-code table lacks {missing}"


def _yaml_blocks(path: Path) -> list[tuple[int, str | None, str]]:
    """(line number, shipped path or None, body) of every ```yaml block."""
    text = path.read_text(encoding="utf-8")
    return [
        (text.count("\n", 0, m.start("body")) + 1, m.group("shipped"), m.group("body"))
        for m in _YAML_BLOCK.finditer(text)
    ]


PLAYBOOK_BLOCKS = _yaml_blocks(PLAYBOOKS_MD)


def _kind(body: str) -> str | None:
    raw = yaml.safe_load(body)
    return raw.get("kind") if isinstance(raw, dict) else None


@pytest.mark.parametrize(
    "line,shipped,body", PLAYBOOK_BLOCKS, ids=[f"PLAYBOOKS.md:{line}" for line, _, _ in PLAYBOOK_BLOCKS]
)
def test_playbooks_md_examples_load(tmp_path: Path, line: int, shipped: str | None, body: str) -> None:
    from rollout_cli.checks.suite import load_suite
    from rollout_cli.core.playbooks import read_yaml
    from rollout_cli.playbook.model import load_rollback_playbook
    from rollout_cli.playbook.steps import STEP_TYPES
    from rollout_cli.rollout.plan import parse_plan

    if shipped is not None:
        assert body == (ROOT / shipped).read_text(encoding="utf-8"), (
            f"docs/PLAYBOOKS.md line {line} is marked as a copy of {shipped} but differs from it"
        )
    kind = _kind(body)
    if kind == "rollback":
        level = yaml.safe_load(body)["level"]
        path = tmp_path / f"rollback-{level}.yaml"
        path.write_text(body, encoding="utf-8")
        book = load_rollback_playbook(path, level, STEP_TYPES)
        assert book.steps
    elif kind == "rollout":
        path = tmp_path / "rollout.yaml"
        path.write_text(body, encoding="utf-8")
        plan = parse_plan(read_yaml(path), path)
        assert plan.stages[-1] == 100
    elif kind == "smoke":
        path = tmp_path / "smoke.yaml"
        path.write_text(body, encoding="utf-8")
        suite = load_suite(path)
        assert suite.cases
    else:
        pytest.skip("not a playbook, stage plan or smoke suite")


def test_playbooks_md_has_an_example_of_each_kind() -> None:
    kinds = {_kind(body) for _, _, body in PLAYBOOK_BLOCKS}
    assert {"rollback", "rollout", "smoke"} <= kinds


def test_setup_md_workspace_examples_load(tmp_path: Path) -> None:
    from rollout_cli.core.workspace import load_workspace

    blocks = [body for _, _, body in _yaml_blocks(SETUP_MD) if isinstance(yaml.safe_load(body), dict) and "app" in yaml.safe_load(body)]
    assert blocks, "docs/SETUP.md has no rollout.yaml example"
    for body in blocks:
        (tmp_path / "rollout.yaml").write_text(body, encoding="utf-8")
        load_workspace(tmp_path)
