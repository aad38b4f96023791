"""A step's settings as a form: its config JSON Schema read as labelled fields.

The no-code view of a step: each setting with its type, whether it is required, its
default, its allowed values and its description. ``$ref``s are followed through the
OpenAPI document's components (where every schema is already self-contained).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

MAX_DEPTH = 8


@dataclass(frozen=True)
class Field:
    name: str
    kind: str  # text | number | integer | checkbox | select | json
    required: bool
    description: str
    default: str | None
    choices: tuple[str, ...]
    type_label: str


def _deref(schema: Any, components: Mapping[str, Any], depth: int = 0) -> dict[str, Any]:
    while isinstance(schema, Mapping) and "$ref" in schema and depth < MAX_DEPTH:
        target = components.get(str(schema["$ref"]).rsplit("/", 1)[-1], {})
        schema = {**target, **{k: v for k, v in schema.items() if k != "$ref"}}
        depth += 1
    return dict(schema) if isinstance(schema, Mapping) else {}


def _types(schema: Mapping[str, Any], components: Mapping[str, Any]) -> list[str]:
    found: list[str] = []
    kind = schema.get("type")
    if isinstance(kind, str):
        found.append(kind)
    elif isinstance(kind, list):
        found += [str(k) for k in kind]
    for key in ("anyOf", "oneOf"):
        for option in schema.get(key) or []:
            found += _types(_deref(option, components), components)
    if "enum" in schema and not found:
        found.append("string")
    return list(dict.fromkeys(t for t in found if t != "null")) or ["any"]


def fields(schema: Mapping[str, Any], components: Mapping[str, Any]) -> list[Field]:
    schema = _deref(schema, components)
    required = set(schema.get("required") or [])
    out: list[Field] = []
    for name, raw in (schema.get("properties") or {}).items():
        prop = _deref(raw, components)
        types = _types(prop, components)
        enum = prop.get("enum")
        if enum is None:
            for key in ("anyOf", "oneOf"):
                for option in prop.get(key) or []:
                    enum = enum or _deref(option, components).get("enum")
        if enum:
            kind = "select"
        elif types == ["boolean"]:
            kind = "checkbox"
        elif types in (["integer"], ["number"]):
            kind = types[0]
        elif types == ["string"]:
            kind = "text"
        else:
            kind = "json"
        default = prop.get("default")
        out.append(
            Field(
                name=name,
                kind=kind,
                required=name in required,
                description=str(prop.get("description") or prop.get("title") or ""),
                default=None if default is None else json.dumps(default),
                choices=tuple(str(c) for c in enum or ()),
                type_label=" or ".join(types),
            )
        )
    return sorted(out, key=lambda f: (not f.required, f.name))


def example(schema: Mapping[str, Any], components: Mapping[str, Any]) -> dict[str, Any]:
    """An example config: the schema's own first example, else required settings filled."""
    schema = _deref(schema, components)
    examples = schema.get("examples")
    if isinstance(examples, list) and examples and isinstance(examples[0], dict):
        return dict(examples[0])
    result: dict[str, Any] = {}
    for field in fields(schema, components):
        if not field.required:
            continue
        if field.default is not None:
            result[field.name] = json.loads(field.default)
        elif field.choices:
            result[field.name] = field.choices[0]
        else:
            result[field.name] = {"integer": 1, "number": 1.0, "checkbox": True, "json": {}}.get(
                field.kind, f"<{field.name}>"
            )
    return result


__all__ = ["Field", "example", "fields"]
