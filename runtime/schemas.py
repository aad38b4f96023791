"""JSON Schemas: the built-in files in ``schemas/`` and the validators made from them.

Every built-in schema is registered under its ``$id`` (and under its file name), so one
schema can ``$ref`` shared definitions in another. Validators are built once per schema
and cached by the :class:`SchemaRegistry` of a runtime. A document :mod:`.schema_check`
finds valid needs no validator: jsonschema is imported when one is not (or is asked for).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Callable, Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

from . import schema_check

if TYPE_CHECKING:
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import ValidationError
    from referencing import Registry, Resource

SCHEMA_ID_PREFIX = "https://steprun.dev/schemas/"
# Where the flow schema finds the authorization schema when it is built on first use.
AUTHORIZATION_URI = SCHEMA_ID_PREFIX + "authorization.schema.json"


def builtin_schema_files() -> dict[str, Path]:
    """``{file name: path}`` of every schema shipped in ``steprun.schemas``."""
    root = resources.files("steprun.schemas")
    return {
        entry.name: Path(str(entry))
        for entry in root.iterdir()
        if entry.name.endswith(".schema.json")
    }


def read_schema(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return data


# Deeper than any schema we ship; a schema that refers to itself stops being inlined here.
MAX_REF_DEPTH = 16


class SchemaRegistry:
    """Built-in schemas by name, and a cache of validators."""

    def __init__(
        self,
        *,
        authorization: Mapping[str, Any] | Callable[[], Mapping[str, Any]] | None = None,
    ) -> None:
        """``authorization`` replaces the flow schema's ``$defs/authorization`` (the runtime
        builds it from the registered providers). Given as a function, it is called the
        first time a document has an authorization to check: finding the providers may
        import a step pack, which a flow without authorizations never needs."""
        self._files = builtin_schema_files()
        self._schemas: dict[str, dict[str, Any]] = {}
        self._authorization = authorization
        self._built_authorization: Resource[Any] | None = None
        self._registry: Registry[Any] | None = None
        # Each built-in document by every name a reference may use (schema_check).
        self._by_uri: dict[str, dict[str, Any]] = {}
        for name, path in self._files.items():
            schema = read_schema(path)
            if name == "flow.schema.json" and authorization is not None:
                own = (
                    {"$ref": AUTHORIZATION_URI} if callable(authorization) else dict(authorization)
                )
                schema["$defs"] = {**schema["$defs"], "authorization": own}
            self._schemas[name] = schema
            for uri in (name, SCHEMA_ID_PREFIX + name, schema.get("$id")):
                if isinstance(uri, str):
                    self._by_uri[uri] = schema
        # Keyed by id(schema); the schema is kept beside its validator so the id stays valid.
        self._validators: dict[int, tuple[Mapping[str, Any], Draft202012Validator]] = {}

    @property
    def registry(self) -> Registry[Any]:
        """The built-in schemas for jsonschema's references (built on first need)."""
        if self._registry is None:
            from referencing import Registry
            from referencing.jsonschema import DRAFT202012

            resources_ = []
            for name, schema in self._schemas.items():
                resource = DRAFT202012.create_resource(schema)
                resources_.append((name, resource))
                resources_.append((SCHEMA_ID_PREFIX + name, resource))
                if "$id" in schema:
                    resources_.append((schema["$id"], resource))
            # mypy's attrs plugin does not know the alias `retrieve` of Registry's field.
            registry: Registry[Any] = Registry(retrieve=self._retrieve)  # type: ignore[call-arg]
            self._registry = registry.with_resources(resources_)
        return self._registry

    def _retrieve(self, uri: str) -> Resource[Any]:
        from referencing.jsonschema import DRAFT202012

        if uri != AUTHORIZATION_URI or not callable(self._authorization):
            raise LookupError(f"no schema is known by {uri}")  # referencing says so
        if self._built_authorization is None:
            # Its local references ("#/$defs/duration") mean the flow schema's definitions.
            schema = _refs_into(dict(self._authorization()), SCHEMA_ID_PREFIX + "flow.schema.json")
            self._built_authorization = DRAFT202012.create_resource(schema)
        return self._built_authorization

    def surely_valid(
        self,
        schema: Mapping[str, Any],
        instance: Any,
        *,
        wild: Callable[[Any], bool] | None = None,
    ) -> bool:
        """True when :mod:`.schema_check` finds ``instance`` valid (``wild`` values taken as
        valid); False when it is not, or cannot tell: then the validator (jsonschema)
        decides, and says what is wrong."""
        base = str(schema.get("$id", ""))
        found = schema_check.check(schema, instance, base, self.resolver(schema), wild=wild)
        return found is True

    def resolver(self, schema: Mapping[str, Any]) -> schema_check.Resolve:
        """How :mod:`.schema_check` follows a ``$ref`` of ``schema``: into itself, or into a
        built-in schema by file name or ``$id``; None for anything else."""
        base = str(schema.get("$id", ""))

        def resolve(ref: str, current: str) -> tuple[Any, str] | None:
            uri, _, fragment = ref.partition("#")
            if fragment and not fragment.startswith("/"):
                return None  # an anchor
            target = urljoin(current, uri) if uri else current
            node: Any = schema if target == base else self._by_uri.get(target)
            if node is None:
                return None
            document_base = str(node.get("$id", target))
            for part in fragment.split("/")[1:] if fragment else ():
                if "%" in part:
                    return None
                part = part.replace("~1", "/").replace("~0", "~")
                if isinstance(node, Mapping) and part in node:
                    node = node[part]
                elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
                    node = node[int(part)]
                else:
                    return None
            return node, document_base

        return resolve

    def builtin(self, name: str) -> dict[str, Any] | None:
        return self._schemas.get(name)

    def self_contained(self, schema: Mapping[str, Any]) -> dict[str, Any]:
        """``schema`` with every ``$ref`` replaced by what it points to, in other schema
        files too: one document that a reader, or a tool with no registry, can use alone."""

        def walk(node: Any, resolver: Any, depth: int) -> Any:
            if isinstance(node, list):
                return [walk(item, resolver, depth) for item in node]
            if not isinstance(node, Mapping):
                return node
            out = {k: walk(v, resolver, depth) for k, v in node.items() if k != "$ref"}
            ref = node.get("$ref")
            if not isinstance(ref, str) or depth > MAX_REF_DEPTH:
                return out if ref is None else {**out, "$ref": ref}
            resolved = resolver.lookup(ref)
            target = walk(resolved.contents, resolved.resolver, depth + 1)
            if not isinstance(target, Mapping):
                return target
            inlined = {k: v for k, v in target.items() if k not in ("$id", "$schema", "$defs")}
            return {**inlined, **out}  # the referring schema's own title/default win

        top = self.registry.resolver(base_uri=str(schema.get("$id", "")))
        found: dict[str, Any] = walk(schema, top, 0)
        found.pop("$defs", None)  # every local reference is inlined too
        return found

    def validator(self, schema: Mapping[str, Any]) -> Draft202012Validator:
        cached = self._validators.get(id(schema))
        if cached is None:
            from jsonschema import Draft202012Validator

            cached = (schema, Draft202012Validator(schema, registry=self.registry))
            self._validators[id(schema)] = cached
        return cached[1]


def _refs_into(node: Any, base: str) -> Any:
    """``node`` with each local ``$ref`` (``#/…``) pointing into the document ``base``."""
    if isinstance(node, list):
        return [_refs_into(item, base) for item in node]
    if not isinstance(node, Mapping):
        return node
    out = {k: _refs_into(v, base) for k, v in node.items()}
    ref = out.get("$ref")
    if isinstance(ref, str) and ref.startswith("#"):
        out["$ref"] = base + ref
    return out


def describe(error: ValidationError) -> str:
    """One plain sentence for a jsonschema error: what was expected, what was found."""
    found = _short(error.instance)
    validator, expected = error.validator, _value(error)
    schema = error_schema(error)
    if validator == "required":
        missing = [
            k for k in expected if isinstance(error.instance, dict) and k not in error.instance
        ]
        # jsonschema raises one error per missing key ("'flow' is a required property"):
        # name that key only, or two missing keys print the same sentence twice.
        own = [k for k in missing if str(error.message).startswith(f"{k!r} ")]
        names = ", ".join(repr(k) for k in own or missing) or "?"
        return f"missing required key {names}"
    if validator == "additionalProperties" and isinstance(error.instance, dict):
        allowed = sorted((schema.get("properties") or {}).keys())
        extra = [k for k in error.instance if k not in allowed]
        return "; ".join(unknown_key(k, allowed) for k in extra)
    if validator == "type":
        wanted = expected if isinstance(expected, str) else " or ".join(expected)
        return f"expected {_article(wanted)}, found {_json_type(error.instance)} {found}"
    if validator == "enum":
        options = ", ".join(json.dumps(v) for v in expected)
        hint = ""
        if isinstance(error.instance, str):
            close = difflib.get_close_matches(error.instance, [str(v) for v in expected], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"expected one of {options}, found {found}{hint}"
    if validator == "const":
        return f"expected {json.dumps(expected)}, found {found}"
    if validator == "pattern":
        described = schema.get("description") or f"the pattern {expected}"
        return f"{found} does not match {described}"
    if validator in ("minLength", "maxLength"):
        return f"expected a string of {_bound(validator, expected)} characters, found {found}"
    if validator in ("minItems", "maxItems"):
        return f"expected a list of {_bound(validator, expected)} items, found {found}"
    if validator in ("minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"):
        words = {
            "minimum": "at least",
            "maximum": "at most",
            "exclusiveMinimum": "more than",
            "exclusiveMaximum": "less than",
        }
        return f"expected a number {words[validator]} {expected}, found {found}"
    if validator in ("oneOf", "anyOf"):
        branches = expected if isinstance(expected, list) else []
        if branches and all(set(b) == {"required"} for b in branches):
            options = " or ".join(", ".join(repr(k) for k in b["required"]) for b in branches)
            how = "exactly one" if validator == "oneOf" else "at least one"
            return f"expected {how} of {options}, found {found}"
        described = schema.get("description")
        if isinstance(described, str) and described.startswith(("a ", "an ")):
            return f"expected {described}, found {found}"
        forms = [_form(b) for b in branches if isinstance(b, Mapping)]
        if forms and all(forms):
            return f"expected {' or '.join(str(f) for f in forms)}, found {found}"
        if isinstance(error.instance, dict) and "title" not in schema:
            return f"found {found}, which matches none of the allowed forms" + _best_context(error)
        return f"found {found}, which is not {schema.get('title', 'an allowed form')}"
    if validator == "dependentRequired" and isinstance(expected, dict):
        for key, needs in expected.items():
            if isinstance(error.instance, dict) and key in error.instance:
                missing = [n for n in needs if n not in error.instance]
                if missing:
                    return f"{key!r} needs {', '.join(repr(m) for m in missing)} as well"
    if validator == "not" and isinstance(schema.get("description"), str):
        return str(schema["description"])
    return str(error.message)


def _form(schema: Mapping[str, Any]) -> str | None:
    """A short phrase for one allowed form of a value ("an integer from 1 to 50"), or None
    when the form is too rich to say in a phrase."""
    if "const" in schema:
        return json.dumps(schema["const"])
    if "enum" in schema:
        return "one of " + ", ".join(json.dumps(v) for v in schema["enum"])
    kind = schema.get("type")
    if not isinstance(kind, str) or "$ref" in schema:
        return None
    if kind == "null":
        return "null"
    if kind in ("integer", "number"):
        low, high = schema.get("minimum"), schema.get("maximum")
        noun = _article(kind)
        if low is not None and high is not None:
            return f"{noun} from {low} to {high}"
        if low is not None:
            return f"{noun} of at least {low}"
        return f"{noun} of at most {high}" if high is not None else noun
    if kind == "array":
        items = schema.get("items")
        of = _form(items) if isinstance(items, Mapping) else None
        if of is None or not of.startswith(("a ", "an ")):
            return None
        most = schema.get("maxItems")
        return f"a list of {f'up to {most} ' if most else ''}{of.split(' ', 1)[1]}s"
    return {"string": "a string", "boolean": "true or false", "object": "a mapping"}.get(kind)


def error_schema(error: ValidationError) -> Mapping[str, Any]:
    """The (sub)schema an error is about; a boolean schema has no keywords to show."""
    return error.schema if isinstance(error.schema, Mapping) else {}


def _value(error: ValidationError) -> Any:
    return error.validator_value


def _best_context(error: ValidationError) -> str:
    if not error.context:
        return ""
    deepest = max(error.context, key=lambda e: len(e.absolute_path))
    return f" (closest: {describe(deepest)})"


def unknown_key(key: str, allowed: Iterable[str]) -> str:
    allowed = list(allowed)
    close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
    if close:
        return f"unknown key {key!r}; did you mean {close[0]!r}?"
    return f"unknown key {key!r}; expected one of {', '.join(allowed)}"


def _bound(validator: str, expected: Any) -> str:
    return f"at least {expected}" if validator.startswith("min") else f"at most {expected}"


def _article(word: str) -> str:
    return ("an " if word[:1] in "aeiou" else "a ") + word


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


def _short(value: Any, limit: int = 60) -> str:
    try:
        text = json.dumps(value, default=str)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


__all__ = [
    "SCHEMA_ID_PREFIX",
    "SchemaRegistry",
    "builtin_schema_files",
    "describe",
    "error_schema",
    "unknown_key",
]
