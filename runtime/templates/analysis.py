"""What can be known of a template before it runs, and what its result means as JSON."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from typing import Any

from jinja2 import StrictUndefined, nodes
from jinja2.exceptions import UndefinedError
from markupsafe import Markup

from .filters import REMOVED_FILTERS
from .problems import References, TemplateProblem, show
from .sandbox import unwrap_output


def references(tree: nodes.Template, template_globals: Mapping[str, Any]) -> References:
    refs = References()
    assigned = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    for name in tree.find_all(nodes.Name):
        if name.ctx == "load" and name.name not in assigned:
            refs.roots.add(name.name)
    refs.inputs.update(_input_reads(tree))
    refs.roots -= set(template_globals)
    return refs


def unknown_names(
    filters: Mapping[str, Any], tests: Mapping[str, Any], tree: nodes.Template, source: str
) -> TemplateProblem | None:
    """Unknown filters and tests: Jinja finds them only when generating code, we say so early."""
    for node in tree.find_all((nodes.Filter, nodes.Test)):
        assert isinstance(node, nodes.Filter | nodes.Test)
        known = filters if isinstance(node, nodes.Filter) else tests
        if isinstance(node, nodes.Filter) and node.name in REMOVED_FILTERS:
            return TemplateProblem(
                f"the {node.name!r} filter is not allowed in templates (templates are data, "
                f"not code) in {show(source)}",
                code="template_not_allowed",
            )
        if node.name not in known:
            kind = "filter" if isinstance(node, nodes.Filter) else "test"
            return TemplateProblem(
                f"template syntax error in {show(source)}: No {kind} named {node.name!r}.",
                code="template_syntax",
            )
    return None


def single_expression(tree: nodes.Template) -> nodes.Expr | None:
    """The expression of a source that is exactly ``{{ expression }}`` (spaces around allowed)."""
    if len(tree.body) != 1 or not isinstance(tree.body[0], nodes.Output):
        return None
    parts = [
        n
        for n in tree.body[0].nodes
        if not (isinstance(n, nodes.TemplateData) and not n.data.strip())
    ]
    if len(parts) == 1 and not isinstance(parts[0], nodes.TemplateData):
        expression = unwrap_output(parts[0])
        assert isinstance(expression, nodes.Expr)
        return expression
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


def to_json(value: Any, source: str) -> Any:
    if isinstance(value, StrictUndefined):
        value.__str__()  # raises UndefinedError naming what is missing
    if isinstance(value, Markup):
        return str(value)
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise TemplateProblem(f"{show(source)} produced {value}, which is not valid JSON")
        return value
    if isinstance(value, list | tuple | range):
        return [to_json(v, source) for v in value]
    if isinstance(value, dict):
        return {str(k): to_json(v, source) for k, v in value.items()}
    raise TemplateProblem(
        f"{show(source)} produced a {type(value).__name__}, which is not a JSON value"
    )


def undefined_message(exc: UndefinedError) -> str:
    text = str(exc)
    # Jinja says "'dict object' has no attribute 'x'"; say it in the flow's terms.
    match = re.match(r"'(?:dict object|\w+ object)' has no attribute '(?P<attr>[^']+)'", text)
    if match:
        return f"the value has no key {match['attr']!r}"
    match = re.match(r"'(?P<name>[^']+)' is undefined", text)
    if match:
        return f"{match['name']!r} is not defined here"
    return text


__all__ = [
    "References",
    "TemplateProblem",
    "references",
    "show",
    "single_expression",
    "to_json",
    "undefined_message",
    "unknown_names",
]
