"""Request parameter checks with the messages and codes OpenAI answers.

A request schema is a mapping of parameter name to :class:`Param`. :func:`check` walks a
JSON body and raises the first problem as a 400 ``invalid_request_error`` worded the way
the API words it ("Invalid 'suffix': string too long. Expected a string with maximum
length 64, but got a string with length 70 instead.", code ``string_above_max_length``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import APIError, invalid

_ARTICLES = {"integer": "an integer", "object": "an object", "array": "an array"}


@dataclass(frozen=True, slots=True)
class Param:
    """What one parameter accepts. ``kinds`` are JSON types; ``auto`` also allows "auto"."""

    kinds: tuple[str, ...]
    nullable: bool = True
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    min_length: int | None = None
    max_length: int | None = None
    max_items: int | None = None
    enum: tuple[str, ...] | None = None
    auto: bool = False
    items: Param | None = None
    fields: Mapping[str, Param] | None = None
    required: tuple[str, ...] = ()
    open: bool = True  # an object whose unknown keys are accepted


def _kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _a(kind: str) -> str:
    return _ARTICLES.get(kind, f"a {kind}")


def _matches(kind: str, value: Any) -> bool:
    found = _kind_of(value)
    return found == kind or (kind == "number" and found == "integer")


def _supported(values: tuple[str, ...]) -> str:
    quoted = [f"'{value}'" for value in values]
    if len(quoted) == 1:
        return quoted[0]
    return ", ".join(quoted[:-1]) + ", and " + quoted[-1]


def check_value(name: str, value: Any, param: Param) -> None:
    """Raise the API's error for the first way ``value`` breaks ``param``."""
    if value is None:
        if param.nullable:
            return
        raise invalid(
            f"Invalid type for '{name}': expected {_a(param.kinds[0])}, but got null instead.",
            param=name,
            code="invalid_type",
        )
    if param.auto and value == "auto":
        return
    if not any(_matches(kind, value) for kind in param.kinds):
        expected = " or ".join(_a(kind) for kind in param.kinds)
        if param.auto:
            expected = f"'auto' or {expected}"
        raise invalid(
            f"Invalid type for '{name}': expected {expected}, "
            f"but got {_a(_kind_of(value))} instead.",
            param=name,
            code="invalid_type",
        )
    kind = _kind_of(value)
    if kind in ("integer", "number"):
        _check_number(name, value, param)
    elif kind == "string":
        _check_string(name, value, param)
    elif kind == "array":
        _check_array(name, value, param)
    elif kind == "object" and param.fields is not None:
        check(value, param.fields, required=param.required, prefix=name + ".", open=param.open)


def _check_number(name: str, value: float, param: Param) -> None:
    label = "integer" if "integer" in param.kinds else "decimal"
    if param.minimum is not None and (
        value < param.minimum or (param.exclusive_minimum and value <= param.minimum)
    ):
        sign = ">" if param.exclusive_minimum else ">="
        raise invalid(
            f"Invalid '{name}': {label} below minimum value. "
            f"Expected a value {sign} {param.minimum:g}, but got {value:g} instead.",
            param=name,
            code=f"{label}_below_min_value",
        )
    if param.maximum is not None and value > param.maximum:
        raise invalid(
            f"Invalid '{name}': {label} above maximum value. "
            f"Expected a value <= {param.maximum:g}, but got {value:g} instead.",
            param=name,
            code=f"{label}_above_max_value",
        )


def _check_string(name: str, value: str, param: Param) -> None:
    if param.enum is not None and value not in param.enum:
        raise invalid(
            f"Invalid value: '{value}'. Supported values are: {_supported(param.enum)}.",
            param=name,
            code="invalid_value",
        )
    if param.max_length is not None and len(value) > param.max_length:
        raise invalid(
            f"Invalid '{name}': string too long. Expected a string with maximum length "
            f"{param.max_length}, but got a string with length {len(value)} instead.",
            param=name,
            code="string_above_max_length",
        )
    if param.min_length is not None and len(value) < param.min_length:
        raise invalid(
            f"Invalid '{name}': string too short. Expected a string with minimum length "
            f"{param.min_length}, but got a string with length {len(value)} instead.",
            param=name,
            code="string_below_min_length",
        )


def _check_array(name: str, value: list[Any], param: Param) -> None:
    if param.max_items is not None and len(value) > param.max_items:
        raise invalid(
            f"Invalid '{name}': array too long. Expected an array with maximum length "
            f"{param.max_items}, but got an array with length {len(value)} instead.",
            param=name,
            code="array_above_max_length",
        )
    if param.min_length is not None and len(value) < param.min_length:
        raise invalid(
            f"Invalid '{name}': empty array. Expected an array with minimum length "
            f"{param.min_length}, but got an empty array instead.",
            param=name,
            code="empty_array",
        )
    if param.items is not None:
        for index, item in enumerate(value):
            check_value(f"{name}[{index}]", item, param.items)


def check(
    body: Mapping[str, Any],
    params: Mapping[str, Param],
    *,
    required: tuple[str, ...] = (),
    prefix: str = "",
    open: bool = False,
) -> None:
    """Check a JSON object: required names, unknown names (unless ``open``), each value."""
    for name in required:
        if body.get(name) is None:
            raise invalid(
                f"Missing required parameter: '{prefix}{name}'.",
                param=prefix + name,
                code="missing_required_parameter",
            )
    if not open:
        for name in body:
            if name not in params:
                # The API's wording for a top-level argument it does not know.
                if not prefix:
                    raise invalid(f"Unrecognized request argument supplied: {name}")
                raise invalid(
                    f"Unknown parameter: '{prefix}{name}'.",
                    param=prefix + name,
                    code="unknown_parameter",
                )
    for name, param in params.items():
        if name in body:
            check_value(prefix + name, body[name], param)


def json_object(value: Any) -> dict[str, Any]:
    """A request body that must be a JSON object."""
    if not isinstance(value, dict):
        raise APIError(
            400,
            f"Invalid type for request body: expected an object, but got {_a(_kind_of(value))} "
            "instead.",
            code="invalid_type",
        )
    return value


# Shapes shared by several endpoints.
STRING = Param(("string",))
BOOLEAN = Param(("boolean",))
OBJECT = Param(("object",))
ARRAY = Param(("array",))
ANY = Param(("string", "number", "boolean", "object", "array"))
METADATA = Param(("object",), fields={}, open=True)
STOP = Param(("string", "array"), max_items=4, items=Param(("string",), nullable=False))
LOGIT_BIAS = Param(("object",))
STREAM_OPTIONS = Param(
    ("object",),
    fields={"include_usage": BOOLEAN, "include_obfuscation": BOOLEAN},
    open=False,
)


__all__ = [
    "ANY",
    "ARRAY",
    "BOOLEAN",
    "LOGIT_BIAS",
    "METADATA",
    "OBJECT",
    "STOP",
    "STREAM_OPTIONS",
    "STRING",
    "Param",
    "check",
    "check_value",
    "json_object",
]
