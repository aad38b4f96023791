"""Check HTTP bodies against OpenAI's OpenAPI description (the shared trimmed copies).

The two files in ``tests/openai-api`` (or ``$STEPRUN_OPENAI_SPEC_DIR``) are the truth
about requests and responses:

* ``current``: ``openapi-current.yaml``, OpenAPI 3.1, validated as JSON Schema Draft 2020-12
  with the whole document registered as one ``referencing`` resource, so every ``$ref``
  resolves inside it;
* ``legacy``: ``openapi-legacy.yaml``, OpenAPI 3.0 (``/fine-tunes``), validated with
  ``openapi_schema_validator.OAS30Validator``, which knows 3.0's ``nullable``.

Usage::

    template = match_path("current", "POST", "/v1/fine_tuning/jobs")
    validate_request("current", "POST", template, body)
    validate_response("current", "POST", template, 200, response_json)
    validate_httpx_response(response)   # picks the spec and template itself, parses SSE

Every function raises :class:`ContractError` (an ``AssertionError``, so pytest shows it
well) listing every violation, each with its JSON path.

The upstream documents have quirks that a plain validator gets wrong; each is repaired
explicitly in :func:`_repair_current` / :func:`_repair_legacy`, and each repair says why.
Every repair is a gap of the documents, never a way around the backend: OpenAPI 3.0
keywords in the 3.1 document (``exclusiveMinimum: true``, ``nullable``), the ``paused``
status its own example answers, null ids of an empty file page, the ``null`` scores of
the first echoed token, the streamed ``finish_reason: null``, and the legacy integer log
probabilities. Operations newer than the trimmed copy (graders, checkpoint permissions)
are checked against the official SDK's response types.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl, urlsplit

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match
from jsonschema.protocols import Validator
from openapi_schema_validator import OAS30Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT4, DRAFT202012

if TYPE_CHECKING:
    import httpx

Spec = Literal["current", "legacy", "together", "azure"]
# OpenAI's own specs; the other providers' are checked only where a test names them.
SPECS: tuple[Spec, ...] = ("current", "legacy")
# Provider specs (trimmed copies, provenance in each folder's README), by path under tests/.
PROVIDER_FILES: dict[Spec, str] = {
    "together": "together-api/openapi.yaml",
    "azure": "azure-openai-api/openapi.yaml",
}
# Which documents are OpenAPI 3.0 (validated with OAS30Validator, which knows nullable).
_OPENAPI_30 = frozenset({"legacy", "azure"})

_FILES: dict[Spec, str] = {
    "current": "openapi-current.yaml",
    "legacy": "openapi-legacy.yaml",
}
_URIS: dict[Spec, str] = {
    "current": "urn:steprun:openai-api:current",
    "legacy": "urn:steprun:openai-api:legacy",
    "together": "urn:steprun:together-api",
    "azure": "urn:steprun:azure-openai-api",
}
# Both documents declare this server; concrete URLs carry its path before the templates.
_SERVER_PATH = "/v1"
_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")

# Bodies given as a placeholder where the spec says `format: binary` (multipart uploads).
_BINARY_PLACEHOLDER = "<binary>"


class ContractError(AssertionError):
    """A body, path or query does not match the OpenAPI description."""

    def __init__(self, where: str, errors: list[str]) -> None:
        self.where = where
        self.errors = errors
        super().__init__(f"{where}: " + "; ".join(errors))


def spec_dir() -> Path:
    """Where the OpenAPI files are: ``$STEPRUN_OPENAI_SPEC_DIR``, else ``tests/openai-api``.

    The repository carries its own copy of the trimmed specs (MIT, provenance in the
    README beside them) so that the tests need nothing outside the checkout.
    """
    override = os.environ.get("STEPRUN_OPENAI_SPEC_DIR")
    if override:
        return Path(override)
    return Path(__file__).resolve().parent / "openai-api"


# --- loading and repairing the documents ---------------------------------------------------


def _rewrite(node: Any, fix: Any) -> Any:
    """Apply ``fix`` bottom-up to every mapping of a tree; ``fix`` returns the replacement."""
    if isinstance(node, dict):
        return fix({key: _rewrite(value, fix) for key, value in node.items()})
    if isinstance(node, list):
        return [_rewrite(value, fix) for value in node]
    return node


def _schema_at(document: dict[str, Any], pointer: str) -> dict[str, Any]:
    node: Any = document
    for part in pointer.lstrip("#/").split("/"):
        node = node[part.replace("~1", "/").replace("~0", "~")]
    assert isinstance(node, dict)
    return node


def _repair_current(document: dict[str, Any]) -> dict[str, Any]:
    def fix(node: dict[str, Any]) -> dict[str, Any]:
        # OpenAI's generator writes OpenAPI 3.0 booleans `exclusiveMinimum: true` (with
        # `minimum: 0`) into this 3.1 document, e.g. learning_rate_multiplier and DPO beta.
        # Draft 2020-12 reads `exclusiveMinimum` as a number: `true` would compare as 1 and
        # reject every multiplier <= 1. The 3.0 meaning is "strictly above `minimum`".
        for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if node.get(exclusive) is True:
                node[exclusive] = node.pop(bound)
            elif node.get(exclusive) is False:
                del node[exclusive]
        # The same generator keeps 3.0's `nullable: true` on many 3.1 properties (suffix,
        # max_tokens, stop, logprobs, ...). Draft 2020-12 ignores unknown keywords, so a
        # `null` the API accepts and returns would be rejected. 3.0 semantics: null is also
        # allowed by this very schema object.
        if node.get("nullable") is True:
            del node["nullable"]
            return {"anyOf": [{"type": "null"}, node]}
        return node

    repaired: dict[str, Any] = _rewrite(document, fix)
    schemas = repaired["components"]["schemas"]
    # The spec's own example for POST /fine_tuning/jobs/{id}/pause answers
    # `"status": "paused"`, which its FineTuningJob.status enum does not list (see the
    # README's known quirks); the API really reports it, clients must accept it.
    status = schemas["FineTuningJob"]["properties"]["status"]
    status["enum"] = [*status["enum"], "paused"]
    # ListFilesResponse requires first_id/last_id as strings, but an empty page has no
    # first or last id; the API answers null there, as ListFineTuningJobCheckpointsResponse
    # declares for the same envelope.
    for key in ("first_id", "last_id"):
        schemas["ListFilesResponse"]["properties"][key] = {"type": ["string", "null"]}
    _allow_unscored_first_token(schemas["CreateCompletionResponse"])
    return repaired


def _allow_unscored_first_token(response: dict[str, Any], *, openapi30: bool = False) -> None:
    """With ``echo`` and ``logprobs`` the API answers ``null`` for the first prompt token's
    ``token_logprobs`` and ``top_logprobs`` (nothing precedes it to predict it; the
    openai-python ``Logprobs`` type is loose enough to carry it); both documents type
    those items as numbers and objects only."""
    logprobs = response["properties"]["choices"]["items"]["properties"]["logprobs"]
    shape = next((o for o in logprobs.get("anyOf", []) if o.get("type") == "object"), logprobs)
    for key in ("token_logprobs", "top_logprobs"):
        items = shape["properties"][key]["items"]
        if openapi30:
            items["nullable"] = True
        else:
            shape["properties"][key]["items"] = {"anyOf": [{"type": "null"}, items]}


def _repair_legacy(document: dict[str, Any]) -> dict[str, Any]:
    schemas = document["components"]["schemas"]
    # The 2023 document types completion `top_logprobs` values as integers, but they are
    # log probabilities (floats); the current document corrects it to `number`.
    choice = schemas["CreateCompletionResponse"]["properties"]["choices"]["items"]
    top = choice["properties"]["logprobs"]["properties"]["top_logprobs"]
    top["items"]["additionalProperties"] = {"type": "number"}
    _allow_unscored_first_token(schemas["CreateCompletionResponse"], openapi30=True)
    return document


@functools.cache
def spec_document(spec: Spec) -> dict[str, Any]:
    """The repaired OpenAPI document (do not modify it: it is shared)."""
    if spec in PROVIDER_FILES:
        with (Path(__file__).resolve().parent / PROVIDER_FILES[spec]).open() as handle:
            provider_document: dict[str, Any] = yaml.safe_load(handle)
        if spec == "together":
            # TrainingMethodSFT's train_on_inputs is `oneOf: [boolean, "auto"]` beside a
            # sibling `type: boolean`, which rejects the "auto" it also names as default.
            sft = provider_document["components"]["schemas"]["TrainingMethodSFT"]
            sft["properties"]["train_on_inputs"].pop("type", None)
        return provider_document
    if spec not in _FILES:
        raise ValueError(f"spec must be one of {SPECS}, not {spec!r}")
    with (spec_dir() / _FILES[spec]).open(encoding="utf-8") as handle:
        document = yaml.safe_load(handle)
    if spec == "current":
        return _repair_current(document)
    return _repair_legacy(document)


@functools.cache
def _registry(spec: Spec) -> Registry[Any]:
    specification = DRAFT4 if spec in _OPENAPI_30 else DRAFT202012
    resource: Resource[Any] = Resource.from_contents(
        spec_document(spec), default_specification=specification
    )
    registry: Registry[Any] = Registry().with_resource(_URIS[spec], resource)
    return registry


def _escape(part: str) -> str:
    return part.replace("~", "~0").replace("/", "~1")


def _validator(spec: Spec, pointer: str) -> Validator:
    schema = {"$ref": f"{_URIS[spec]}#{pointer}"}
    if spec not in _OPENAPI_30:
        return Draft202012Validator(schema, registry=_registry(spec))
    validator: Validator = OAS30Validator(schema, registry=_registry(spec))
    return validator


def _errors(validator: Validator, instance: Any) -> list[str]:
    found: list[ValidationError] = sorted(
        validator.iter_errors(instance), key=lambda error: list(map(str, error.absolute_path))
    )
    messages = []
    for error in found:
        # anyOf/oneOf failures hide the useful reason in their context; best_match digs it out.
        best = best_match([error])
        path = "$" + "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in best.absolute_path
        )
        messages.append(f"{path}: {_shorten(best.message)}")
    return messages


def _shorten(text: str, limit: int = 400) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _check(spec: Spec, pointer: str, instance: Any, where: str) -> None:
    errors = _errors(_validator(spec, pointer), instance)
    if errors:
        raise ContractError(where, errors)


# --- paths -----------------------------------------------------------------------------------


def _template_regex(template: str) -> re.Pattern[str]:
    pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template))
    return re.compile(f"^{pattern}$")


def _strip_server(concrete_path: str) -> str:
    path = urlsplit(concrete_path).path or concrete_path
    if path.startswith(_SERVER_PATH + "/"):
        path = path[len(_SERVER_PATH) :]
    return path


def _operation(spec: Spec, method: str, template: str) -> dict[str, Any]:
    paths = spec_document(spec)["paths"]
    item = paths.get(template)
    if item is None or method.lower() not in item:
        raise ContractError(
            f"{method.upper()} {template}", [f"the {spec} spec has no such operation"]
        )
    operation: dict[str, Any] = item[method.lower()]
    return operation


def match_path(spec: Spec, method: str, concrete_path: str) -> str:
    """The path template of ``spec`` for a concrete path (``/v1`` prefix and query allowed).

    Templates without parameters win over templated ones, as a router does.
    """
    path = _strip_server(concrete_path)
    candidates: list[str] = [
        template
        for template, item in spec_document(spec)["paths"].items()
        if method.lower() in item and _template_regex(template).match(path)
    ]
    if not candidates:
        raise ContractError(
            f"{method.upper()} {concrete_path}", [f"no operation of the {spec} spec matches"]
        )
    return min(candidates, key=lambda template: template.count("{"))


def spec_for(method: str, concrete_path: str) -> tuple[Spec, str]:
    """The spec and template describing a request: the current spec first, then legacy."""
    for spec in SPECS:
        try:
            return spec, match_path(spec, method, concrete_path)
        except ContractError:
            continue
    raise ContractError(f"{method.upper()} {concrete_path}", ["no operation in either spec"])


# --- requests --------------------------------------------------------------------------------


def _declared_properties(spec: Spec, schema: Mapping[str, Any]) -> set[str] | None:
    """Top-level property names a request schema declares (through $ref/allOf), or None
    when it accepts anything (no properties, or additionalProperties allowed explicitly)."""
    document = spec_document(spec)
    names: set[str] = set()
    stack = [schema]
    while stack:
        node = stack.pop()
        if "$ref" in node:
            stack.append(_schema_at(document, node["$ref"].split("#", 1)[1]))
        for part in node.get("allOf", []):
            stack.append(part)
        if isinstance(node.get("additionalProperties"), dict) or (
            node.get("additionalProperties") is True
        ):
            return None
        names.update(node.get("properties", {}))
    return names or None


def _binary_placeholders(body: Any) -> Any:
    if not isinstance(body, Mapping):
        return body
    return {
        key: _BINARY_PLACEHOLDER if isinstance(value, bytes | bytearray | tuple) else value
        for key, value in body.items()
    }


def validate_request(
    spec: Spec,
    method: str,
    path_template: str,
    body: Any,
    *,
    content_type: str = "application/json",
    query: Mapping[str, Any] | None = None,
    strict: bool = True,
) -> None:
    """Check a request body (and optionally its query) against the operation.

    ``content_type`` picks the request body schema; for ``multipart/form-data`` pass the
    form fields as a dict (file parts as bytes or an httpx-style tuple). With ``strict``
    a top-level field the schema does not declare is an error, as the API answers
    "Unrecognized request argument supplied" to it.
    """
    where = f"request {method.upper()} {path_template}"
    operation = _operation(spec, method, path_template)
    if query is not None:
        validate_query(spec, method, path_template, query)
    request_body = operation.get("requestBody")
    if request_body is None:
        if body not in (None, b"", {}):
            raise ContractError(where, ["the operation takes no request body"])
        return
    content = request_body.get("content", {})
    if content_type not in content:
        raise ContractError(where, [f"content type {content_type!r} not in {sorted(content)}"])
    pointer = f"/paths/{_escape(path_template)}/{method.lower()}/requestBody/content/" + _escape(
        content_type
    )
    if content_type == "multipart/form-data":
        body = _binary_placeholders(body)
    _check(spec, pointer + "/schema", body, where)
    if strict and isinstance(body, Mapping):
        declared = _declared_properties(spec, content[content_type]["schema"])
        if declared is not None:
            unknown = sorted(set(body) - declared)
            if unknown:
                raise ContractError(
                    where, [f"unrecognized request argument(s) supplied: {', '.join(unknown)}"]
                )


def _coerce(value: str, schema: Mapping[str, Any]) -> Any:
    """A query string value as the JSON type its parameter schema declares."""
    types = schema.get("type")
    kinds = set(types) if isinstance(types, list) else {types}
    if "integer" in kinds and re.fullmatch(r"-?\d+", value):
        return int(value)
    if "number" in kinds and re.fullmatch(r"-?\d+(\.\d+)?", value):
        return float(value)
    if "boolean" in kinds and value in ("true", "false"):
        return value == "true"
    return value


def validate_query(
    spec: Spec, method: str, path_template: str, query: Mapping[str, Any] | str
) -> None:
    """Check query parameters: unknown names, types, enums; ``name[key]`` for deepObject."""
    where = f"query of {method.upper()} {path_template}"
    operation = _operation(spec, method, path_template)
    item = spec_document(spec)["paths"][path_template]
    declared = {
        parameter["name"]: parameter
        for parameter in [*item.get("parameters", []), *operation.get("parameters", [])]
        if parameter.get("in") == "query"
    }
    pairs = parse_qsl(query, keep_blank_values=True) if isinstance(query, str) else query.items()
    errors: list[str] = []
    deep: dict[str, dict[str, Any] | None] = {}
    for name, raw in pairs:
        match = re.fullmatch(r"([^\[\]]+)\[([^\[\]]*)\]", name)
        if match and declared.get(match[1], {}).get("style") == "deepObject":
            fields = deep.setdefault(match[1], {})
            if fields is None:
                errors.append(f"{match[1]}: given both as null and as {name}")
                continue
            fields[match[2]] = raw
            continue
        parameter = declared.get(name)
        if parameter is None:
            errors.append(f"unknown query parameter {name!r}")
            continue
        if parameter.get("style") == "deepObject" and raw in ("null", None):
            # A deep object given whole as `null` is how GET /fine_tuning/jobs documents
            # "jobs without metadata"; the nullable schema decides whether it is allowed.
            deep[name] = None
            continue
        value = _coerce(str(raw), parameter["schema"]) if isinstance(raw, str) else raw
        validator = _validator_for_schema(spec, parameter["schema"])
        errors.extend(f"{name}: {message}" for message in _errors(validator, value))
    for name, value in deep.items():
        validator = _validator_for_schema(spec, declared[name]["schema"])
        errors.extend(f"{name}: {message}" for message in _errors(validator, value))
    if errors:
        raise ContractError(where, errors)


def _validator_for_schema(spec: Spec, schema: Mapping[str, Any]) -> Validator:
    # Parameter schemas are inline and hold no $ref in these documents, but resolving
    # against the registry costs nothing and keeps a future $ref working.
    if spec == "current":
        return Draft202012Validator(schema, registry=_registry(spec))
    validator: Validator = OAS30Validator(schema, registry=_registry(spec))
    return validator


# --- responses -------------------------------------------------------------------------------


def _response_pointer(spec: Spec, method: str, path_template: str, status: int) -> str | None:
    responses = _operation(spec, method, path_template)["responses"]
    base = f"/paths/{_escape(path_template)}/{method.lower()}/responses"
    for key in (str(status), f"{str(status)[0]}XX", "default"):
        if key in responses:
            response = responses[key]
            if "$ref" in response:
                return str(response["$ref"]).split("#", 1)[1]
            return f"{base}/{key}"
    return None


def validate_response(
    spec: Spec,
    method: str,
    path_template: str,
    status: int,
    body: Any,
    *,
    content_type: str = "application/json",
) -> None:
    """Check a decoded response body against the operation's response for ``status``.

    An error status the operation does not list (most list only 200) is checked against
    the current spec's ``ErrorResponse``: the API answers every error with that body, and
    the legacy document has no error schema at all.
    """
    where = f"response {status} to {method.upper()} {path_template}"
    pointer = _response_pointer(spec, method, path_template, status)
    if pointer is None:
        if status >= 400:
            _check("current", "/components/schemas/ErrorResponse", body, where)
            return
        raise ContractError(where, [f"status {status} is not documented"])
    response = _schema_at(spec_document(spec), pointer)
    content = response.get("content", {})
    media = content_type.split(";", 1)[0].strip()
    if media not in content:
        if status >= 400 and "application/json" in content:
            media = "application/json"
        else:
            raise ContractError(where, [f"content type {media!r} not in {sorted(content)}"])
    _check(spec, f"{pointer}/content/{_escape(media)}/schema", body, where)


# Streams the spec describes without a text/event-stream schema: which schema each `data:`
# event follows. /completions: the spec says the streamed and non-streamed objects share
# one shape. /fine-tunes/{id}/events?stream=true: each event is one FineTuneEvent.
_STREAM_ITEMS: dict[tuple[Spec, str, str], str] = {
    ("current", "post", "/completions"): (
        "/paths/~1completions/post/responses/200/content/application~1json/schema"
    ),
    ("legacy", "post", "/completions"): (
        "/paths/~1completions/post/responses/200/content/application~1json/schema"
    ),
    ("legacy", "get", "/fine-tunes/{fine_tune_id}/events"): "/components/schemas/FineTuneEvent",
}


def validate_stream_chunk(spec: Spec, method: str, path_template: str, chunk: Any) -> None:
    """Check one decoded ``data:`` event of a server-sent event stream (not ``[DONE]``)."""
    where = f"stream chunk of {method.upper()} {path_template}"
    key = (spec, method.lower(), path_template)
    if key in _STREAM_ITEMS:
        pointer = _STREAM_ITEMS[key]
        if path_template == "/completions" and isinstance(chunk, dict):
            # Every chunk but the last of each choice carries `finish_reason: null` (the
            # API's behaviour and the openai SDK's streaming type); the shared schema's enum
            # has no null, so check the rest of such a chunk with a stand-in reason.
            chunk = copy.deepcopy(chunk)
            for choice in chunk.get("choices", []):
                if isinstance(choice, dict) and choice.get("finish_reason", "") is None:
                    choice["finish_reason"] = "stop"
        _check(spec, pointer, chunk, where)
        return
    response = _response_pointer(spec, method, path_template, 200)
    if response is None:
        raise ContractError(where, ["the operation documents no 200 response"])
    content = _schema_at(spec_document(spec), response).get("content", {})
    if "text/event-stream" not in content:
        raise ContractError(where, ["the operation documents no event stream"])
    _check(spec, f"{response}/content/text~1event-stream/schema", chunk, where)


def validate_schema(spec: Spec, component: str, instance: Any) -> None:
    """Check a value against ``#/components/schemas/<component>``."""
    _check(spec, f"/components/schemas/{_escape(component)}", instance, f"schema {component}")


def sse_data(text: str) -> list[str]:
    """The ``data:`` payloads of a server-sent event stream, in order."""
    payloads: list[str] = []
    for block in re.split(r"\r?\n\r?\n", text):
        lines = [line[5:].lstrip(" ") for line in block.splitlines() if line.startswith("data:")]
        if lines:
            payloads.append("\n".join(lines))
    return payloads


def validate_sse(spec: Spec, method: str, path_template: str, text: str) -> list[Any]:
    """Check a whole event stream: every chunk, and the closing ``data: [DONE]``.

    Returns the decoded chunks.
    """
    payloads = sse_data(text)
    where = f"event stream of {method.upper()} {path_template}"
    if not payloads or payloads[-1] != "[DONE]":
        raise ContractError(where, ["the stream does not end with `data: [DONE]`"])
    chunks = []
    for payload in payloads[:-1]:
        try:
            chunk = json.loads(payload)
        except json.JSONDecodeError as exc:
            raise ContractError(where, [f"a data event is not JSON: {exc}"]) from exc
        validate_stream_chunk(spec, method, path_template, chunk)
        chunks.append(chunk)
    return chunks


def validate_httpx_response(response: httpx.Response) -> None:
    """Check a read ``httpx.Response`` against whichever spec describes its request.

    JSON bodies against the response schema, event streams chunk by chunk, the raw file
    content endpoint as the string the spec declares; an error for a path neither spec
    documents against ``ErrorResponse``.
    """
    request = response.request
    try:
        spec, template = spec_for(request.method, request.url.path)
    except ContractError:
        if response.status_code < 400 and _validate_by_sdk(
            request.method, request.url.path, response
        ):
            return
        if response.status_code < 400:
            raise
        # The API answers any URL it does not serve with its error body ("Invalid URL").
        _check("current", "/components/schemas/ErrorResponse", response.json(), "error response")
        return
    media = response.headers.get("content-type", "").split(";", 1)[0].strip()
    if media == "text/event-stream":
        validate_sse(spec, request.method, template, response.text)
        return
    if media == "application/json":
        try:
            body = response.json()
        except json.JSONDecodeError as exc:
            raise ContractError(
                f"response {response.status_code} to {request.method} {template}",
                [f"the body is not JSON: {exc}"],
            ) from exc
    else:
        # Only /files/{id}/content answers raw bytes; the spec types that body as a string.
        body = response.text
    validate_response(spec, request.method, template, response.status_code, body)


# Operations the trimmed copy of the spec does not have (it is fixed, a copy of shared/):
# their answers are checked against the official openai SDK's response types instead, which
# are generated from the full spec.
_SDK_TYPES: tuple[tuple[str, re.Pattern[str], str], ...] = (
    ("POST", re.compile(r"/v1/fine_tuning/alpha/graders/run"),
     "openai.types.fine_tuning.alpha:GraderRunResponse"),
    ("POST", re.compile(r"/v1/fine_tuning/alpha/graders/validate"),
     "openai.types.fine_tuning.alpha:GraderValidateResponse"),
    ("POST", re.compile(r"/v1/fine_tuning/checkpoints/[^/]+/permissions"),
     "openai.types.fine_tuning.checkpoints:PermissionRetrieveResponse"),
    ("GET", re.compile(r"/v1/fine_tuning/checkpoints/[^/]+/permissions"),
     "openai.types.fine_tuning.checkpoints:PermissionRetrieveResponse"),
    ("DELETE", re.compile(r"/v1/fine_tuning/checkpoints/[^/]+/permissions/[^/]+"),
     "openai.types.fine_tuning.checkpoints:PermissionDeleteResponse"),
)  # fmt: skip


def _validate_by_sdk(method: str, path: str, response: httpx.Response) -> bool:
    """Check an answer to an operation of ``_SDK_TYPES``; False for any other operation."""
    import importlib

    import pydantic

    for verb, pattern, target in _SDK_TYPES:
        if verb == method.upper() and pattern.fullmatch(path):
            module, name = target.split(":")
            model = getattr(importlib.import_module(module), name)
            where = f"response {response.status_code} to {method.upper()} {path}"
            try:
                model.model_validate(response.json(), strict=False)
            except (pydantic.ValidationError, json.JSONDecodeError) as exc:
                raise ContractError(where, [str(exc)]) from exc
            return True
    return False


def iter_templates(spec: Spec) -> Iterable[tuple[str, str]]:
    """Every (METHOD, template) the spec documents."""
    for template, item in spec_document(spec)["paths"].items():
        for method in _METHODS:
            if method in item:
                yield method.upper(), template


__all__ = [
    "SPECS",
    "ContractError",
    "Spec",
    "iter_templates",
    "match_path",
    "spec_dir",
    "spec_document",
    "spec_for",
    "sse_data",
    "validate_httpx_response",
    "validate_query",
    "validate_request",
    "validate_response",
    "validate_schema",
    "validate_sse",
    "validate_stream_chunk",
]
