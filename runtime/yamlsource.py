"""Load YAML flow files and remember the line of every value, so errors can point at it.

PyYAML's composer gives every node its position; we build plain Python data from the node
tree ourselves and record ``path -> line`` on the way. Building it ourselves also lets us
refuse what PyYAML accepts silently: duplicate keys (the last would win) and alias bombs
(a few lines expanding into millions of nodes).
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

from .errors import FlowInvalid, Problem

Path = tuple[str | int, ...]

MAX_BYTES = 1024 * 1024
MAX_NODES = 200_000
# How deep a document may nest, from its top. A step's config sits 3 levels down and may
# nest 100 more (validation says so precisely); anything deeper is refused while reading.
MAX_DEPTH = 128

_PLAIN_COLLECTIONS = frozenset({"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"})

try:  # libyaml is several times faster; both give the same nodes and marks.
    _Base: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
except AttributeError:  # pragma: no cover - depends on how PyYAML was built
    _Base = yaml.SafeLoader

_BOOL = "tag:yaml.org,2002:bool"
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


class _Loader(_Base):  # type: ignore[valid-type,misc]
    """YAML 1.2's core schema, not 1.1's: only true/false are booleans (1.1 also reads yes,
    no, on and off, so `message: no` or a country code `NO` would silently become false),
    and dates stay strings (1.1 makes `2024-01-01` a Python date, which is not JSON)."""

    # PyYAML keeps its resolver table in this class attribute; ours is a filtered copy.
    yaml_implicit_resolvers = {  # noqa: RUF012
        first: [(tag, regexp) for tag, regexp in resolvers if tag not in (_BOOL, _TIMESTAMP)]
        for first, resolvers in _Base.yaml_implicit_resolvers.items()
    }


_Loader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


@dataclass
class Source:
    """A loaded flow document: its data, where it came from, and the line of each path.

    ``text`` is the document as written; a flow given as data has none, and gets a YAML
    rendering of its data the first time something asks (the run store keeps it).
    """

    data: Any
    file: str
    written: str | None
    lines: dict[Path, int] = field(default_factory=dict)

    @functools.cached_property
    def text(self) -> str:
        if self.written is not None:
            return self.written
        # Made on demand, not in from_data: dumping YAML costs more than validating a
        # one-step flow, and Runtime.run_step builds one for every step it runs (the text
        # is only read by durable runs, which run_step never is).
        return str(yaml.safe_dump(dict(self.data), sort_keys=False))

    def line(self, path: Path) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        while True:
            found = self.lines.get(path)
            if found is not None or not path:
                return found
            path = path[:-1]


def dotted(path: Path) -> str:
    """``("steps", 2, "config", "model")`` -> ``steps[2].config.model``."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def too_large(file: str, size: int) -> FlowInvalid:
    return FlowInvalid(
        [
            Problem(
                f"the file is {size / 1e6:.1f} MB; a flow file may be at most "
                f"{MAX_BYTES // 1024} KiB. Keep data in separate files and pass their "
                "paths as inputs.",
                file=file,
            )
        ]
    )


def load_text(text: str, file: str) -> Source:
    size = len(text.encode("utf-8"))
    if size > MAX_BYTES:
        raise too_large(file, size)
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = exc.problem or "invalid YAML"
        context = f" ({exc.context})" if exc.context else ""
        raise FlowInvalid(
            [
                Problem(
                    f"YAML syntax error: {what}{context}. Check the indentation and quoting "
                    "on this line and the one before it.",
                    file=file,
                    line=line,
                )
            ]
        ) from None
    except yaml.YAMLError as exc:
        raise FlowInvalid([Problem(f"YAML syntax error: {exc}", file=file)]) from None
    finally:
        loader.dispose()
    if node is None:
        raise FlowInvalid(
            [Problem("the file is empty; a flow is a mapping with 'flow' and 'steps'", file=file)]
        )
    builder = _Builder(file)
    data = builder.build(node, ())
    if builder.problems:
        raise FlowInvalid(builder.problems)
    return Source(data=data, file=file, written=text, lines=builder.lines)


def from_data(data: Mapping[str, Any], file: str = "<dict>") -> Source:
    """A Source for a flow given as a dict (the embedding API): no lines to point at."""
    return Source(data=data, file=file, written=None)


class _Builder:
    def __init__(self, file: str) -> None:
        self.file = file
        self.lines: dict[Path, int] = {}
        self.problems: list[Problem] = []
        self.nodes = 0
        self._too_deep = False
        self._open: set[int] = set()  # the collections being built: an alias to one loops
        self._merged: dict[int, int] = {}  # mapping node -> how many pairs merge keys added
        # Constructs scalars with the same resolution rules PyYAML's safe loader uses.
        self._scalars = yaml.SafeLoader("")

    def problem(self, message: str, node: yaml.Node) -> None:
        self.problems.append(Problem(message, file=self.file, line=node.start_mark.line + 1))

    def build(self, node: yaml.Node, path: Path) -> Any:
        self.nodes += 1
        if self.nodes > MAX_NODES:
            if self.nodes == MAX_NODES + 1:  # once, however many more values there are
                self.problem(
                    f"the document expands to more than {MAX_NODES} values (through YAML "
                    "aliases or sheer size); a flow file should be small",
                    node,
                )
            return None
        if len(path) > MAX_DEPTH:
            # Deeper than any flow can be; building it would exhaust Python's stack.
            if not self._too_deep:
                self._too_deep = True
                self.problem(
                    f"values are nested more than {MAX_DEPTH} levels deep here; a step's "
                    "config may nest values at most 100 levels deep",
                    node,
                )
            return None
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.CollectionNode) and node.tag not in _PLAIN_COLLECTIONS:
            # We build lists and mappings ourselves, so a tag on one (!!python/object/apply,
            # !!set) would otherwise be dropped silently instead of refused like a scalar's.
            self.problem(
                f"cannot read this value: the tag {node.tag!r} is not allowed. Flow files use "
                "plain YAML (strings, numbers, booleans, lists, mappings) without !tags.",
                node,
            )
            return None
        if isinstance(node, yaml.CollectionNode):
            if id(node) in self._open:
                self.problem(
                    "a YAML alias here refers to a value that contains it (an anchor used "
                    "inside itself), which would make it endlessly deep; copy the values "
                    "instead",
                    node,
                )
                return None
            self._open.add(id(node))
            try:
                if isinstance(node, yaml.MappingNode):
                    return self._mapping(node, path)
                return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
            finally:
                self._open.discard(id(node))
        try:
            return self._scalars.construct_object(node, deep=True)
        except yaml.constructor.ConstructorError as exc:
            self.problem(
                f"cannot read this value: {exc.problem}. Flow files use plain YAML "
                "(strings, numbers, booleans, lists, mappings) without !tags.",
                node,
            )
        except ValueError:  # int() refuses more than 4,300 digits
            self.problem(
                f"this number has {len(node.value)} digits, more than a number may have "
                f"({sys.get_int_max_str_digits() or 'the limit'}); quote it to keep it as text",
                node,
            )
        return None

    def _mapping(self, node: yaml.MappingNode, path: Path) -> dict[Any, Any]:
        merged = self._merged.get(id(node))
        if merged is None:
            # Merge keys (<<) put the merged pairs first; the mapping's own keys follow and
            # override them, as YAML says. Remembered: an alias may bring the node back.
            own = sum(1 for key, _ in node.value if key.tag != "tag:yaml.org,2002:merge")
            self._scalars.flatten_mapping(node)
            merged = self._merged[id(node)] = len(node.value) - own
        result: dict[Any, Any] = {}
        first: dict[Any, yaml.Node] = {}  # each key's own (not merged) node, by key
        for index, (key_node, value_node) in enumerate(node.value):
            key = self.build(key_node, (*path, "<key>"))
            if isinstance(key, list | dict):
                self.problem(
                    "a mapping key must be a plain value, not a list or a mapping", key_node
                )
                continue
            if index >= merged:
                earlier = first.get(key)
                if earlier is not None:
                    self.problem(_duplicate(key_node, earlier), key_node)
                first.setdefault(key, key_node)
            child = (*path, _path_key(key))
            self.lines[child] = key_node.start_mark.line + 1
            result[key] = self.build(value_node, child)
        self.lines.pop((*path, "<key>"), None)
        return result


def _duplicate(again: yaml.Node, first: yaml.Node) -> str:
    line = first.start_mark.line + 1
    if isinstance(again, yaml.ScalarNode) and isinstance(first, yaml.ScalarNode):
        if again.value != first.value:  # 1 and true, 1 and 1.0: one key to Python
            return (
                f"key {again.value} is the same key as {first.value} on line {line} "
                f"({again.value} equals {first.value} once read); quote them "
                f"('{first.value}', '{again.value}') to keep both as text, or remove one"
            )
        return (
            f"key {again.value!r} appears twice in the same mapping (first on line {line}); "
            "YAML would silently keep only the last one. Remove or rename one of them."
        )
    return f"this key appears twice in the same mapping (first on line {line}); remove one"


def _path_key(key: Any) -> str | int:
    return key if isinstance(key, str | int) and not isinstance(key, bool) else str(key)


__all__ = ["MAX_BYTES", "Source", "dotted", "from_data", "load_text", "too_large"]
