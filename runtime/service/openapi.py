"""The service's OpenAPI 3.1 document, generated from the step catalog.

One operation per step type (``POST /v1/steps/{type}``, its request body holding the step's
config schema), plus the run routes. Step schemas ``$ref`` shared definitions in other
schema files (``openai.defs.schema.json#/$defs/job_id``); an importer such as n8n's or a
custom-connector wizard resolves only ``#/components/...``, so every referenced definition
is hoisted into ``components.schemas`` and each ``$ref`` rewritten to point there.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import urldefrag, urljoin

from ..validation import resolve_schema

if TYPE_CHECKING:
    from ..runtime import Runtime
    from ..schemas import SchemaRegistry

_DROP = {"$id", "$schema", "$defs", "definitions"}
_NAME_CHARS = re.compile(r"[^A-Za-z0-9._-]+")


class _Bundler:
    """Hoists every ``$ref`` target into ``components`` under a stable, readable name."""

    def __init__(self, registry: SchemaRegistry) -> None:
        self.registry = registry
        self.components: dict[str, Any] = {}
        self._names: dict[str, str] = {}  # absolute URI of a target -> component name

    def hoist(self, name: str, schema: Mapping[str, Any], base_uri: str) -> dict[str, str]:
        """Put ``schema`` under ``name`` and return a ``$ref`` to it."""
        self._names[base_uri] = name
        self.components[name] = {}  # reserved first: a schema may refer to itself
        self.components[name] = self._walk(schema, schema, base_uri)
        return {"$ref": f"#/components/schemas/{name}"}

    def _walk(self, node: Any, root: Mapping[str, Any], base_uri: str) -> Any:
        if isinstance(node, list):
            return [self._walk(item, root, base_uri) for item in node]
        if not isinstance(node, Mapping):
            return node
        out: dict[str, Any] = {}
        for key, value in node.items():
            if key in _DROP:
                continue
            if key == "$ref" and isinstance(value, str):
                out.update(self._ref(value, root, base_uri))
            elif key in ("properties", "patternProperties", "dependentSchemas"):
                out[key] = {k: self._walk(v, root, base_uri) for k, v in value.items()}
            else:
                out[key] = self._walk(value, root, base_uri)
        return out

    def _ref(self, ref: str, root: Mapping[str, Any], base_uri: str) -> dict[str, str]:
        target_uri = urljoin(base_uri, ref)
        if target_uri in self._names:
            return {"$ref": f"#/components/schemas/{self._names[target_uri]}"}
        document_uri, pointer = urldefrag(target_uri)
        document = root if ref.startswith("#") else self.registry.registry.contents(document_uri)
        target = _pointer(document, pointer)
        stem = document_uri.rsplit("/", 1)[-1].removesuffix(".schema.json")
        name = _NAME_CHARS.sub("_", f"{stem}.{pointer.rsplit('/', 1)[-1]}" if pointer else stem)
        while name in self.components:
            name += "_"
        self._names[target_uri] = name
        self.components[name] = {}
        self.components[name] = self._walk(target, document, document_uri)
        return {"$ref": f"#/components/schemas/{name}"}


def _pointer(document: Any, pointer: str) -> Any:
    node = document
    for part in [p for p in pointer.split("/") if p]:
        part = part.replace("~1", "/").replace("~0", "~")
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


ERROR_OBJECT: dict[str, Any] = {
    "type": "object",
    "description": "A step's error object, as a merge field holds it after a handled error.",
    "required": ["type", "message"],
    "properties": {
        "type": {"type": "string", "examples": ["api_error", "outcome_unknown"]},
        "message": {"type": "string"},
        "code": {"type": ["string", "null"]},
        "param": {"type": ["string", "null"]},
        "status": {"type": ["integer", "null"]},
        "request_id": {"type": ["string", "null"]},
        "step": {"type": ["string", "null"]},
        "problems": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "path": {"type": ["string", "null"]},
                    "message": {"type": "string"},
                },
            },
        },
    },
}

STEP_OUTCOME: dict[str, Any] = {
    "type": "object",
    "description": (
        "What one step did. `status` is `succeeded` (output holds the step's JSON result), "
        "`failed` (error holds the error object) or `invalid` (refused before it ran)."
    ),
    "required": ["status", "output", "error", "report"],
    "properties": {
        "status": {"type": "string", "enum": ["succeeded", "failed", "invalid"]},
        "output": {"description": "The step's JSON result (for openai.* steps, the API object)."},
        "error": {
            "oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/ErrorObject"}],
        },
        "report": {
            "description": "The step's report (redacted).",
            "type": ["object", "null"],
        },
    },
}

SERVICE_ERROR: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {"error": {"$ref": "#/components/schemas/ErrorObject"}},
}

RUN: dict[str, Any] = {
    "type": "object",
    "required": ["id", "status"],
    "properties": {
        "id": {"type": "string"},
        "flow": {"type": ["string", "null"]},
        "status": {
            "type": "string",
            "enum": [
                "queued",
                "running",
                "waiting",
                "succeeded",
                "failed",
                "cancelled",
                "interrupted",
            ],
        },
        "current_step": {"type": ["string", "null"]},
        "started": {"type": ["number", "null"]},
        "updated": {"type": ["number", "null"]},
        "steps_executed": {"type": ["integer", "null"]},
        "error": {"type": ["object", "null"]},
        "merge_fields": {"type": "object", "description": "Redacted merge fields."},
        "steps": {"type": "array", "items": {"type": "object"}},
        "callback_url": {"type": ["string", "null"]},
        "batch": {"type": ["string", "null"], "description": "The CLI batch it is a row of."},
        "row": {"type": ["integer", "null"], "description": "Its row (inputs-file line)."},
    },
}

RUN_REQUEST: dict[str, Any] = {
    "type": "object",
    "required": ["flow"],
    "additionalProperties": False,
    "properties": {
        "flow": {
            "description": "The flow: YAML text, or the flow document as a JSON object.",
            "oneOf": [{"type": "string", "maxLength": 1_000_000}, {"type": "object"}],
        },
        "inputs": {"type": "object", "description": "Input values (override the defaults)."},
        "callback_url": {
            "type": "string",
            "format": "uri",
            "pattern": "^https?://",
            "description": (
                "POSTed the run's result when it ends, signed per Standard Webhooks "
                "(webhook-id, webhook-timestamp, webhook-signature); retried with back-off."
            ),
        },
    },
}


def _json(schema: Mapping[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _errors(*statuses: int) -> dict[str, Any]:
    words = {
        400: "The request is invalid.",
        401: "No valid bearer token.",
        404: "No such run.",
        409: "The run is not in a state that allows this.",
        413: "The request body is too large.",
        504: "The step did not finish within the service's step timeout.",
    }
    return {str(s): _json(_ref("ServiceError"), words[s]) for s in statuses}


def build_openapi(runtime: Runtime, *, server_url: str | None = None) -> dict[str, Any]:
    """The OpenAPI 3.1 document of the service for this runtime's step catalog."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        app_version = version("steprun")
    except PackageNotFoundError:  # running from a source tree
        app_version = "0.0.0"
    bundler = _Bundler(runtime.schemas)
    paths: dict[str, Any] = {}
    for name in sorted(runtime.step_types):
        step_type = runtime.step_types[name]
        schema = resolve_schema(step_type, runtime.schemas)
        base = str(schema.get("$id") or f"urn:steprun:step:{name}")
        config_ref = bundler.hoist(f"{name}.config", schema, base)
        description = step_type.description or str(schema.get("description") or "")
        paths[f"/v1/steps/{name}"] = {
            "post": {
                "operationId": name.replace(".", "_"),
                "summary": step_type.title,
                "description": description,
                "tags": [name.split(".", 1)[0]],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["config"],
                                "additionalProperties": False,
                                "properties": {
                                    "config": config_ref,
                                    "authorization": {
                                        "type": "string",
                                        "description": (
                                            "The name of an authorization the service was "
                                            "given (--authorizations); secrets stay there."
                                        ),
                                    },
                                    "inputs": {
                                        "type": "object",
                                        "description": "Values the config's templates read.",
                                    },
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": _json(_ref("StepOutcome"), "The step ran (status says how)."),
                    "400": _json(
                        {"anyOf": [_ref("StepOutcome"), _ref("ServiceError")]},
                        "Refused before the step ran (a StepOutcome with status `invalid`), "
                        "or the request itself is malformed (a ServiceError).",
                    ),
                    **_errors(401, 413, 504),
                },
            }
        }
    run_id = {"name": "run_id", "in": "path", "required": True, "schema": {"type": "string"}}
    paths["/v1/runs"] = {
        "post": {
            "operationId": "start_run",
            "summary": "Start a durable run of a flow",
            "tags": ["runs"],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("RunRequest")}},
            },
            "responses": {
                "202": _json(_ref("Run"), "The run was accepted and is running."),
                **_errors(400, 401, 413),
            },
        },
        "get": {
            "operationId": "list_runs",
            "summary": "The most recent runs",
            "tags": ["runs"],
            "parameters": [
                {
                    "name": "limit",
                    "in": "query",
                    "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 50},
                }
            ],
            "responses": {
                "200": _json(
                    {
                        "type": "object",
                        "properties": {"data": {"type": "array", "items": _ref("Run")}},
                    },
                    "Runs, newest first.",
                ),
                **_errors(400, 401),
            },
        },
    }
    paths["/v1/runs/{run_id}"] = {
        "get": {
            "operationId": "get_run",
            "summary": "A run: status, position, redacted merge fields, its steps",
            "tags": ["runs"],
            "parameters": [run_id],
            "responses": {"200": _json(_ref("Run"), "The run."), **_errors(401, 404)},
        }
    }
    paths["/v1/runs/{run_id}/cancel"] = {
        "post": {
            "operationId": "cancel_run",
            "summary": "Stop a run",
            "tags": ["runs"],
            "parameters": [run_id],
            "responses": {"200": _json(_ref("Run"), "The run, stopped."), **_errors(401, 404, 409)},
        }
    }
    paths["/v1/runs/{run_id}/events"] = {
        "get": {
            "operationId": "run_events",
            "summary": "Server-sent events: the run's log lines and step reports as they happen",
            "tags": ["runs"],
            "parameters": [run_id],
            "responses": {
                "200": {
                    "description": (
                        "An event stream: `log` (a log line), `report` (a step or run report, "
                        "JSON) and a last `end` (the run's final status, JSON)."
                    ),
                    "content": {"text/event-stream": {"schema": {"type": "string"}}},
                },
                **_errors(401, 404),
            },
        }
    }
    document: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": "steprun step service",
            "version": app_version,
            "description": (
                "Run steprun's steps one at a time, or whole flows as durable runs. "
                "Every route needs `Authorization: Bearer TOKEN`."
            ),
        },
        "paths": paths,
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": {
                **bundler.components,
                "ErrorObject": ERROR_OBJECT,
                "StepOutcome": STEP_OUTCOME,
                "ServiceError": SERVICE_ERROR,
                "Run": RUN,
                "RunRequest": RUN_REQUEST,
            },
        },
        "security": [{"bearer": []}],
    }
    if server_url:
        document["servers"] = [{"url": server_url}]
    return document


__all__ = ["build_openapi"]
