"""Simple templates, evaluated without Jinja: the same results, at a fraction of the cost.

Most templates in flows read a value (``{{ step.output.id }}``), put a few into text, or
add a ``default``. Compiling each with Jinja costs about a millisecond (its code
generation), and importing Jinja a tenth of a second of a cold start. This module reads
a small subset of the template language and evaluates it directly:

- text with ``{{ … }}`` holes (no ``{%``, ``{#``, whitespace control or ``\\r``);
- in a hole: a name followed by ``.key``, ``['key']`` or ``[0]``; a literal (plain
  numbers, strings without escapes, true/false/none); the filters ``default`` (literal
  arguments), ``lower``, ``upper``, ``length``; ``+``/``-`` between numbers; one
  comparison (``<``, ``<=``, ``>``, ``>=``, ``==``, ``!=``) between scalars.

It refuses to guess. :func:`parse` returns None for anything outside that subset, and
:meth:`Simple.render` returns :data:`FALLBACK` for any value it does not fully understand
(a missing value that is not defaulted, a container where a scalar belongs, an attribute
Jinja could find on a Python object, a number too large, a text too long): the engine
then renders that template with Jinja, in the sandbox, which also says every error, so
errors read exactly as before. tests/runtime/test_simple_templates.py compares the two
paths on a corpus.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .bounds import MAX_DEPTH, MAX_INT_BITS, MAX_OUTPUT
from .problems import References

FALLBACK: Any = object()  # "render this one with Jinja"
_UNDEFINED: Any = object()  # what Jinja's Undefined would be
_SHORT_TEXT = 10_000  # a filter's text argument longer than this goes to Jinja (budgets)
_SCALARS = (str, int, float, bool, type(None))
# Names Jinja gives a meaning of its own (its globals, template specials, operators).
_RESERVED = frozenset(
    {
        "range",
        "dict",
        "lipsum",
        "cycler",
        "joiner",
        "namespace",
        "self",
        "loop",
        "super",
        "caller",
        "varargs",
        "kwargs",
        "and",
        "or",
        "not",
        "in",
        "is",
        "if",
        "else",
    }
)
_LITERALS = {"true": True, "false": False, "none": None, "True": True, "False": False}
_LITERALS["None"] = None
_TOKEN = re.compile(
    r"""\s*(?:
      (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<float>(?:0|[1-9]\d*)\.\d+)(?![\w.])
    | (?P<int>0|[1-9]\d*)(?![\w.])
    | '(?P<sq>[^'\\]*)'
    | "(?P<dq>[^"\\]*)"
    | (?P<op><=|>=|==|!=|[.\[\](),|+\-<>])
    )""",
    re.X,
)
_COMPARE = {
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
}
_FILTERS = frozenset({"default", "lower", "upper", "length"})

# An expression is a tuple: ("const", value) | ("path", root, keys) |
# ("filter", name, operand, args) | ("op", operator, left, right).
Expr = tuple[Any, ...]


class _NotSimple(Exception):
    pass


class _Tokens:
    def __init__(self, text: str) -> None:
        self.items: list[tuple[str, Any]] = []
        at = 0
        while at < len(text):
            if text[at:].strip() == "":
                break
            match = _TOKEN.match(text, at)
            if match is None:
                raise _NotSimple
            kind = match.lastgroup
            assert kind is not None
            value: Any = match.group(kind)
            if kind in ("sq", "dq"):
                kind = "str"
            elif kind == "int":
                value = int(value)
            elif kind == "float":
                value = float(value)
            self.items.append((kind, value))
            at = match.end()
        self.at = 0

    def peek(self) -> tuple[str, Any]:
        return self.items[self.at] if self.at < len(self.items) else ("end", None)

    def take(self, kind: str, value: Any = None) -> Any:
        found = self.peek()
        if found[0] != kind or (value is not None and found[1] != value):
            raise _NotSimple
        self.at += 1
        return found[1]

    def next_is(self, kind: str, value: Any = None) -> bool:
        found = self.peek()
        return found[0] == kind and (value is None or found[1] == value)


def _expression(tokens: _Tokens) -> Expr:
    left = _sum(tokens)
    kind, value = tokens.peek()
    if kind == "op" and value in _COMPARE:
        tokens.take("op")
        left = ("op", value, left, _sum(tokens))
        if tokens.peek()[0] == "op" and tokens.peek()[1] in _COMPARE:
            raise _NotSimple  # a chained comparison
    return left


def _sum(tokens: _Tokens) -> Expr:
    left = _filtered(tokens)
    while tokens.next_is("op", "+") or tokens.next_is("op", "-"):
        left = ("op", tokens.take("op"), left, _filtered(tokens))
    return left


def _filtered(tokens: _Tokens) -> Expr:
    node = _primary(tokens)
    while tokens.next_is("op", "|"):
        tokens.take("op")
        name = tokens.take("name")
        if name not in _FILTERS:
            raise _NotSimple
        args: list[Any] = []
        if tokens.next_is("op", "("):
            tokens.take("op")
            while not tokens.next_is("op", ")"):
                if args:
                    tokens.take("op", ",")
                args.append(_literal(tokens))
            tokens.take("op", ")")
        if name == "default":
            if len(args) > 2 or (len(args) == 2 and not isinstance(args[1], bool)):
                raise _NotSimple
        elif args:
            raise _NotSimple
        node = ("filter", name, node, tuple(args))
    return node


def _literal(tokens: _Tokens) -> Any:
    kind, value = tokens.peek()
    if kind in ("int", "float", "str"):
        tokens.take(kind)
        return value
    if kind == "name" and value in _LITERALS:
        tokens.take(kind)
        return _LITERALS[value]
    raise _NotSimple


def _primary(tokens: _Tokens) -> Expr:
    kind, value = tokens.peek()
    if kind != "name" or value in _LITERALS:
        return ("const", _literal(tokens))
    if value in _RESERVED:
        raise _NotSimple
    tokens.take("name")
    keys: list[tuple[str, Any]] = []
    while True:
        if tokens.next_is("op", "."):
            tokens.take("op")
            keys.append(("attr", tokens.take("name")))
            if keys[-1][1].startswith("_"):
                raise _NotSimple  # private and dunder names: the sandbox decides
        elif tokens.next_is("op", "["):
            tokens.take("op")
            kind, key = tokens.peek()
            if kind not in ("str", "int"):
                raise _NotSimple
            tokens.take(kind)
            tokens.take("op", "]")
            if isinstance(key, str) and key.startswith("_"):
                raise _NotSimple
            keys.append(("item", key))
        else:
            return ("path", value, tuple(keys))


def _reads(node: Expr, refs: References) -> None:
    """The names ``node`` reads, as analysis.references finds them in Jinja's tree."""
    kind = node[0]
    if kind == "path":
        refs.roots.add(node[1])
        if node[1] == "inputs" and node[2] and isinstance(node[2][0][1], str):
            refs.inputs.add(node[2][0][1])
    elif kind == "filter":
        _reads(node[2], refs)
    elif kind == "op":
        _reads(node[2], refs)
        _reads(node[3], refs)


@dataclass(frozen=True)
class Simple:
    """A template this module understands: its text and holes, and what it reads."""

    parts: tuple[str | Expr, ...]
    single: Expr | None  # the expression of a source that is exactly one {{ … }}
    refs: References
    # At most how many characters its filters build (Jinja counts them against MAX_BUILT).
    builds: int = 0

    def render(self, variables: Mapping[str, Any]) -> Any:
        """The template's value, or :data:`FALLBACK` when Jinja must say it."""
        if self.single is not None:
            value = _evaluate(self.single, variables)
            if value is _UNDEFINED or (isinstance(value, str) and len(value) > MAX_OUTPUT):
                return FALLBACK
            return _plain(value, 0)
        out: list[str] = []
        size = 0
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
                size += len(part)
                continue
            value = _evaluate(part, variables)
            if value is FALLBACK or not _printable(value):
                return FALLBACK
            text = str(value)
            size += len(text)
            if size > MAX_OUTPUT:
                return FALLBACK
            out.append(text)
        return "".join(out)


def parse(source: str) -> Simple | None:
    """The template ``source`` if it is simple, else None (Jinja's to compile)."""
    if "{%" in source or "{#" in source or "\r" in source:
        return None
    parts: list[str | Expr] = []
    at = 0
    try:
        while True:
            start = source.find("{{", at)
            if start < 0:
                if source[at:]:
                    parts.append(source[at:])
                break
            end = source.find("}}", start + 2)
            if end < 0:
                return None
            if source[at:start]:
                parts.append(source[at:start])
            body = source[start + 2 : end]
            if body[:1] in ("-", "+") or body[-1:] in ("-", "+") or "{" in body:
                return None  # whitespace control, or a brace Jinja may read differently
            tokens = _Tokens(body)
            expression = _expression(tokens)
            tokens.take("end")
            parts.append(expression)
            at = end + 2
    except _NotSimple:
        return None
    holes = [p for p in parts if not isinstance(p, str)]
    if not holes:
        return None  # no template at all: nothing to gain
    refs = References()
    for hole in holes:
        _reads(hole, refs)
    blank = all(p.strip() == "" for p in parts if isinstance(p, str))
    single = holes[0] if len(holes) == 1 and blank else None
    builds = sum(_filters(hole) for hole in holes) * _SHORT_TEXT
    return Simple(tuple(parts), single, refs, builds)


def _filters(node: Expr) -> int:
    if node[0] == "filter":
        return 1 + _filters(node[2])
    if node[0] == "op":
        return _filters(node[2]) + _filters(node[3])
    return 0


def _number(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value.bit_length() < MAX_INT_BITS - 1
    return isinstance(value, float)


def _printable(value: Any) -> bool:
    if isinstance(value, str):
        return True
    return value is None or isinstance(value, bool | float) or _number(value)


def _evaluate(node: Expr, variables: Mapping[str, Any]) -> Any:
    """The value of ``node``: _UNDEFINED where Jinja's would be undefined, FALLBACK where
    this module cannot be sure to match Jinja."""
    kind = node[0]
    if kind == "const":
        return node[1]
    if kind == "path":
        value = variables.get(node[1], _UNDEFINED)
        for how, key in node[2]:
            value = _step(value, how, key)
            if value is FALLBACK:
                return FALLBACK
        return value
    if kind == "filter":
        return _filter(node[1], _evaluate(node[2], variables), node[3])
    left, right = _evaluate(node[2], variables), _evaluate(node[3], variables)
    if left is FALLBACK or right is FALLBACK or _UNDEFINED in (left, right):
        return FALLBACK
    return _operate(node[1], left, right)


def _step(value: Any, how: str, key: Any) -> Any:
    """``value.key`` or ``value[key]`` as the sandbox reads it (Sandbox.getattr, getitem)."""
    if value is _UNDEFINED:
        return _UNDEFINED  # Undefined is chainable (sandbox.Undefined)
    if type(value) is dict:
        if key in value:
            return value[key]
    elif how == "item" and isinstance(key, int) and type(value) in (list, str):
        return value[key] if -len(value) <= key < len(value) else _UNDEFINED
    elif not isinstance(value, _SCALARS) and type(value) is not list:
        return FALLBACK  # not JSON data: Jinja knows what to do with it
    if isinstance(key, str) and hasattr(value, key):
        return FALLBACK  # Jinja would find an attribute (dict.items, str.upper, …)
    return _UNDEFINED


def _filter(name: str, value: Any, args: tuple[Any, ...]) -> Any:
    if value is FALLBACK:
        return FALLBACK
    if name == "default":
        fallback = args[0] if args else ""
        boolean = len(args) > 1 and args[1]
        if value is _UNDEFINED or (boolean and not value):
            value = fallback
        # Jinja measures a filter's result: a container may be too large, it decides.
        return value if _printable(value) and not _long(value) else FALLBACK
    if value is _UNDEFINED or _long(value):
        return FALLBACK
    if name == "length":
        return len(value) if type(value) in (str, list, dict) else FALLBACK
    if not _printable(value):
        return FALLBACK
    text = value if isinstance(value, str) else str(value)  # Jinja's soft_str
    return text.lower() if name == "lower" else text.upper()


def _long(value: Any) -> bool:
    return isinstance(value, str) and len(value) > _SHORT_TEXT


def _operate(operator: str, left: Any, right: Any) -> Any:
    if operator in ("+", "-"):
        if not (_number(left) and _number(right)):
            return FALLBACK  # text and lists: Jinja's budget measures what + builds
        result = left + right if operator == "+" else left - right
        return result if _number(result) or isinstance(result, float) else FALLBACK
    compare: Callable[[Any, Any], bool] = _COMPARE[operator]
    if operator in ("==", "!="):
        ok = _printable(left) and _printable(right)
    else:
        ok = (_number(left) and _number(right)) or (type(left) is str and type(right) is str)
    return compare(left, right) if ok else FALLBACK


def _plain(value: Any, level: int) -> Any:
    """A copy of ``value`` as the JSON a single-expression template returns (analysis.to_json),
    or FALLBACK for anything that is not plain JSON data."""
    if isinstance(value, str) or value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value if _number(value) else FALLBACK
    if isinstance(value, float):
        return value if math.isfinite(value) else FALLBACK
    if level >= MAX_DEPTH:
        return FALLBACK
    if type(value) is list:
        items = [_plain(v, level + 1) for v in value]
        return FALLBACK if any(i is FALLBACK for i in items) else items
    if type(value) is dict:
        if not all(type(k) is str for k in value):
            return FALLBACK
        found = {k: _plain(v, level + 1) for k, v in value.items()}
        return FALLBACK if any(v is FALLBACK for v in found.values()) else found
    return FALLBACK


__all__ = ["FALLBACK", "Simple", "parse"]
