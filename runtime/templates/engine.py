"""Compiling and rendering templates: each source parsed once, each rendering budgeted.

A simple template (:mod:`.simple`: values, text with holes, ``default``, …) is read and
evaluated without Jinja; anything else, and any value the simple path is not sure of, is
compiled by Jinja in the sandbox (imported on first need), once per source.

A step's config renders on the event loop while it is quick. One that is still running
after :data:`~.limits.ON_LOOP_SECONDS` (or that works on a large value) starts again on a
worker thread, where the rest of its second runs without holding up the other runs of the
process, and where a step's or run's timeout stops it at its next operation. Templates
have no effects, so rendering one again is safe.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import simple
from .bounds import MAX_BUILT, MAX_OUTPUT
from .problems import References, TemplateProblem, show
from .simple import Simple

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

    from jinja2 import nodes

    from .limits import Budget
    from .sandbox import Sandbox

_WORKERS = 2  # threads per runtime for renderings that outgrow the loop


def is_template(value: str) -> bool:
    return "{{" in value or "{%" in value


@dataclass
class _Parsed:
    """One parse of a template source, shared by checking, analysis and compiling."""

    tree: nodes.Template | None
    problem: TemplateProblem | None
    refs: References
    expression: nodes.Expr | None  # set when the source is exactly one {{ expression }}


# How many template sources each process-wide cache holds before it starts over.
MAX_CACHED = 10_000


class _Compiled:
    """What compiling costs, kept once per process: a template's source always compiles to
    the same thing (the sandbox has no per-runtime settings), so a runtime made for each
    request, or each of several runtimes, compiles a template no other has compiled."""

    def __init__(self) -> None:
        self.env: Sandbox | None = None
        self.simple: dict[str, Simple | None] = {}
        self.parsed: dict[str, _Parsed] = {}
        self.compiled: dict[str, Callable[[Mapping[str, Any]], Any]] = {}

    def room(self, cache: dict[str, Any]) -> dict[str, Any]:
        if len(cache) >= MAX_CACHED:
            cache.clear()
        return cache


_COMPILED = _Compiled()


def forget_compiled() -> None:
    """Empty the process's compiled templates (benchmarks measure compiling with it)."""
    for cache in (_COMPILED.simple, _COMPILED.parsed, _COMPILED.compiled):
        cache.clear()


class Templates:
    """Compiles and renders templates for one runtime; every source is parsed once per
    process (its compiled form is shared: it holds nothing of a runtime or a run).

    ``simple=False`` sends every template through Jinja (the benchmark's and the tests'
    reference for the simple path).
    """

    def __init__(self, *, simple: bool = True) -> None:
        self.simple = simple
        self._simple = _COMPILED.simple
        self._parsed = _COMPILED.parsed
        self._compiled = _COMPILED.compiled
        self._pool: ThreadPoolExecutor | None = None

    @property
    def env(self) -> Sandbox:
        """Jinja's sandbox, created (and Jinja imported) on first need."""
        if _COMPILED.env is None:
            from .sandbox import Sandbox

            _COMPILED.env = Sandbox()
        return _COMPILED.env

    def _quick(self, source: str) -> Simple | None:
        """``source`` read by the simple path, or None when it is Jinja's to compile."""
        if not self.simple:
            return None
        try:
            return self._simple[source]
        except KeyError:
            found = _COMPILED.room(self._simple)[source] = simple.parse(source)
            return found

    def close(self) -> None:
        """Let the worker threads go (a rendering still running stops within its second)."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    # -- static side -------------------------------------------------------------------

    def check(self, source: str) -> str | None:
        """A problem that stops ``source`` from compiling, as a sentence, or None.

        Compiles it too, so that a validated flow's first run pays no compile cost (a
        simple template has nothing to compile).
        """
        if self._quick(source) is not None:
            return None
        try:
            self._compile(source)
        except TemplateProblem as exc:
            return exc.message
        return None

    def references(self, source: str) -> References:
        """The names ``source`` reads (empty when it does not parse)."""
        quick = self._quick(source)
        return quick.refs if quick is not None else self._parse(source).refs

    def _parse(self, source: str) -> _Parsed:
        found = self._parsed.get(source)
        if found is not None:
            return found
        from jinja2 import TemplateSyntaxError

        from .analysis import references, single_expression, unknown_names
        from .sandbox import Bounded

        try:
            tree = Bounded().visit(self.env.parse(source))
            tree.set_environment(self.env)
        except (TemplateSyntaxError, ValueError) as exc:
            # ValueError: a number literal longer than Python reads (4,300 digits).
            message = exc.message if isinstance(exc, TemplateSyntaxError) else str(exc)
            problem = TemplateProblem(
                f"template syntax error in {show(source)}: {message}", code="template_syntax"
            )
            found = _Parsed(None, problem, References(), None)
        else:
            found = _Parsed(
                tree,
                unknown_names(self.env.filters, self.env.tests, tree, source),
                references(tree, self.env.globals),
                single_expression(tree),
            )
        _COMPILED.room(self._parsed)[source] = found
        return found

    # -- rendering ---------------------------------------------------------------------

    def render(self, source: str, variables: Mapping[str, Any]) -> Any:
        """Render one template, in this thread, within a fresh budget."""
        from .limits import Budget

        return self._in_budget(Budget(), self._render, source, variables)

    def render_value(self, value: Any, variables: Mapping[str, Any]) -> Any:
        """Render every template string inside a JSON-like value, in this thread."""
        from .limits import Budget

        return self._in_budget(Budget(), self._render_value, value, variables)

    async def render_config(self, value: Any, variables: Mapping[str, Any]) -> Any:
        """Render a step's config without holding up the event loop for long.

        A cancelled await (the step's or the run's timeout) stops a rendering that moved
        to a worker thread at its next operation.
        """
        quick = self._render_simply(value, variables, [0])
        if quick is not simple.FALLBACK:
            return quick
        from .limits import Budget, OffLoop

        budget = Budget(on_loop=True)
        try:
            return self._in_budget(budget, self._render_value, value, variables)
        except OffLoop:
            pass
        budget = Budget(started=budget.started)
        if self._pool is None:
            from concurrent.futures import ThreadPoolExecutor

            self._pool = ThreadPoolExecutor(_WORKERS, thread_name_prefix="steprun-templates")
        work = asyncio.get_running_loop().run_in_executor(
            self._pool, self._in_budget, budget, self._render_value, value, variables
        )
        try:
            return await work
        finally:
            budget.stopped = True

    def _render_simply(self, value: Any, variables: Mapping[str, Any], built: list[int]) -> Any:
        """``value`` rendered by the simple path alone, or FALLBACK if any template in it
        needs Jinja (then the whole config renders within one budget, as before).

        ``built`` counts what filters may build: a config that could come near the
        budget of one rendering (MAX_BUILT) is Jinja's, which enforces it."""
        if isinstance(value, str):
            if not is_template(value):
                return value
            quick = self._quick(value)
            if quick is None:
                return simple.FALLBACK
            built[0] += quick.builds
            if built[0] > MAX_BUILT // 2:
                return simple.FALLBACK
            return quick.render(variables)
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                out[key] = found = self._render_simply(item, variables, built)
                if found is simple.FALLBACK:
                    return found
            return out
        if isinstance(value, list):
            items = []
            for item in value:
                items.append(found := self._render_simply(item, variables, built))
                if found is simple.FALLBACK:
                    return found
            return items
        return value

    def _in_budget(self, budget: Budget, render: Callable[..., Any], *args: Any) -> Any:
        from . import limits

        token = limits.use(budget)
        try:
            return render(*args)
        finally:
            limits.release(token)

    def _render_value(self, value: Any, variables: Mapping[str, Any]) -> Any:
        if isinstance(value, str):
            return self._render(value, variables) if is_template(value) else value
        if isinstance(value, dict):
            return {k: self._render_value(v, variables) for k, v in value.items()}
        if isinstance(value, list):
            return [self._render_value(v, variables) for v in value]
        return value

    def _render(self, source: str, variables: Mapping[str, Any]) -> Any:
        quick = self._quick(source)
        if quick is not None and not quick.builds:
            # One with filters is Jinja's here: its budget counts what they build across
            # the rendering (render_config has its own count, see _render_simply).
            result = quick.render(variables)
            if result is not simple.FALLBACK:
                return result
        from jinja2.exceptions import SecurityError, TemplateError, UndefinedError

        from .analysis import undefined_message
        from .limits import TooCostly
        from .sandbox import REMOVED_GLOBALS

        fn = self._compile(source)
        try:
            result = fn(variables)
        except UndefinedError as exc:
            name = re.match(r"'(?P<name>[^']+)' is undefined", str(exc))
            if name and name["name"] in REMOVED_GLOBALS:
                raise TemplateProblem(
                    f"{name['name']!r} is not available in templates (templates are data, "
                    f"not code) in {show(source)}",
                    code="template_not_allowed",
                ) from None
            raise TemplateProblem(f"{undefined_message(exc)} in {show(source)}") from None
        except TooCostly as exc:
            raise TemplateProblem(f"{exc} in {show(source)}", code="template_not_allowed") from None
        except SecurityError as exc:
            raise TemplateProblem(
                f"{exc} in {show(source)}; templates may only read inputs, merge fields and error",
                code="template_not_allowed",
            ) from None
        except RecursionError:
            raise TemplateProblem(f"{show(source)} recurses too deeply") from None
        except (TemplateError, ArithmeticError, TypeError, ValueError, LookupError) as exc:
            raise TemplateProblem(f"{show(source)} failed: {exc}") from None
        if isinstance(result, str) and len(result) > MAX_OUTPUT:
            raise TemplateProblem(
                f"{show(source)} produced {len(result)} characters; the limit is {MAX_OUTPUT}"
            )
        return result

    def _compile(self, source: str) -> Callable[[Mapping[str, Any]], Any]:
        found = self._compiled.get(source)
        if found is not None:
            return found
        parsed = self._parse(source)
        if parsed.problem is not None:
            raise parsed.problem
        from jinja2 import TemplateSyntaxError
        from jinja2.exceptions import SecurityError

        try:
            render = self._renderer(source, parsed)
        except TemplateSyntaxError as exc:
            raise TemplateProblem(
                f"template syntax error in {show(source)}: {exc.message}", code="template_syntax"
            ) from None
        except SecurityError as exc:
            raise TemplateProblem(f"{exc} in {show(source)}", code="template_not_allowed") from None
        # Jinja copies every variable it is given into a new context; handing it only the
        # names this template reads keeps a render's cost independent of the run's size.
        roots = tuple(parsed.refs.roots)

        def fn(variables: Mapping[str, Any]) -> Any:
            return render({k: variables[k] for k in roots if k in variables})

        _COMPILED.room(self._compiled)[source] = fn
        return fn

    def _renderer(self, source: str, parsed: _Parsed) -> Callable[[dict[str, Any]], Any]:
        from jinja2 import nodes
        from jinja2.environment import TemplateExpression

        from .analysis import to_json

        if parsed.expression is not None:
            # What Environment.compile_expression does, from the tree we already have.
            parsed.expression.set_environment(self.env)
            body = nodes.Template(
                [nodes.Assign(nodes.Name("result", "store"), parsed.expression, lineno=1)],
                lineno=1,
            )
            expression = TemplateExpression(self.env.from_string(body), False)
            return lambda variables: to_json(expression(**variables), source)
        assert parsed.tree is not None
        template = self.env.from_string(parsed.tree)

        def render(variables: dict[str, Any]) -> Any:
            # Counted as it is produced: a loop's output is refused at the limit, not
            # after a gigabyte of it has been joined.
            size, parts = 0, []
            for chunk in template.generate(variables):
                size += len(chunk)
                if size > MAX_OUTPUT:
                    raise TemplateProblem(
                        f"{show(source)} produced more than {MAX_OUTPUT} "
                        "characters, the limit for one value",
                        code="template_not_allowed",
                    )
                parts.append(chunk)
            return "".join(parts)

        return render


__all__ = ["MAX_CACHED", "Templates", "forget_compiled", "is_template"]
