"""``{{ … }}`` templates in step configs: data in, data out, never code.

Templates run in Jinja2's immutable sandbox (no ``__class__`` escapes, no mutation) with
more taken away: no ``attr``/``format``/``urlize`` filters, no ``lipsum``/``cycler``/``joiner``,
no ``str.format``, padding or ``translate`` methods, no macros, blocks, includes or captured
``{% set %}``/``{% filter %}`` bodies. Every operation asks a cost budget before it builds
(:mod:`.limits`): each value stays under :data:`MAX_OUTPUT` characters, integers under
about 4,200 digits, nesting under 100 levels, one rendering builds at most
:data:`MAX_BUILT` characters in all, its loops and ``range()`` make at most
:data:`MAX_ITERATIONS` steps, and it stops after :data:`MAX_SECONDS`. Templates see only
``inputs``, the merge fields written so far and ``error``; they have no access to the
environment, files or secrets.

Simple templates (:mod:`.simple`) are evaluated without Jinja, with the same results; Jinja
is imported when a template needs it.

A value that is exactly one ``{{ expression }}`` keeps its JSON type; anything else renders
to a string. A rendered value is never rendered again: API output that happens to contain
``{{`` stays text.
"""

from __future__ import annotations

from .bounds import MAX_BUILT, MAX_ITERATIONS, MAX_OUTPUT, MAX_SECONDS, TEMPLATE_GLOBALS
from .engine import MAX_CACHED, Templates, forget_compiled, is_template
from .problems import References, TemplateProblem

__all__ = [
    "MAX_BUILT",
    "MAX_CACHED",
    "MAX_ITERATIONS",
    "MAX_OUTPUT",
    "MAX_SECONDS",
    "TEMPLATE_GLOBALS",
    "References",
    "TemplateProblem",
    "Templates",
    "forget_compiled",
    "is_template",
]
