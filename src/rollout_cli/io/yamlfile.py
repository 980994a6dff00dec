"""Reading a YAML file the operator wrote: bounded, one message shape for every problem.

PyYAML shares an aliased node instead of copying it, so a few hundred bytes of
nested anchors (a "billion laughs") load at once and then explode in whatever
walks the data: a validator, the repr in an error message, json.dumps. So the
node graph is measured before anything is built: its size with every alias
expanded, its depth, and no alias that contains itself. A duplicate key in a
mapping is refused too: YAML says keys are unique, PyYAML silently keeps the
last one, and an operator who wrote a key twice meant one of them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rollout_cli.errors import InputError
from rollout_cli.io.textfile import CONFIG_LIMIT, read_text

if TYPE_CHECKING:
    import yaml

MAX_NODES = 100_000  # values in a document with every alias expanded; real files hold hundreds
MAX_DEPTH = 100  # nesting levels
_MERGE_TAG = "tag:yaml.org,2002:merge"


def read_yaml(path: Path, *, label: str = "", error: type[InputError] = InputError) -> Any:
    """The parsed document; `error` names the file, line, column and problem otherwise.

    `label` says what the file is ("playbook ", "gateway config ") in front of its path.
    """
    try:
        text = read_text(path, limit=CONFIG_LIMIT, error=error, label=label)
    except FileNotFoundError:
        raise error(f"cannot read {label}{path}: no such file; check the path") from None
    return parse_yaml_text(text, path, label=label, error=error)


def parse_yaml_text(text: str, path: Path, *, label: str = "", error: type[InputError] = InputError) -> Any:
    """`read_yaml` for text already read (an edit checked before it is written)."""
    import yaml  # lazy: start-up time

    try:
        return load_yaml(text, f"{label}{path}", error=error, unique_keys=True)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "syntax error"
        raise error(f"{label}{path} is not valid YAML{where}: {problem}; fix the file") from None


def load_yaml(text: str, name: str, *, error: type[InputError] = InputError, unique_keys: bool = False) -> Any:
    """`text` parsed with the safe loader (libyaml's when installed), within MAX_NODES and MAX_DEPTH.

    A syntax error is raised as yaml.YAMLError for the caller to word; a
    document out of bounds (or, with `unique_keys`, a duplicate key) as `error`
    naming `name`.
    """
    import yaml  # lazy: start-up time

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _measure(node, name, error, unique_keys)
        return loader.construct_document(node)
    except RecursionError:  # PyYAML's pure-Python composer, without libyaml's own depth limit
        raise error(f"{name} is nested too deeply to read; flatten it") from None
    finally:
        loader.dispose()


def _measure(root: yaml.Node, name: str, error: type[InputError], unique_keys: bool) -> None:
    """Refuse a graph too big once expanded, too deep, or with an alias inside its own anchor.

    Iterative and linear in the distinct nodes: each node's expanded size is the
    sum of its children's, computed once however often it is aliased.
    """
    import yaml  # lazy: start-up time

    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()  # nodes whose children are still being measured: their ancestors' chain
    stack: list[tuple[yaml.Node, int, bool]] = [(root, 1, False)]
    while stack:
        node, depth, children_done = stack.pop()
        key = id(node)
        children = _children(node)
        if children_done:
            open_nodes.discard(key)
            sizes[key] = 1 + sum(sizes[id(child)] for child in children)
            if sizes[key] > MAX_NODES:
                raise error(
                    f"{name} holds more than {MAX_NODES} values once its aliases are expanded"
                    f" (line {node.start_mark.line + 1}); write the values out instead of nesting aliases"
                )
            continue
        if key in sizes:
            continue
        if key in open_nodes:
            raise error(f"{name} line {node.start_mark.line + 1}: an alias refers to its own anchor; remove it")
        if depth > MAX_DEPTH:
            raise error(f"{name} line {node.start_mark.line + 1}: nested more than {MAX_DEPTH} levels deep; flatten it")
        if unique_keys and isinstance(node, yaml.MappingNode):
            _refuse_duplicate_keys(node, name, error)
        open_nodes.add(key)
        stack.append((node, depth, True))
        stack.extend((child, depth + 1, False) for child in children if id(child) not in sizes)


def _children(node: yaml.Node) -> list[yaml.Node]:
    import yaml  # lazy: start-up time

    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def _refuse_duplicate_keys(node: yaml.MappingNode, name: str, error: type[InputError]) -> None:
    import yaml  # lazy: start-up time

    first: dict[tuple[str, str], yaml.Node] = {}
    for key, _value in node.value:
        if not isinstance(key, yaml.ScalarNode) or key.tag == _MERGE_TAG:
            continue
        earlier = first.get((key.tag, key.value))
        if earlier is not None:
            raise error(
                f"{name} line {key.start_mark.line + 1}: key {key.value!r} appears twice"
                f" (first on line {earlier.start_mark.line + 1}); keep one of them"
            )
        first[(key.tag, key.value)] = key
