"""Giving a model's answer the shape a chat request asks for: a JSON object, JSON that
validates against a schema, or a call of one of the request's tools.

It works over the answer's text, whatever produced it (the retrieval model, a trained
one): an answer that already has the shape is kept as it is, so a model trained to
answer in JSON answers with what it learned. Otherwise the text is poured into the
shape: a schema's string fields get the answer (or the value the text gives for a field
of that name, "city: Paris"), numbers the first number in the text, enums the value the
text names, and so on, until the document validates.

Which tool to call: the one a named ``tool_choice`` forces, else (``auto``/``required``)
the tool whose name and description share the most words with the question; under
``auto`` a tool that shares none is not called and the model answers in text.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from referencing.exceptions import Unresolvable

from . import ids
from .chat_rules import function_tools

_NUMBER = re.compile(r"-?\d+(?:\.\d+)?")
_WORD = re.compile(r"[a-z0-9]+")
_SAMPLE_FORMATS = {
    "date-time": "1970-01-01T00:00:00Z",
    "date": "1970-01-01",
    "time": "00:00:00Z",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "uuid": "00000000-0000-4000-8000-000000000000",
    "ipv4": "127.0.0.1",
}


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


def _parsed_object(text: str) -> dict[str, Any] | None:
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _valid(schema: dict[str, Any], value: Any) -> bool:
    try:
        return Draft202012Validator(schema).is_valid(value)
    except (SchemaError, Unresolvable):
        return False


def json_object(text: str) -> str:
    """JSON mode: the answer if it is a JSON object, else the answer in one."""
    if _parsed_object(text) is not None:
        return text
    return json.dumps({"answer": text}, ensure_ascii=False)


def json_for_schema(text: str, schema: dict[str, Any]) -> str:
    """Structured outputs: the answer if it validates, else the answer in the schema's shape."""
    try:
        parsed = json.loads(text)
    except ValueError:
        parsed = None
    if parsed is not None and _valid(schema, parsed):
        return text
    source = _parsed_object(text) or {}
    return json.dumps(_instance(schema, schema, text, "", source, 0), ensure_ascii=False)


def _resolve(root: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """Follow local ``$ref``s (``#``, ``#/$defs/…``, ``#/definitions/…``)."""
    seen = 0
    while "$ref" in schema and seen < 32:
        node: Any = root
        for part in str(schema["$ref"]).removeprefix("#").strip("/").split("/"):
            if part:
                node = node.get(part.replace("~1", "/").replace("~0", "~"), {})
        schema = node if isinstance(node, dict) else {}
        seen += 1
    return schema


def _field_value(text: str, name: str) -> str | None:
    """What the text says a field is: "name: value" or "name is value" on one line."""
    if not name:
        return None
    words = r"[\s_-]*".join(map(re.escape, _WORD.findall(name.casefold())))
    if not words:
        return None
    found = re.search(rf"\b{words}\b\s*(?::|=|\bis\b)\s*([^\n,;]+)", text, re.IGNORECASE)
    return found.group(1).strip().rstrip(".") if found else None


def _instance(
    root: dict[str, Any], schema: Any, text: str, name: str, source: dict[str, Any], depth: int
) -> Any:
    if not isinstance(schema, dict) or depth > 12:
        return text
    schema = _resolve(root, schema)
    if name in source and _valid({**schema, "$defs": root.get("$defs", {})}, source[name]):
        return source[name]
    if "const" in schema:
        return schema["const"]
    if isinstance(schema.get("enum"), list) and schema["enum"]:
        said = text.casefold()
        named = [v for v in schema["enum"] if isinstance(v, str) and v.casefold() in said]
        return named[0] if named else schema["enum"][0]
    for key in ("anyOf", "oneOf", "allOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            usable = [o for o in options if _resolve(root, o).get("type") != "null"] or options
            return _instance(root, usable[0], text, name, source, depth + 1)
    kind = schema.get("type", "string" if "properties" not in schema else "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        properties = schema.get("properties") or {}
        return {
            key: _instance(root, sub, text, key, source, depth + 1)
            for key, sub in properties.items()
        }
    if kind == "array":
        count = max(1, int(schema.get("minItems", 1)))
        if schema.get("maxItems") is not None:
            count = min(count, int(schema["maxItems"]))
        item = _instance(root, schema.get("items", {}), text, name, source, depth + 1)
        return [item] * count
    if kind in ("integer", "number"):
        return _number(schema, _field_value(text, name) or text, kind == "integer")
    if kind == "boolean":
        said = (_field_value(text, name) or text).casefold()
        return bool(re.search(r"\b(yes|true)\b", said))
    if kind == "null":
        return None
    return _string(schema, _field_value(text, name) or text)


def _number(schema: dict[str, Any], text: str, integer: bool) -> float | int:
    found = _NUMBER.search(text)
    value = float(found.group()) if found else float(schema.get("minimum", 0))
    if "minimum" in schema:
        value = max(value, float(schema["minimum"]))
    if "maximum" in schema:
        value = min(value, float(schema["maximum"]))
    if integer or value.is_integer():
        return int(value)
    return value


def _string(schema: dict[str, Any], text: str) -> str:
    if schema.get("format") in _SAMPLE_FORMATS:
        return _SAMPLE_FORMATS[schema["format"]]
    value = text
    if schema.get("maxLength") is not None:
        value = value[: int(schema["maxLength"])]
    if schema.get("minLength") is not None and len(value) < int(schema["minLength"]):
        value = value.ljust(int(schema["minLength"]), ".")
    return value


# --- tools -------------------------------------------------------------------------------------


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.casefold().replace("_", " ")) if len(w) > 2}


def choose_tool(body: dict[str, Any], question: str) -> dict[str, Any] | None:
    """The function to call for a (checked) request, or None to answer in text."""
    functions = function_tools(body.get("tools") or [])
    choice = body.get("tool_choice") or "auto"
    if not functions or choice == "none":
        return None
    if isinstance(choice, dict):
        return next(f for f in functions if f["name"] == choice["function"]["name"])
    asked = _words(question)

    def overlap(function: dict[str, Any]) -> int:
        named = re.sub(r"([a-z])([A-Z])", r"\1 \2", function["name"])
        return len(asked & _words(f"{named} {function.get('description') or ''}"))

    ranked = max(functions, key=overlap)  # the first of the best, as max keeps ties in order
    if choice == "auto" and overlap(ranked) == 0:
        return None
    return ranked


def tool_call(function: dict[str, Any], answer: str, question: str) -> ToolCall:
    """A call of ``function`` whose arguments validate against its parameters.

    The answer when it is already such arguments (a model trained to call the tool);
    else the question's words poured into the parameters, as a caller asks for them.
    """
    parameters = function.get("parameters") or {"type": "object", "properties": {}}
    parsed = _parsed_object(answer)
    if parsed is not None and _valid(parameters, parsed):
        arguments = answer
    else:
        text = question or answer
        arguments = json.dumps(
            _instance(parameters, parameters, text, "", parsed or {}, 0), ensure_ascii=False
        )
    return ToolCall(id=ids.new_id("call_", 24), name=function["name"], arguments=arguments)


__all__ = ["ToolCall", "choose_tool", "json_for_schema", "json_object", "tool_call"]
