"""The sandbox templates run in: Jinja2's immutable sandbox, with more taken away, and a
hook on every operation that can build something (see :mod:`.limits`)."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer

from .filters import bounded_items, guarded_filters, joined_size, replaced_size
from .limits import MAX_INT_BITS, current, refuse

# A width or precision of 4 digits or more, also after a %(name) key or a '.'.
_WIDTH = re.compile(r"%(?:\([^)]*\))?[-+ #0]*(?:\d*\.)?(?:\d{4,}|\*)")
_KEY = re.compile(r"%\(([^)]*)\)")
_PER_CONVERSION = 1_400  # what one %-conversion may add: width and precision under 1,000
_SEQUENCES = (str, bytes, list, tuple)
# Methods that build a string much larger than their inputs (or bytes, which are not JSON).
_UNSAFE_STR_METHODS = frozenset(
    {
        "format",
        "format_map",
        "center",
        "ljust",
        "rjust",
        "zfill",
        "expandtabs",
        "translate",
        "maketrans",
        "encode",
    }
)
REMOVED_GLOBALS = frozenset({"lipsum", "cycler", "joiner"})
# Statements that make a template a program, or collect output where the budget cannot see
# it: a macro calling itself twice doubles its output per level, a captured {% set %} body
# joins a whole loop's output in one allocation.
_STATEMENTS: dict[type[nodes.Node], str] = {
    nodes.Macro: "macro",
    nodes.CallBlock: "call",
    nodes.Block: "block",
    nodes.Extends: "extends",
    nodes.Include: "include",
    nodes.Import: "import",
    nodes.FromImport: "from ... import",
    nodes.AssignBlock: "set ... endset",
    nodes.FilterBlock: "filter",
}


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _formatted_size(fmt: str, args: Any) -> int:
    """An upper bound (give or take repr's escapes) of the length of ``fmt % args``."""
    budget = current()
    conversions = fmt.count("%")
    if isinstance(args, Mapping):
        keys = _KEY.findall(fmt)
        used = sum(budget.measure(args.get(key)) for key in keys)
        if conversions > len(keys):
            used += budget.measure(args)  # a plain %s prints the whole mapping
    else:
        used = budget.measure(args)
    return len(fmt) + used + conversions * _PER_CONVERSION


class Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})

    def __init__(self) -> None:
        # optimized=False: Jinja's optimizer evaluates constant filter calls while it
        # compiles, outside any rendering's budget (a chain of filters on a literal).
        super().__init__(
            undefined=Undefined, autoescape=False, keep_trailing_newline=True, optimized=False
        )
        self.filters = guarded_filters() | HOOKS
        for unsafe in REMOVED_GLOBALS:
            self.globals.pop(unsafe, None)
        self.globals["range"] = _bounded_range

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        budget = current()
        budget.tick()
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                if isinstance(seq, _SEQUENCES) and _is_int(times):
                    budget.expect(budget.measure(seq) * max(times, 0), "repeating a value")
            ints = _is_int(left) and _is_int(right)
            if ints and left.bit_length() + right.bit_length() > MAX_INT_BITS + 1:
                raise refuse(f"multiplying integers of {MAX_INT_BITS} bits or more")
        elif operator == "+":
            if isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES):
                budget.expect(budget.measure(left) + budget.measure(right), "+")
        elif operator == "**":
            ints = _is_int(left) and _is_int(right) and right > 0 and abs(left) > 1
            if ints and right * math.log2(abs(left)) > MAX_INT_BITS:
                raise refuse(f"{left} ** {right}")
        elif operator == "%" and isinstance(left, str):
            if _WIDTH.search(left):
                raise refuse("%-formatting with a large width")
            budget.expect(_formatted_size(left, right), "%-formatting")
        result = super().call_binop(context, operator, left, right)
        if _is_int(result) and result.bit_length() > MAX_INT_BITS:
            raise refuse(f"an integer of more than {MAX_INT_BITS} bits")
        return result

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        # The double underscores are Jinja's: a template may pass keywords named self/context.
        budget = current()
        budget.tick()
        owner = getattr(__obj, "__self__", None)
        if owner is not None and not isinstance(owner, type):
            budget.heavy(owner)  # a method works on its object: a large one off the loop
        if isinstance(owner, str):
            method = getattr(__obj, "__name__", "")
            if method == "join" and args:
                args = (list(args[0]), *args[1:])
                budget.expect(joined_size(args[0], owner), "join()")
            elif method == "replace" and len(args) >= 2:
                count = args[2] if len(args) > 2 else kwargs.get("count", -1)
                budget.expect(replaced_size(owner, str(args[0]), str(args[1]), count), "replace()")
        result = super().call(__context, __obj, *args, **kwargs)
        if isinstance(result, Iterator):
            return bounded_items(result, "a call")
        return budget.built_value(result, "a call")

    def getattr(self, obj: Any, attribute: str) -> Any:
        # Merge fields are JSON: `{{ response.items }}` is the response's "items", not the
        # dict method Jinja would find first. Methods stay reachable when no key hides them.
        if isinstance(obj, dict) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def wrap_str_format(self, value: Any) -> None:
        # The sandbox would hand out a guarded str.format, but a width of 10**9 still
        # allocates a gigabyte before any check; templates get no format methods at all.
        return None

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, str | bytes) and attr in _UNSAFE_STR_METHODS:
            return False
        if isinstance(obj, int) and attr == "to_bytes":
            return False
        return bool(super().is_safe_attribute(obj, attr, value))


def _bounded_range(*args: int) -> range:
    items = range(*args)
    current().spend(len(items), "range()")
    return items


# The hooks Bounded routes templates through. They are filters, not calls: Jinja calls a
# filter directly, where a call from a sandboxed template goes through Sandbox.call.
_SCALARS = frozenset({str, int, float, bool, type(None)})


def _iterate(iterable: Iterable[Any]) -> Iterator[Any]:
    """What every ``{% for %}`` loops over: each item spends budget."""
    budget = current()
    for item in iterable:
        budget.spend(1, "loops")
        yield item


def _concat(*values: Any) -> str:
    """What ``a ~ b`` becomes: refused before it is built if too large."""
    budget = current()
    budget.expect(sum(budget.measure(v) for v in values), "~")
    return "".join(map(str, values))


def _literal(value: Any) -> Any:
    """What a list, tuple or dict literal becomes."""
    return current().literal(value)


def _slice(value: Any, start: Any, stop: Any, step: Any) -> Any:
    """What ``x[a:b]`` becomes: a copy, counted like any value a template builds."""
    budget = current()
    budget.tick()
    return budget.built_value(value[start:stop:step], "a slice")


def _output(value: Any) -> Any:
    """What ``{{ x }}`` in text prints: a container is measured before it is printed (a
    text is counted as it is written, a number is short)."""
    if type(value) in _SCALARS:
        return value
    budget = current()
    budget.tick()
    budget.heavy(value)
    return budget.built_value(value, "printing a value")


HOOKS = {
    "_steprun_iterate": _iterate,
    "_steprun_concat": _concat,
    "_steprun_literal": _literal,
    "_steprun_slice": _slice,
    "_steprun_output": _output,
}


def _hook(name: str, node: nodes.Expr, *args: nodes.Expr) -> nodes.Filter:
    return nodes.Filter(node, f"_steprun_{name}", list(args), [], None, None)


class Bounded(NodeTransformer):
    """Refuses statements that are not data, and routes loops, ``~``, literals and output
    through the budget."""

    def generic_visit(self, node: nodes.Node, *args: Any, **kwargs: Any) -> nodes.Node:
        tag = _STATEMENTS.get(type(node))
        if tag is not None or (isinstance(node, nodes.For) and node.recursive):
            what = f"{{% {tag} %}}" if tag else "a recursive loop"
            raise TemplateSyntaxError(
                f"{what} is not allowed: templates are data, not code", node.lineno
            )
        return super().generic_visit(node, *args, **kwargs)

    def visit_For(self, node: nodes.For) -> nodes.Node:
        loop = self.generic_visit(node)
        assert isinstance(loop, nodes.For)
        assert isinstance(loop.iter, nodes.Expr)
        loop.iter = _hook("iterate", loop.iter)
        return loop

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        concat = self.generic_visit(node)
        assert isinstance(concat, nodes.Concat)
        return _hook("concat", *concat.nodes)

    def visit_List(self, node: nodes.List) -> nodes.Node:
        return _hook("literal", self._visited(node))

    def visit_Dict(self, node: nodes.Dict) -> nodes.Node:
        return _hook("literal", self._visited(node))

    def visit_Tuple(self, node: nodes.Tuple) -> nodes.Node:
        tuple_ = self._visited(node)
        assert isinstance(tuple_, nodes.Tuple)
        return tuple_ if tuple_.ctx != "load" else _hook("literal", tuple_)

    def visit_Getitem(self, node: nodes.Getitem) -> nodes.Node:
        # Jinja slices in place (x[a:b] never reaches Sandbox.getitem).
        item = self._visited(node)
        assert isinstance(item, nodes.Getitem)
        if item.ctx != "load" or not isinstance(item.arg, nodes.Slice):
            return item
        bounds = (item.arg.start, item.arg.stop, item.arg.step)
        return _hook("slice", item.node, *(b or nodes.Const(None) for b in bounds))

    def visit_Output(self, node: nodes.Output) -> nodes.Node:
        output = self.generic_visit(node)
        assert isinstance(output, nodes.Output)
        output.nodes = [
            n if isinstance(n, nodes.TemplateData) else _hook("output", n) for n in output.nodes
        ]
        return output

    def _visited(self, node: nodes.Expr) -> nodes.Expr:
        visited = self.generic_visit(node)
        assert isinstance(visited, nodes.Expr)
        return visited


def unwrap_output(node: nodes.Node) -> nodes.Node:
    """The expression inside a ``bounded_output`` hook (a single-expression template keeps
    its value as it is: it is returned, not printed)."""
    if isinstance(node, nodes.Filter) and node.name == "_steprun_output":
        assert node.node is not None
        return node.node
    return node


class Undefined(StrictUndefined):
    """Strict, but chainable: `{{ check.x | default('none') }}` works before `check` is
    written (a retry loop's first pass), while using a missing value still fails clearly."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self

    def __getitem__(self, *args: Any, **kwargs: Any) -> Any:  # jinja's own signature
        return self


__all__ = ["REMOVED_GLOBALS", "Bounded", "Sandbox", "SecurityError", "Undefined", "unwrap_output"]
