"""What one rendering may spend, and how the cost of a value is known before it is built.

A rendering is the templates of one step's config. Its :class:`Budget` is checked by every
hook the sandbox has (operators, calls, filters, literals, loops, output): each of them
asks what its result will cost before building it, so no single operation can allocate
much more than :data:`MAX_OUTPUT`, and the clock is read between any two of them. That is
what makes the time limit, a step's timeout and "off the event loop" work: a rendering is
a series of small steps, and can be stopped between any two.
"""

from __future__ import annotations

import contextvars
import itertools
import time
from collections.abc import ItemsView, Iterable, KeysView, Mapping, ValuesView
from typing import Any

from jinja2 import Undefined
from jinja2.exceptions import SecurityError
from jinja2.utils import Namespace

from .bounds import MAX_BUILT, MAX_DEPTH, MAX_INT_BITS, MAX_ITERATIONS, MAX_OUTPUT, MAX_SECONDS

# How long a rendering may run on the event loop before it starts again on a worker
# thread, and how large a value a filter or method may work on while on the loop.
ON_LOOP_SECONDS = 0.05
ON_LOOP_ITEMS = 20_000

_CAP = MAX_OUTPUT + 1  # sizes are counted up to here: anything larger is refused anyway
_MEMO_FROM = 256  # containers at least this large remember their size (see Budget.measure)


class OffLoop(Exception):
    """The rendering used up its time on the event loop; render it again on a thread."""


class TooCostly(SecurityError):
    """A template asked for more than its budget: refused or stopped."""


def refuse(what: str) -> TooCostly:
    return TooCostly(f"{what} is too costly for a template and was refused")


class Budget:
    """What one rendering may still spend: iterations, characters built, and time.

    ``stopped`` is set from the event loop when a step or run timeout ends a rendering
    that runs on a worker thread; the thread stops at its next check.
    """

    __slots__ = ("_sizes", "built", "deadline", "on_loop_until", "spent", "started", "stopped")

    def __init__(self, *, on_loop: bool = False, started: float | None = None) -> None:
        self.started = time.monotonic() if started is None else started
        self.deadline = self.started + MAX_SECONDS
        self.on_loop_until = self.started + ON_LOOP_SECONDS if on_loop else None
        self.stopped = False
        self.spent = 0
        self.built = 0
        # id -> (the container, its size, its height). Holding the container keeps its id
        # from being reused while the rendering runs; templates cannot mutate containers
        # (the sandbox is immutable), so a size once counted stays true.
        self._sizes: dict[int, tuple[Any, int, int]] = {}

    def tick(self) -> None:
        """Between two operations: stop if the time is up or the step ended."""
        now = time.monotonic()
        if self.on_loop_until is not None and now > self.on_loop_until:
            raise OffLoop
        if now > self.deadline:
            raise TooCostly(f"the template ran for more than {MAX_SECONDS:g} s and was stopped")
        if self.stopped:
            raise TooCostly("the step's time ran out while its template was rendering")

    def spend(self, items: int, what: str) -> None:
        self.spent += items
        if self.spent > MAX_ITERATIONS:
            raise refuse(f"{what} over more than {MAX_ITERATIONS} items in one template")
        self.tick()

    def heavy(self, value: Any) -> None:
        """Before work that grows with ``value``: a large one is worked on off the loop."""
        if self.on_loop_until is not None and _length(value) > ON_LOOP_ITEMS:
            raise OffLoop

    def expect(self, size: int, what: str) -> None:
        """Before building a value of about ``size`` characters: refuse it or count it."""
        if size > MAX_OUTPUT:
            raise refuse(f"{what} building more than {MAX_OUTPUT} characters")
        self.built += size
        if self.built > MAX_BUILT:
            raise refuse(
                f"{what} after templates built {MAX_BUILT} characters in this rendering "
                "(join lists or write a loop's output instead of growing a value step by step)"
            )
        self.tick()

    def built_value(self, value: Any, what: str) -> Any:
        """A value an operation returned: refused if it is too large or too deep, else counted."""
        self.expect(self.measure(value), what)
        return value

    def literal(self, value: Any) -> Any:
        """A list, tuple or dict literal: only its slots are new, but what it holds counts
        when it is printed, joined or serialized (``[l, l]`` doubles ``l``)."""
        if self.measure(value) > MAX_OUTPUT:
            raise refuse(f"a literal holding more than {MAX_OUTPUT} characters")
        self.expect(len(value), "a literal")
        return value

    def measure(self, value: Any, level: int = 0) -> int:
        """About how many characters ``value`` takes as text (up to just over MAX_OUTPUT).

        Counts references, not objects: ``[s] * n`` is n times as large as ``s`` once
        printed, joined or serialized, even though it holds one string. Refuses a value
        nested deeper than MAX_DEPTH or an integer over MAX_INT_BITS on the way.
        """
        return self._measure(value, level)[0]

    def shape(self, value: Any) -> tuple[int, int]:
        """(size, height): the size as :meth:`measure` counts it, and the nesting depth."""
        return self._measure(value, 0)

    def _measure(self, value: Any, level: int) -> tuple[int, int]:
        """(size, height) of ``value``, found ``level`` containers deep."""
        kind = type(value)
        items: Iterable[Any]
        if kind is list or kind is tuple:
            items = value
        elif kind is dict:
            items = itertools.chain.from_iterable(value.items())
        else:
            return self._other(value, level)
        if level > MAX_DEPTH:
            raise refuse(f"a value nested more than {MAX_DEPTH} levels deep")
        known = self._sizes.get(id(value))
        if known is not None:
            if level + known[2] > MAX_DEPTH:
                raise refuse(f"a value nested more than {MAX_DEPTH} levels deep")
            return known[1], known[2]
        total, height = 2, 1
        for item in items:
            # Plain strings and small integers inline: this loop is most of a measure.
            kind = type(item)
            if kind is str:
                total += 2 + len(item)
            elif kind is int and -(10**15) < item < 10**15:
                total += 2 + len(str(item))
            else:
                size, below = self._measure(item, level + 1)
                total += 2 + size
                if below + 1 > height:
                    height = below + 1
            if total >= _CAP:
                total = _CAP
                break
        if total >= _MEMO_FROM:
            self._sizes[id(value)] = (value, total, height)
        return total, height

    def _other(self, value: Any, level: int) -> tuple[int, int]:
        """What is not a plain list, tuple or dict."""
        if isinstance(value, str | bytes):
            return len(value), 0
        if isinstance(value, bool) or value is None:
            return 4, 0
        if isinstance(value, int):
            bits = value.bit_length()
            if bits > MAX_INT_BITS:
                raise refuse(f"an integer of {bits} bits (the limit is {MAX_INT_BITS})")
            return bits * 3 // 10 + 1, 0
        if isinstance(value, float):
            return 8, 0
        if isinstance(value, range):
            digits = max(abs(value.start), abs(value.stop)).bit_length() * 3 // 10 + 1
            return min(len(value) * (digits + 2), _CAP), 1
        if isinstance(value, Namespace):
            # Its repr shows everything it holds. It changes, so its size is not remembered.
            attrs = object.__getattribute__(value, "_Namespace__attrs")
            return self._walk(itertools.chain.from_iterable(attrs.items()), level)
        if isinstance(value, Mapping | ItemsView):
            pairs = value.items() if isinstance(value, Mapping) else value
            return self._walk(itertools.chain.from_iterable(pairs), level)
        if isinstance(value, list | tuple | set | frozenset | KeysView | ValuesView):
            return self._walk(value, level)
        return 1, 0  # a number-like or opaque object (an iterator is bounded as it runs)

    def _walk(self, items: Iterable[Any], level: int) -> tuple[int, int]:
        if level > MAX_DEPTH:
            raise refuse(f"a value nested more than {MAX_DEPTH} levels deep")
        total, height = 2, 1
        for item in items:
            size, below = self._measure(item, level + 1)
            total += 2 + size
            height = max(height, below + 1)
            if total >= _CAP:
                return _CAP, height
        return total, height


def _length(value: Any) -> int:
    if isinstance(value, Undefined):
        # Its len() raises: `{{ x.missing | default('none') }}` on the loop failed with
        # "no key 'missing'" before default could run (tests/runtime/test_simple_templates).
        return 0
    try:
        return len(value)
    except TypeError:
        return 0


_budget: contextvars.ContextVar[Budget] = contextvars.ContextVar("steprun_template_budget")


def current() -> Budget:
    """The rendering's budget. Outside a rendering there is none, and the LookupError
    stops Jinja from running filters on constants while it compiles (Filter.as_const
    turns any error into "evaluate it when rendering"), where no budget would count."""
    return _budget.get()


def use(budget: Budget) -> contextvars.Token[Budget]:
    return _budget.set(budget)


def release(token: contextvars.Token[Budget]) -> None:
    _budget.reset(token)


__all__ = [
    "MAX_BUILT",
    "MAX_DEPTH",
    "MAX_INT_BITS",
    "MAX_ITERATIONS",
    "MAX_OUTPUT",
    "MAX_SECONDS",
    "Budget",
    "OffLoop",
    "TooCostly",
    "current",
    "refuse",
]
