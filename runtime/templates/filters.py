"""Jinja's filters, each made to ask the rendering's budget before it builds.

Every filter checks the clock, works on a large value only off the event loop, and has its
result measured (an iterator's items as they come). Filters whose result can be far
larger than their input (``replace``, ``join``, ``indent``, ...) say so before they run.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from jinja2 import pass_environment, pass_eval_context
from jinja2.filters import FILTERS, make_attrgetter

from .limits import MAX_INT_BITS, MAX_OUTPUT, current, refuse

REMOVED_FILTERS = frozenset({"attr", "format", "urlize"})
_MAX_INT_TEXT = MAX_INT_BITS * 3 // 10 + 10  # a longer text is no integer we would build
_MAX_PPRINT_COST = 2 * MAX_OUTPUT  # pprint re-reads a value once per level it is nested


def replaced_size(s: str, old: str, new: str, count: Any = -1) -> int:
    times = s.count(old) if old else len(s) + 1
    if isinstance(count, int) and count >= 0:
        times = min(times, count)
    return len(s) + times * max(len(new) - len(old), 0)


def joined_size(items: list[Any], separator: str) -> int:
    budget = current()
    return budget.measure(items) + len(separator) * len(items)


def _capped(name: str, param: str, limit: int) -> Callable[..., Any]:
    """A filter whose argument ``param`` (positional or keyword) may not exceed ``limit``."""

    original = FILTERS[name]
    # A filter marked pass_eval_context (slice is) gets the context before its value.
    at = 2 if hasattr(original, "jinja_pass_arg") else 1

    @functools.wraps(original)  # keeps that marker
    def check(*args: Any, **kwargs: Any) -> Any:
        amount = kwargs.get(param, args[at] if len(args) > at else None)
        if isinstance(amount, int) and amount > limit:
            raise refuse(f"{name}({amount})")
        return original(*args, **kwargs)

    return check


@pass_eval_context
def _join(eval_ctx: Any, value: Iterable[Any], d: str = "", attribute: Any = None) -> Any:
    items = list(value)
    current().expect(joined_size(items, str(d)), "join()")
    return FILTERS["join"](eval_ctx, items, d, attribute)


@pass_eval_context
def _replace(eval_ctx: Any, s: Any, old: Any, new: Any, count: Any = None) -> Any:
    current().expect(replaced_size(str(s), str(old), str(new), count), "replace()")
    return FILTERS["replace"](eval_ctx, s, old, new, count)


def _indent(s: Any, width: Any = 4, first: bool = False, blank: bool = False) -> Any:
    text = str(s)
    pad = len(width) if isinstance(width, str) else width if isinstance(width, int) else 0
    current().expect(len(text) + (text.count("\n") + 1) * pad, "indent()")
    return FILTERS["indent"](s, width, first, blank)


@pass_environment
def _wordwrap(environment: Any, s: Any, width: Any = 79, *args: Any, **kwargs: Any) -> Any:
    text = str(s)
    wrapstring = kwargs.get("wrapstring", args[1] if len(args) > 1 else None)
    breaks = len(text) // max(width, 1) if isinstance(width, int) else len(text)
    breaks += sum(1 for c in text if c.isspace() or c == "-") + 1
    newline = environment.newline_sequence if wrapstring is None else str(wrapstring)
    current().expect(len(text) + min(breaks, len(text) + 1) * len(newline), "wordwrap()")
    return FILTERS["wordwrap"](environment, s, width, *args, **kwargs)


@pass_eval_context
def _tojson(eval_ctx: Any, value: Any, indent: Any = None) -> Any:
    pad = len(indent) if isinstance(indent, str) else indent if isinstance(indent, int) else 0
    if pad > 16:
        raise refuse(f"tojson(indent={pad})")
    current().measure(value)  # refuses what is too deep before json recurses into it
    return FILTERS["tojson"](eval_ctx, value, indent)


def _pprint(value: Any) -> Any:
    size, height = current().shape(value)
    if size * (height + 1) > _MAX_PPRINT_COST:
        raise refuse(f"pprint of a value of {size} characters nested {height} levels deep")
    return FILTERS["pprint"](value)


def _int(value: Any, default: int = 0, base: int = 10) -> Any:
    # int() of a long text is quadratic when the embedding process lifted Python's limit.
    if isinstance(value, str) and len(value.strip()) > _MAX_INT_TEXT:
        raise refuse(f"int() of a text of {len(value)} characters")
    return FILTERS["int"](value, default, base)


@pass_environment
def _sum(environment: Any, iterable: Iterable[Any], attribute: Any = None, start: Any = 0) -> Any:
    values = list(iterable)
    if attribute is not None:
        values = list(map(make_attrgetter(environment, attribute), values))
    if not all(isinstance(v, int | float) for v in (start, *values)):
        # sum() of lists copies the growing total once per item: quadratic.
        budget = current()
        built = budget.measure(values) + budget.measure(start)
        budget.expect(built, "sum()")
        if len(values) * built > 100 * MAX_OUTPUT:
            raise refuse(f"sum() of {len(values)} lists")
    return FILTERS["sum"](environment, values, start=start)


def bounded_items(items: Iterator[Any], what: str) -> Iterator[Any]:
    """An iterator a filter or method returned (``map``, ``select``, ``dict.items``):
    every item is measured and counted as it comes, so consuming it stays bounded."""
    budget = current()
    for item in items:
        budget.expect(budget.measure(item), what)
        yield item


def _guarded(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    """The filter, with the clock checked, a large input worked on off the event loop,
    and its result measured: refused when larger than MAX_OUTPUT, so growth cannot
    compound, and counted towards what the rendering built."""
    at = 1 if hasattr(original, "jinja_pass_arg") else 0
    what = f"the {name} filter"

    @functools.wraps(original)  # keeps Jinja's pass_eval_context/pass_environment marker
    def checked(*args: Any, **kwargs: Any) -> Any:
        budget = current()
        budget.tick()
        if len(args) > at:
            budget.heavy(args[at])
        result = original(*args, **kwargs)
        if isinstance(result, Iterator):
            return bounded_items(result, what)
        return budget.built_value(result, what)

    return checked


def guarded_filters() -> dict[str, Callable[..., Any]]:
    """Jinja's filters as templates get them: a few removed, every one guarded."""
    filters = {name: fn for name, fn in FILTERS.items() if name not in REMOVED_FILTERS}
    filters.update(
        center=_capped("center", "width", 10_000),
        slice=_capped("slice", "slices", 10_000),
        batch=_capped("batch", "linecount", 10_000),
        join=_join,
        replace=_replace,
        indent=_indent,
        wordwrap=_wordwrap,
        tojson=_tojson,
        pprint=_pprint,
        int=_int,
        sum=_sum,
    )
    return {name: _guarded(name, fn) for name, fn in filters.items()}


__all__ = ["REMOVED_FILTERS", "bounded_items", "guarded_filters", "joined_size", "replaced_size"]
