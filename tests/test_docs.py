"""Keeps docs/ true to the code.

- docs/CLI.md names every command and subcommand of the typer app, and each
  command's section names its every long option and argument;
- the other way too: every option in a command's options table exists in the
  CLI, with the default (and minimum) the table states;
- docs/CLI.md's exit-code table lists every ExitCode;
- every ```yaml block of docs/PLAYBOOKS.md with `kind: rollback`, `kind: rollout`
  or `kind: smoke` loads with the project's own loaders (any other `kind:` fails), and a block marked
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


_OPTION_ROW = re.compile(r"^\| (`[^|]*`) \| ([^|]*) \|", re.MULTILINE)
_MIN = re.compile(r"\(min `([^`]+)`\)")
LEAVES = [(path, command) for path, command in COMMANDS if not getattr(command, "commands", None)]


def _table_rows(section: str) -> list[tuple[list[str], str]]:
    """(option names, default cell) of each options-table row: `-l`, `--level N` -> ["-l", "--level"]."""
    rows = []
    for first, default in _OPTION_ROW.findall(section):
        names = [token.split()[0] for token in re.findall(r"`([^`]+)`", first)]
        if names and names[0].startswith("-"):
            rows.append((names, default.strip()))
    return rows


def _documented_default(cell: str, param: object) -> str | None:
    """Why the table's default disagrees with the parameter's, or None when they agree."""
    default = getattr(param, "default", None)
    literal = re.match(r"^`([^`]+)`", cell)
    if isinstance(default, bool):
        expected = {False: "off", True: f"`{getattr(param, 'opts', ['?'])[0]}`"}[default]
        return None if cell == expected or cell.startswith(expected + " ") else f"default {cell!r}, CLI {default!r}"
    if default is None:
        # no CLI default: the command decides (prose such as "none", "the primary", "`4000`, or the port ...")
        return None
    if literal is None:
        return f"default {cell!r} names no value; the CLI's is {default!r}"
    value = literal.group(1)
    same = value == str(default) or (isinstance(default, (int, float)) and _number(value) == float(default))
    return None if same else f"default `{value}`, CLI {default!r}"


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _cli_min(param: object) -> float | None:
    """The option's lower bound: typer keeps it on the option itself, click on its type."""
    low = getattr(param, "min", None)
    if low is None:
        low = getattr(getattr(param, "type", None), "min", None)
    return float(low) if low is not None else None


@pytest.mark.parametrize("path,command", LEAVES, ids=[" ".join(p) for p, _ in LEAVES])
def test_every_option_cli_md_documents_exists_with_its_default(path: tuple[str, ...], command: object) -> None:
    """docs -> CLI: an option the docs still list but the CLI dropped, or a changed default, fails here."""
    title = "`rollout " + " ".join(path) + "`"
    section = _section(CLI_MD.read_text(encoding="utf-8"), title)
    assert section is not None, f"docs/CLI.md has no heading {title}"
    params = {opt: param for param in getattr(command, "params", [])
              for opt in [*getattr(param, "opts", []), *getattr(param, "secondary_opts", [])]}
    rows = _table_rows(section)
    assert rows, f"docs/CLI.md: the {title} section has no options table"
    problems = []
    for names, cell in rows:
        for name in names:
            if name not in params:
                problems.append(f"{name} is documented but `rollout {' '.join(path)}` has no such option")
        param = params.get(names[-1]) or params.get(names[0])
        if param is None:
            continue
        wrong = _documented_default(cell, param)
        if wrong:
            problems.append(f"{'/'.join(names)}: {wrong}")
        stated = _MIN.search(cell)
        low = _cli_min(param)
        if stated and _number(stated.group(1)) != low:
            problems.append(f"{'/'.join(names)}: documented min {stated.group(1)}, CLI min {low}")
        if low is not None and not stated:
            problems.append(f"{'/'.join(names)}: the CLI refuses values below {low:g}; the docs do not say so")
    assert not problems, f"docs/CLI.md {title}: " + "; ".join(problems)


def test_global_options_table_matches_the_cli() -> None:
    root = dict(COMMANDS)[()]
    section = _section(CLI_MD.read_text(encoding="utf-8"), "Global options")
    assert section is not None
    documented = {name for names, _ in _table_rows(section) for name in names}
    real = set(_long_options(root)) | {opt for p in getattr(root, "params", []) for opt in p.opts
                                       if opt.startswith("-") and not opt.startswith("--")}
    assert documented - real - {"-h", "--help"} == set(), "documented global options the CLI lacks"
    assert real - documented == set(), "global options the docs lack"


def test_the_docs_check_catches_a_dropped_option_and_a_changed_default() -> None:
    """The checks above can fail: fed a table row the CLI disagrees with, they say so."""
    command = dict(COMMANDS)[("watch",)]
    params = {opt: p for p in command.params for opt in p.opts}
    assert _documented_default("`15.0` (min `0.5`)", params["--interval"]) == "default `15.0`, CLI 30.0"
    assert _documented_default("on", params["--probe"]) == "default 'on', CLI False"
    assert _documented_default("`30.0` (min `0.5`)", params["--interval"]) is None
    assert _table_rows("| `--gone N` | `3` | dropped |\n") == [(["--gone"], "`3`")]
    assert "--gone" not in params


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
    elif kind is not None:
        pytest.fail(f"docs/PLAYBOOKS.md line {line}: unknown kind {kind!r}; use rollback, rollout or smoke")
    else:
        pytest.skip("no kind: not a playbook, stage plan or smoke suite")


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
