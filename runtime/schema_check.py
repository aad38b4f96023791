"""A quick yes to "is this document valid?", for the JSON Schemas steprun ships.

jsonschema costs as much to import as httpx (bench/cold_start.py) and is the slowest part
of checking a step's config. Most documents are valid, and the schemas a flow meets use a
few keywords; this module decides those documents alone, with the meaning Draft 2020-12
gives each keyword. It answers True (valid), False (invalid) or None (it cannot be sure:
a keyword it does not implement, a reference it cannot follow, a value that is not plain
JSON). Only True is trusted: on False or None the caller asks jsonschema, which also
says every problem in the words users know. tests/runtime/test_schema_check.py compares
the two on every shipped schema.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

# What a reference resolves to: (the schema, the URI of its document), or None.
Resolve = Callable[[str, str], tuple[Any, str] | None]

# Keywords that never make a document invalid here (annotations; no format checker is
# configured, so "format" only annotates).
_ANNOTATIONS = frozenset(
    {
        "$schema",
        "$defs",
        "$comment",
        "title",
        "description",
        "default",
        "examples",
        "deprecated",
        "readOnly",
        "writeOnly",
        "format",
        "contentMediaType",
        "contentEncoding",
        "markdownDescription",
    }
)
_MAX_DEPTH = 64  # of references followed: a deeper schema is jsonschema's to judge
_DRAFT = "https://json-schema.org/draft/2020-12/schema"


class _Ctx(NamedTuple):
    resolve: Resolve
    # Values taken as valid wherever they are (a template, before it is rendered).
    wild: Callable[[Any], bool] | None


def check(
    schema: Any,
    instance: Any,
    base: str,
    resolve: Resolve,
    *,
    wild: Callable[[Any], bool] | None = None,
) -> bool | None:
    """True if ``instance`` is certainly valid against ``schema``, False if certainly not,
    None when this module cannot tell. ``base`` is the URI of the schema's document.

    With ``wild``, a value it says True of passes every keyword applied to it, as if it
    were whatever the schema wants: validation leaves a template's value to be checked
    once it is rendered (validation._about_templates). An ``if`` still sees it as it is,
    as jsonschema does, so the branch checked is the branch jsonschema checks.
    """
    return _check(schema, instance, base, _Ctx(resolve, wild), 0)


def _all(results: list[bool | None]) -> bool | None:
    if False in results:
        return False
    return None if None in results else True


def _check(schema: Any, instance: Any, base: str, ctx: _Ctx, depth: int) -> bool | None:
    if ctx.wild is not None and ctx.wild(instance):
        return True
    if schema is True:
        return True
    if schema is False:
        return False
    if not isinstance(schema, Mapping) or depth > _MAX_DEPTH:
        return None
    if schema.get("$id", base) != base or schema.get("$schema", _DRAFT) != _DRAFT:
        return None  # a new base URI inside a document, another dialect: jsonschema's
    if isinstance(instance, dict | list | tuple) and type(instance) not in (dict, list):
        return None  # not plain JSON
    results: list[bool | None] = []
    for keyword, value in schema.items():
        if keyword in _ANNOTATIONS or keyword == "$id":
            continue
        rule = _KEYWORDS.get(keyword)
        if rule is None:
            return None  # a keyword not implemented here
        if not _well_formed(keyword, value):
            return None  # jsonschema has its own way with a schema that is wrong
        found = rule(value, instance, schema, base, ctx, depth)
        if found is False:
            return False
        results.append(found)
    return _all(results)


_SHAPES: dict[str, type | tuple[type, ...]] = {
    "properties": Mapping,
    "required": list,
    "enum": list,
    "anyOf": list,
    "oneOf": list,
    "allOf": list,
    "pattern": str,
    "$ref": str,
    "items": (Mapping, bool),
    "additionalProperties": (Mapping, bool),
    "propertyNames": (Mapping, bool),
    "if": (Mapping, bool),
}


def _well_formed(keyword: str, value: Any) -> bool:
    shape = _SHAPES.get(keyword)
    if shape is None:
        return True
    return isinstance(value, shape) and _members_formed(keyword, value)


def _members_formed(keyword: str, value: Any) -> bool:
    if keyword == "required":
        return all(isinstance(name, str) for name in value)
    if keyword == "properties":
        return all(isinstance(sub, Mapping | bool) for sub in value.values())
    return True


def _json_type(instance: Any) -> str | None:
    if instance is None:
        return "null"
    if isinstance(instance, bool):
        return "boolean"
    if isinstance(instance, int):
        return "integer"
    if isinstance(instance, float):
        return "number"
    if isinstance(instance, str):
        return "string"
    if type(instance) is list:
        return "array"
    if type(instance) is dict:
        return "object"
    return None


def _is(kind: str, instance: Any) -> bool | None:
    found = _json_type(instance)
    if found is None:
        return None  # a tuple, a date: not JSON
    if kind == "number":
        return found in ("integer", "number")
    if kind == "integer":
        return found == "integer" or (found == "number" and float(instance).is_integer())
    return found == kind


def _type(value: Any, instance: Any, *_: Any) -> bool | None:
    kinds = [value] if isinstance(value, str) else value
    if not isinstance(kinds, list):
        return None
    results = [_is(kind, instance) for kind in kinds]
    if True in results:
        return True
    return None if None in results else False


def _equal(a: Any, b: Any) -> bool | None:
    """jsonschema's equality for scalars (true is not 1, 1 is 1.0); None for containers."""
    if isinstance(a, list | dict | tuple) or isinstance(b, list | dict | tuple):
        return None
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if _json_type(a) is None or _json_type(b) is None:
        return None
    return bool(a == b) and (type(a) is type(b) or _json_type(a) in ("integer", "number"))


def _enum(value: Any, instance: Any, *_: Any) -> bool | None:
    if not isinstance(value, list):
        return None
    results = [_equal(instance, option) for option in value]
    if True in results:
        return True
    return None if None in results else False


def _const(value: Any, instance: Any, *_: Any) -> bool | None:
    return _equal(instance, value)


def _properties(value: Any, instance: Any, _s: Any, base: str, ctx: _Ctx, depth: int) -> Any:
    if type(instance) is not dict:
        return True
    return _all(
        [
            _check(sub, instance[key], base, ctx, depth)
            for key, sub in value.items()
            if key in instance
        ]
    )


def _additional(value: Any, instance: Any, schema: Any, base: str, ctx: _Ctx, depth: int) -> Any:
    if type(instance) is not dict:
        return True
    if "patternProperties" in schema:
        return None
    known = schema.get("properties") or {}
    extra = [key for key in instance if key not in known]
    if value is False:
        return not extra  # about the keys: no value, not even a template, makes one right
    return _all([_check(value, instance[key], base, ctx, depth) for key in extra])


def _required(value: Any, instance: Any, *_: Any) -> bool | None:
    if type(instance) is not dict:
        return True
    return all(key in instance for key in value)


def _property_names(value: Any, instance: Any, _s: Any, base: str, ctx: _Ctx, depth: int) -> Any:
    if type(instance) is not dict:
        return True
    return _all([_check(value, key, base, ctx, depth) for key in instance])


def _items(value: Any, instance: Any, schema: Any, base: str, ctx: _Ctx, depth: int) -> Any:
    if type(instance) is not list:
        return True
    if "prefixItems" in schema:
        return None
    return _all([_check(value, item, base, ctx, depth) for item in instance])


def _bound(test: Callable[[Any, Any], bool], kinds: tuple[str, ...]) -> Callable[..., bool | None]:
    def rule(value: Any, instance: Any, *_: Any) -> bool | None:
        if _json_type(instance) not in kinds:
            return True  # the keyword does not apply to this type
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return test(instance, value)

    return rule


def _sized(test: Callable[[int, Any], bool], kind: str) -> Callable[..., bool | None]:
    def rule(value: Any, instance: Any, *_: Any) -> bool | None:
        if _json_type(instance) != kind:
            return True
        if isinstance(value, bool) or not isinstance(value, int):
            return None
        return test(len(instance), value)

    return rule


def _pattern(value: Any, instance: Any, *_: Any) -> bool | None:
    if not isinstance(instance, str):
        return True
    try:
        return re.search(value, instance) is not None
    except (re.error, TypeError):
        return None


def _ref(value: Any, instance: Any, _s: Any, base: str, ctx: _Ctx, depth: int) -> Any:
    if not isinstance(value, str):
        return None
    found = ctx.resolve(value, base)
    if found is None:
        return None
    target, target_base = found
    return _check(target, instance, target_base, ctx, depth + 1)


def _any_of(value: Any, instance: Any, _s: Any, base: str, ctx: _Ctx, depth: int) -> Any:
    results = [_check(sub, instance, base, ctx, depth) for sub in value]
    if True in results:
        return True
    return None if None in results else False


def _one_of(value: Any, instance: Any, _s: Any, base: str, ctx: _Ctx, depth: int) -> Any:
    results = [_check(sub, instance, base, ctx, depth) for sub in value]
    if None in results:
        return None
    return results.count(True) == 1


def _all_of(value: Any, instance: Any, _s: Any, base: str, ctx: _Ctx, depth: int) -> Any:
    return _all([_check(sub, instance, base, ctx, depth) for sub in value])


def _if(value: Any, instance: Any, schema: Any, base: str, ctx: _Ctx, depth: int) -> Any:
    condition = _check(value, instance, base, ctx._replace(wild=None), depth)
    if condition is None:
        return None
    branch = schema.get("then" if condition else "else", True)
    return _check(branch, instance, base, ctx, depth)


def _applied_by_if(*_: Any) -> bool | None:
    return True  # "then" and "else" are applied by "if" (alone, they do nothing)


_KEYWORDS: dict[str, Callable[..., bool | None]] = {
    "type": _type,
    "enum": _enum,
    "const": _const,
    "properties": _properties,
    "additionalProperties": _additional,
    "required": _required,
    "propertyNames": _property_names,
    "items": _items,
    "minimum": _bound(lambda i, v: i >= v, ("integer", "number")),
    "maximum": _bound(lambda i, v: i <= v, ("integer", "number")),
    "exclusiveMinimum": _bound(lambda i, v: i > v, ("integer", "number")),
    "exclusiveMaximum": _bound(lambda i, v: i < v, ("integer", "number")),
    "minLength": _sized(lambda n, v: n >= v, "string"),
    "maxLength": _sized(lambda n, v: n <= v, "string"),
    "minItems": _sized(lambda n, v: n >= v, "array"),
    "maxItems": _sized(lambda n, v: n <= v, "array"),
    "minProperties": _sized(lambda n, v: n >= v, "object"),
    "maxProperties": _sized(lambda n, v: n <= v, "object"),
    "pattern": _pattern,
    "$ref": _ref,
    "anyOf": _any_of,
    "oneOf": _one_of,
    "allOf": _all_of,
    "if": _if,
    "then": _applied_by_if,
    "else": _applied_by_if,
}


__all__ = ["Resolve", "check"]
