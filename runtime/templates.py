"""``{{ … }}`` templates in step configs: data in, data out, never code.

Templates run in Jinja2's immutable sandbox (no ``__class__`` escapes, no mutation) with
more taken away: no ``attr`` filter, no ``lipsum``/``cycler``/``joiner``, no ``str.format``
or padding methods, and a cost budget, so ``range(10**9)``, ``'x' * 10**9``, ``9 ** 9 ** 9``
or nested loops are refused instead of run. Templates see only ``inputs``, the merge fields
written so far and ``error``; they have no access to the environment, files or secrets.

A value that is exactly one ``{{ expression }}`` keeps its JSON type; anything else renders
to a string. A rendered value is never rendered again: API output that happens to contain
``{{`` stays text.
"""

from __future__ import annotations

import contextvars
import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from jinja2 import StrictUndefined, TemplateSyntaxError, nodes
from jinja2.environment import TemplateExpression
from jinja2.exceptions import SecurityError, TemplateError, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from markupsafe import Markup

MAX_OUTPUT = 1_000_000  # characters in one rendered value
MAX_RANGE_ITEMS = 100_000  # items produced by range() in one rendering, all calls together
MAX_POWER_BITS = 4096

_WIDTH = re.compile(r"%[-+ #0]*(\d{4,}|\*)")
_UNSAFE_STR_METHODS = frozenset(
    {"format", "format_map", "center", "ljust", "rjust", "zfill", "expandtabs"}
)

_budget: contextvars.ContextVar[list[int]] = contextvars.ContextVar("steprun_template_budget")


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


def _bounded_range(*args: int) -> range:
    items = range(*args)
    spent = _budget.get(None)
    if spent is not None:
        spent[0] += len(items)
        if spent[0] > MAX_RANGE_ITEMS:
            raise _refuse(f"range() over more than {MAX_RANGE_ITEMS} items in one template")
    elif len(items) > MAX_RANGE_ITEMS:
        raise _refuse(f"range({len(items)})")
    return items


def _capped(name: str, limit: int) -> Callable[..., Any]:
    def check(value: Any, width: int = 80, *args: Any, **kwargs: Any) -> Any:
        if isinstance(width, int) and width > limit:
            raise _refuse(f"{name}({width})")
        return _FILTERS[name](value, width, *args, **kwargs)

    return check


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**", "%"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        if operator == "*":
            for seq, times in ((left, right), (right, left)):
                sized = isinstance(seq, str | list | tuple) and isinstance(times, int)
                if sized and len(seq) * times > MAX_OUTPUT:
                    raise _refuse("repeating a value that many times")
        elif operator == "**":
            ints = isinstance(left, int) and isinstance(right, int) and right > 0
            if ints and max(abs(left), 2).bit_length() * right > MAX_POWER_BITS:
                raise _refuse(f"{left} ** {right}")
        elif operator == "%" and isinstance(left, str) and _WIDTH.search(left):
            raise _refuse("%-formatting with a large width")
        return super().call_binop(context, operator, left, right)

    def wrap_str_format(self, value: Any) -> None:
        # The sandbox would hand out a guarded str.format, but a width of 10**9 still
        # allocates a gigabyte before any check; templates get no format methods at all.
        return None

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, str) and attr in _UNSAFE_STR_METHODS:
            return False
        return bool(super().is_safe_attribute(obj, attr, value))


_FILTERS: dict[str, Any] = {}


@dataclass
class References:
    """What a template reads: root names, and the input names it reads."""

    roots: set[str] = field(default_factory=set)
    inputs: set[str] = field(default_factory=set)
    reads_all_inputs: bool = False


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
        env = _Sandbox(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True)
        _FILTERS.update(env.filters)
        for unsafe in ("attr", "format"):
            env.filters.pop(unsafe, None)
        env.filters["center"] = _capped("center", 10_000)
        env.filters["indent"] = _capped("indent", 1_000)
        env.filters["slice"] = _capped("slice", 10_000)
        for unsafe in ("lipsum", "cycler", "joiner"):
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
            tree = self.env.parse(source)
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
        token = _budget.set([0])
        try:
            result = fn(variables)
        except UndefinedError as exc:
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
                    return template.render(variables)
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
    for getter in _input_reads(tree):
        if getter is None:
            refs.reads_all_inputs = True
        else:
            refs.inputs.add(getter)
    refs.roots -= set(env.globals)
    return refs


def _unknown_names(env: _Sandbox, tree: nodes.Template, source: str) -> TemplateProblem | None:
    """Unknown filters and tests: Jinja finds them only when generating code, we say so early."""
    for node in tree.find_all((nodes.Filter, nodes.Test)):
        assert isinstance(node, nodes.Filter | nodes.Test)
        known = env.filters if isinstance(node, nodes.Filter) else env.tests
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


def _input_reads(tree: nodes.Template) -> Iterator[str | None]:
    """Input names read as ``inputs.x`` / ``inputs['x']``; None for any other use of inputs."""
    seen: set[int] = set()
    for node in tree.find_all((nodes.Getattr, nodes.Getitem)):
        assert isinstance(node, nodes.Getattr | nodes.Getitem)
        target = node.node
        if isinstance(target, nodes.Name) and target.name == "inputs":
            seen.add(id(target))
            if isinstance(node, nodes.Getattr):
                yield node.attr
            elif isinstance(node.arg, nodes.Const) and isinstance(node.arg.value, str):
                yield node.arg.value
            else:
                yield None
    for name in tree.find_all(nodes.Name):
        if name.name == "inputs" and name.ctx == "load" and id(name) not in seen:
            yield None


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
