"""``{{ … }}`` templates in step configs: data in, data out, never code.

Templates run in Jinja2's immutable sandbox (no ``__class__`` escapes, no mutation) with
more taken away: no ``attr``/``format``/``urlize`` filters, no ``lipsum``/``cycler``/``joiner``,
no ``str.format``, padding or ``translate`` methods, no macros, blocks, includes or captured
``{% set %}``/``{% filter %}`` bodies, and a cost budget: every string or list a template
builds (with an operator, ``~``, a filter or a method) stays under :data:`MAX_OUTPUT`, loops
and ``range()`` together make at most :data:`MAX_ITERATIONS` steps, and one rendering stops
after :data:`MAX_SECONDS`. So ``range(10**9)``, ``'x' * 10**9``, ``9 ** 9 ** 9``, nested
loops or a ``replace`` that multiplies its input are refused instead of run. Templates see
only ``inputs``, the merge fields written so far and ``error``; they have no access to the
environment, files or secrets.

A value that is exactly one ``{{ expression }}`` keeps its JSON type; anything else renders
to a string. A rendered value is never rendered again: API output that happens to contain
``{{`` stays text.
"""

from __future__ import annotations

import contextvars
import functools
import itertools
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes, pass_environment, pass_eval_context
from jinja2.environment import TemplateExpression
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError
from jinja2.filters import make_attrgetter
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.visitor import NodeTransformer
from markupsafe import Markup

MAX_OUTPUT = 1_000_000  # characters in a rendered value, and in any value a template builds
MAX_ITERATIONS = 100_000  # loop iterations and range() items in one rendering, all together
MAX_SECONDS = 1.0  # wall time of one rendering
MAX_POWER_BITS = 4096

# A width or precision of 4 digits or more, also after a %(name) key or a '.'.
_WIDTH = re.compile(r"%(?:\([^)]*\))?[-+ #0]*(?:\d*\.)?(?:\d{4,}|\*)")
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
REMOVED_FILTERS = frozenset({"attr", "format", "urlize"})
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


class _Budget:
    """What one rendering may still spend: iterations, and time."""

    __slots__ = ("deadline", "spent")

    def __init__(self) -> None:
        self.spent = 0
        self.deadline = time.monotonic() + MAX_SECONDS

    def spend(self, items: int, what: str) -> None:
        self.spent += items
        if self.spent > MAX_ITERATIONS:
            raise _refuse(f"{what} over more than {MAX_ITERATIONS} items in one template")
        if time.monotonic() > self.deadline:
            raise SecurityError(f"the template ran for more than {MAX_SECONDS:g} s and was stopped")


_budget: contextvars.ContextVar[_Budget] = contextvars.ContextVar("steprun_template_budget")


def is_template(value: str) -> bool:
    return "{{" in value or "{%" in value


class TemplateProblem(Exception):
    """A template cannot be compiled or rendered. ``message`` is for people."""

    def __init__(self, message: str, *, code: str = "template_error") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def _refuse(what: str) -> SecurityError:
    return SecurityError(f"{what} is too costly for a template and was refused")


def _current() -> _Budget:
    return _budget.get(None) or _Budget()


def _size(value: Any, limit: int = MAX_OUTPUT) -> int:
    """About how many characters ``value`` takes as text; stops counting past ``limit``.

    Counts references, not objects: ``[s] * n`` is n times as large as ``s`` once printed,
    joined or serialized, even though it holds one string.
    """
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, dict):
        items: Iterable[Any] = itertools.chain(value.keys(), value.values())
    elif isinstance(value, list | tuple):
        items = value
    else:
        return 1
    total = 2
    for item in items:
        total += 2 + _size(item, limit - total)
        if total > limit:
            break
    return total


def _check(size: int, what: str) -> None:
    if size > MAX_OUTPUT:
        raise _refuse(f"{what} building more than {MAX_OUTPUT} characters")


def _bounded_range(*args: int) -> range:
    items = range(*args)
    _current().spend(len(items), "range()")
    return items


def _replaced_size(s: str, old: str, new: str, count: Any = -1) -> int:
    times = s.count(old) if old else len(s) + 1
    if isinstance(count, int) and count >= 0:
        times = min(times, count)
    return len(s) + times * max(len(new) - len(old), 0)


def _capped(name: str, param: str, limit: int) -> Callable[..., Any]:
    """A filter whose argument ``param`` (positional or keyword) may not exceed ``limit``."""

    original = _FILTERS[name]
    # A filter marked pass_eval_context (slice is) gets the context before its value.
    at = 2 if hasattr(original, "jinja_pass_arg") else 1

    @functools.wraps(original)  # keeps that marker
    def check(*args: Any, **kwargs: Any) -> Any:
        amount = kwargs.get(param, args[at] if len(args) > at else None)
        if isinstance(amount, int) and amount > limit:
            raise _refuse(f"{name}({amount})")
        return original(*args, **kwargs)

    return check


@pass_eval_context
def _join(eval_ctx: Any, value: Iterable[Any], d: str = "", attribute: Any = None) -> Any:
    items = list(value)
    _check(_size(items) + len(str(d)) * len(items), "join()")
    return _FILTERS["join"](eval_ctx, items, d, attribute)


@pass_eval_context
def _replace(eval_ctx: Any, s: Any, old: Any, new: Any, count: Any = None) -> Any:
    _check(_replaced_size(str(s), str(old), str(new), count), "replace()")
    return _FILTERS["replace"](eval_ctx, s, old, new, count)


def _indent(s: Any, width: Any = 4, first: bool = False, blank: bool = False) -> Any:
    text = str(s)
    pad = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    _check(len(text) + (text.count("\n") + 1) * pad, "indent()")
    return _FILTERS["indent"](s, width, first, blank)


@pass_environment
def _wordwrap(environment: Any, s: Any, width: Any = 79, *args: Any, **kwargs: Any) -> Any:
    text = str(s)
    wrapstring = kwargs.get("wrapstring", args[1] if len(args) > 1 else None)
    breaks = len(text) // max(width, 1) if isinstance(width, int) else len(text)
    breaks += sum(1 for c in text if c.isspace() or c == "-") + 1
    newline = environment.newline_sequence if wrapstring is None else str(wrapstring)
    _check(len(text) + min(breaks, len(text) + 1) * len(newline), "wordwrap()")
    return _FILTERS["wordwrap"](environment, s, width, *args, **kwargs)


@pass_eval_context
def _tojson(eval_ctx: Any, value: Any, indent: Any = None) -> Any:
    pad = len(indent) if isinstance(indent, str) else indent if isinstance(indent, int) else 0
    if pad > 16:
        raise _refuse(f"tojson(indent={pad})")
    return _FILTERS["tojson"](eval_ctx, value, indent)


@pass_environment
def _sum(environment: Any, iterable: Iterable[Any], attribute: Any = None, start: Any = 0) -> Any:
    values = list(iterable)
    if attribute is not None:
        values = list(map(make_attrgetter(environment, attribute), values))
    if not all(isinstance(v, int | float) for v in (start, *values)):
        # sum() of lists copies the growing total once per item: quadratic.
        built = _size(values) + _size(start)
        _check(built, "sum()")
        if len(values) * built > 100 * MAX_OUTPUT:
            raise _refuse(f"sum() of {len(values)} lists")
    return _FILTERS["sum"](environment, values, start=start)


def _built(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    """The filter, refusing a result larger than MAX_OUTPUT (so growth cannot compound)."""

    @functools.wraps(original)  # keeps Jinja's pass_eval_context/pass_environment marker
    def checked(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        _check(_size(result), f"the {name} filter")
        return result

    return checked


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                sized = isinstance(seq, _SEQUENCES) and isinstance(times, int)
                if sized and _size(seq) * times > MAX_OUTPUT:
                    raise _refuse("repeating a value that many times")
        elif operator == "+":
            if isinstance(left, _SEQUENCES) and isinstance(right, _SEQUENCES):
                _check(_size(left) + _size(right), "+")
        elif operator == "**":
            ints = isinstance(left, int) and isinstance(right, int) and right > 0
            if ints and max(abs(left), 2).bit_length() * right > MAX_POWER_BITS:
                raise _refuse(f"{left} ** {right}")
        elif operator == "%" and isinstance(left, str) and _WIDTH.search(left):
            raise _refuse("%-formatting with a large width")
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        # The double underscores are Jinja's: a template may pass keywords named self/context.
        _current().spend(0, "calls")  # spends nothing: only looks at the clock
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str):
            method = getattr(__obj, "__name__", "")
            if method == "join" and args:
                args = (list(args[0]), *args[1:])
                _check(_size(args[0]) + len(owner) * len(args[0]), "join()")
            elif method == "replace" and len(args) >= 2:
                count = args[2] if len(args) > 2 else kwargs.get("count", -1)
                _check(_replaced_size(owner, str(args[0]), str(args[1]), count), "replace()")
        result = super().call(__context, __obj, *args, **kwargs)
        _check(_size(result), "a call")
        return result

    def bounded_iter(self, iterable: Iterable[Any]) -> Iterator[Any]:
        """What every ``{% for %}`` loops over (see _Bounded): each item spends budget."""
        budget = _current()
        for item in iterable:
            budget.spend(1, "loops")
            yield item

    def bounded_concat(self, *values: Any) -> str:
        """What ``a ~ b`` becomes (see _Bounded): refused before it is built if too large."""
        _check(sum(_size(v) for v in values), "~")
        return "".join(map(str, values))

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


class _Bounded(NodeTransformer):
    """Refuses statements that are not data, and routes loops and ``~`` through the budget."""

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
        loop.iter = nodes.Call(
            nodes.EnvironmentAttribute("bounded_iter"), [loop.iter], [], None, None
        )
        return loop

    def visit_Concat(self, node: nodes.Concat) -> nodes.Node:
        concat = self.generic_visit(node)
        assert isinstance(concat, nodes.Concat)
        return nodes.Call(
            nodes.EnvironmentAttribute("bounded_concat"), concat.nodes, [], None, None
        )


_FILTERS: dict[str, Any] = {}


@dataclass
class References:
    """What a template reads: root names, and the input names it reads."""

    roots: set[str] = field(default_factory=set)
    inputs: set[str] = field(default_factory=set)


class _Undefined(StrictUndefined):
    """Strict, but chainable: `{{ check.x | default('none') }}` works before `check` is
    written (a retry loop's first pass), while using a missing value still fails clearly."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self

    def __getitem__(self, *args: Any, **kwargs: Any) -> Any:  # jinja's own signature
        return self


@dataclass
class _Parsed:
    """One parse of a template source, shared by checking, analysis and compiling."""

    tree: nodes.Template | None
    problem: TemplateProblem | None
    refs: References
    expression: nodes.Expr | None  # set when the source is exactly one {{ expression }}


class Templates:
    """Compiles and renders templates for one runtime; every source is parsed once."""

    def __init__(self) -> None:
        env = _Sandbox(undefined=_Undefined, autoescape=False, keep_trailing_newline=True)
        _FILTERS.update(env.filters)
        for unsafe in REMOVED_FILTERS:
            env.filters.pop(unsafe, None)
        env.filters["center"] = _capped("center", "width", 10_000)
        env.filters["slice"] = _capped("slice", "slices", 10_000)
        env.filters["batch"] = _capped("batch", "linecount", 10_000)
        env.filters.update(
            join=_join, replace=_replace, indent=_indent, wordwrap=_wordwrap, tojson=_tojson
        )
        env.filters["sum"] = _sum
        env.filters.update({name: _built(name, fn) for name, fn in env.filters.items()})
        for unsafe in REMOVED_GLOBALS:
            env.globals.pop(unsafe, None)
        env.globals["range"] = _bounded_range
        self.env = env
        self._parsed: dict[str, _Parsed] = {}
        self._compiled: dict[str, Callable[[Mapping[str, Any]], Any]] = {}

    # -- static side -------------------------------------------------------------------

    def check(self, source: str) -> str | None:
        """A problem that stops ``source`` from compiling, as a sentence, or None.

        Compiles it too, so that a validated flow's first run pays no compile cost.
        """
        try:
            self._compile(source)
        except TemplateProblem as exc:
            return exc.message
        return None

    def references(self, source: str) -> References:
        """The names ``source`` reads (empty when it does not parse)."""
        return self._parse(source).refs

    def _parse(self, source: str) -> _Parsed:
        found = self._parsed.get(source)
        if found is not None:
            return found
        try:
            tree = _Bounded().visit(self.env.parse(source))
            tree.set_environment(self.env)
        except TemplateSyntaxError as exc:
            found = _Parsed(
                None,
                TemplateProblem(
                    f"template syntax error in {_show(source)}: {exc.message}",
                    code="template_syntax",
                ),
                References(),
                None,
            )
        else:
            found = _Parsed(
                tree,
                _unknown_names(self.env, tree, source),
                _references(self.env, tree),
                _single_expression(tree),
            )
        self._parsed[source] = found
        return found

    # -- rendering ---------------------------------------------------------------------

    def render(self, source: str, variables: Mapping[str, Any]) -> Any:
        fn = self._compile(source)
        token = _budget.set(_Budget())
        try:
            result = fn(variables)
        except UndefinedError as exc:
            name = re.match(r"'(?P<name>[^']+)' is undefined", str(exc))
            if name and name["name"] in REMOVED_GLOBALS:
                raise TemplateProblem(
                    f"{name['name']!r} is not available in templates (templates are data, "
                    f"not code) in {_show(source)}",
                    code="template_not_allowed",
                ) from None
            raise TemplateProblem(f"{_undefined_message(exc)} in {_show(source)}") from None
        except SecurityError as exc:
            raise TemplateProblem(
                f"{exc} in {_show(source)}; templates may only read inputs, merge fields and error",
                code="template_not_allowed",
            ) from None
        except RecursionError:
            raise TemplateProblem(f"{_show(source)} recurses too deeply") from None
        except (TemplateError, ArithmeticError, TypeError, ValueError, LookupError) as exc:
            raise TemplateProblem(f"{_show(source)} failed: {exc}") from None
        finally:
            _budget.reset(token)
        if isinstance(result, str) and len(result) > MAX_OUTPUT:
            raise TemplateProblem(
                f"{_show(source)} produced {len(result)} characters; the limit is {MAX_OUTPUT}"
            )
        return result

    def render_value(self, value: Any, variables: Mapping[str, Any]) -> Any:
        """Render every template string inside a JSON-like value."""
        if isinstance(value, str):
            return self.render(value, variables) if is_template(value) else value
        if isinstance(value, dict):
            return {k: self.render_value(v, variables) for k, v in value.items()}
        if isinstance(value, list):
            return [self.render_value(v, variables) for v in value]
        return value

    def _compile(self, source: str) -> Callable[[Mapping[str, Any]], Any]:
        found = self._compiled.get(source)
        if found is not None:
            return found
        parsed = self._parse(source)
        if parsed.problem is not None:
            raise parsed.problem
        assert parsed.tree is not None
        try:
            if parsed.expression is not None:
                # What Environment.compile_expression does, from the tree we already have.
                parsed.expression.set_environment(self.env)
                body = nodes.Template(
                    [nodes.Assign(nodes.Name("result", "store"), parsed.expression, lineno=1)],
                    lineno=1,
                )
                expression = TemplateExpression(self.env.from_string(body), False)

                def render(variables: dict[str, Any]) -> Any:
                    return _to_json(expression(**variables), source)
            else:
                template = self.env.from_string(parsed.tree)

                def render(variables: dict[str, Any]) -> Any:
                    # Counted as it is produced: a loop's output is refused at the limit,
                    # not after a gigabyte of it has been joined.
                    size, parts = 0, []
                    for chunk in template.generate(variables):
                        size += len(chunk)
                        if size > MAX_OUTPUT:
                            raise TemplateProblem(
                                f"{_show(source)} produced more than {MAX_OUTPUT} "
                                "characters, the limit for one value",
                                code="template_not_allowed",
                            )
                        parts.append(chunk)
                    return "".join(parts)
        except TemplateSyntaxError as exc:
            raise TemplateProblem(
                f"template syntax error in {_show(source)}: {exc.message}", code="template_syntax"
            ) from None
        except SecurityError as exc:
            raise TemplateProblem(
                f"{exc} in {_show(source)}", code="template_not_allowed"
            ) from None
        # Jinja copies every variable it is given into a new context; handing it only the
        # names this template reads keeps a render's cost independent of the run's size.
        roots = tuple(parsed.refs.roots)

        def fn(variables: Mapping[str, Any]) -> Any:
            return render({k: variables[k] for k in roots if k in variables})

        self._compiled[source] = fn
        return fn


def _references(env: _Sandbox, tree: nodes.Template) -> References:
    refs = References()
    assigned = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    for name in tree.find_all(nodes.Name):
        if name.ctx == "load" and name.name not in assigned:
            refs.roots.add(name.name)
    refs.inputs.update(_input_reads(tree))
    refs.roots -= set(env.globals)
    return refs


def _unknown_names(env: _Sandbox, tree: nodes.Template, source: str) -> TemplateProblem | None:
    """Unknown filters and tests: Jinja finds them only when generating code, we say so early."""
    for node in tree.find_all((nodes.Filter, nodes.Test)):
        assert isinstance(node, nodes.Filter | nodes.Test)
        known = env.filters if isinstance(node, nodes.Filter) else env.tests
        if isinstance(node, nodes.Filter) and node.name in REMOVED_FILTERS:
            return TemplateProblem(
                f"the {node.name!r} filter is not allowed in templates (templates are data, "
                f"not code) in {_show(source)}",
                code="template_not_allowed",
            )
        if node.name not in known:
            kind = "filter" if isinstance(node, nodes.Filter) else "test"
            return TemplateProblem(
                f"template syntax error in {_show(source)}: No {kind} named {node.name!r}.",
                code="template_syntax",
            )
    return None


def _single_expression(tree: nodes.Template) -> nodes.Expr | None:
    """The expression of a source that is exactly ``{{ expression }}`` (spaces around allowed)."""
    if len(tree.body) != 1 or not isinstance(tree.body[0], nodes.Output):
        return None
    parts = [
        n
        for n in tree.body[0].nodes
        if not (isinstance(n, nodes.TemplateData) and not n.data.strip())
    ]
    if len(parts) == 1 and not isinstance(parts[0], nodes.TemplateData):
        return parts[0]
    return None


def _input_reads(tree: nodes.Template) -> Iterator[str]:
    """Input names read as ``inputs.x`` / ``inputs['x']``; a computed name cannot be known
    before the run, and is checked (StrictUndefined) when the template renders."""
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        assert isinstance(node, nodes.Getattr | nodes.Getitem)
        target = node.node
        if isinstance(target, nodes.Name) and target.name == "inputs":
            if isinstance(node, nodes.Getattr):
                yield node.attr
            elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                yield node.arg.value


def _to_json(value: Any, source: str) -> Any:
    if isinstance(value, StrictUndefined):
        value.__str__()  # raises UndefinedError naming what is missing
    if isinstance(value, Markup):
        return str(value)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TemplateProblem(f"{_show(source)} produced {value}, which is not valid JSON")
        return value
    if isinstance(value, list | tuple | range):
        return [_to_json(v, source) for v in value]
    if isinstance(value, dict):
        return {str(k): _to_json(v, source) for k, v in value.items()}
    raise TemplateProblem(
        f"{_show(source)} produced a {type(value).__name__}, which is not a JSON value"
    )


def _undefined_message(exc: UndefinedError) -> str:
    text = str(exc)
    # Jinja says "'dict object' has no attribute 'x'"; say it in the flow's terms.
    match = re.match(r"'(?:dict object|\w+ object)' has no attribute '(?P<attr>[^']+)'", text)
    if match:
        return f"the value has no key {match['attr']!r}"
    match = re.match(r"'(?P<name>[^']+)' is undefined", text)
    if match:
        return f"{match['name']!r} is not defined here"
    return text


def _show(source: str) -> str:
    text = source if len(source) <= 80 else source[:77] + "..."
    return repr(text)


__all__ = ["MAX_OUTPUT", "References", "TemplateProblem", "Templates", "is_template"]
