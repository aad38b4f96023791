"""The limits every rendering keeps (enforced by :mod:`.limits`; here without Jinja, so that
reading them, or rendering a simple template, imports nothing heavy)."""

from __future__ import annotations

MAX_OUTPUT = 1_000_000  # characters in a rendered value, and in any value a template builds
MAX_BUILT = 10 * MAX_OUTPUT  # characters one rendering builds in all (what it can hold alive)
MAX_ITERATIONS = 100_000  # loop iterations and range() items in one rendering, all together
MAX_SECONDS = 1.0  # wall time of one rendering
MAX_DEPTH = 100  # nesting of a value a template builds (what a step's output may have)
MAX_INT_BITS = 14_000  # about 4,200 digits: under Python's own 4,300-digit str() limit

# The functions templates see (Jinja's globals less those the sandbox removes); a test
# keeps this in step with the sandbox, which validation need not import to read it.
TEMPLATE_GLOBALS = frozenset({"dict", "namespace", "range"})


__all__ = [
    "MAX_BUILT",
    "MAX_DEPTH",
    "MAX_INT_BITS",
    "MAX_ITERATIONS",
    "MAX_OUTPUT",
    "MAX_SECONDS",
    "TEMPLATE_GLOBALS",
]
