"""``/openai/v1``: Azure OpenAI's v1 API, and the management API's deployments.

Requests carry the key in ``api-key`` (not ``Authorization``) and may say
``api-version`` (``v1`` or ``preview``); a job may say ``trainingType``. Each is turned
into the ``/v1`` request of the backend behind, whose answer comes back with Azure's
``apim-request-id`` and, for an error, Azure's ``type: "error"``. A model answers only
through a deployment, made with the management API's
``PUT /subscriptions/{s}/resourceGroups/{g}/providers/Microsoft.CognitiveServices/
accounts/{a}/deployments/{name}``; chat and completions name the deployment as their
``model``. Deployments live as long as the backend (they are not saved with its state).
"""

from __future__ import annotations

import json
import re
import secrets
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..context import Context
from .asgi import answer, call, json_body, read_body, replay, with_header

PREFIX = "/openai/v1/"
API_VERSIONS = ("v1", "preview")
TRAINING_TYPES = ("Standard", "GlobalStandard", "Developer")
_BY_DEPLOYMENT = re.compile(
    r"^/v1/deployments/(?P<name>[^/]+)/(?P<what>chat/completions|completions)$"
)
_DEPLOYMENT = re.compile(
    r"^/subscriptions/(?P<sub>[^/]+)/resourceGroups/(?P<group>[^/]+)/providers/"
    r"Microsoft\.CognitiveServices/accounts/(?P<account>[^/]+)/deployments/(?P<name>[^/]+)$",
    re.IGNORECASE,
)


def azure_error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "type": "error"}}


class AzureDialect:
    def __init__(self, app: ASGIApp, ctx: Context) -> None:
        self.app = app
        self.ctx = ctx
        # Deployment name → its resource, as the management API returns it.
        self.deployments: dict[str, dict[str, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and path.startswith("/subscriptions/"):
            await self.management(scope, receive, send)
        elif scope["type"] == "http" and path.startswith(PREFIX):
            await self.data_plane(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    # -- the v1 data plane -------------------------------------------------------------

    async def data_plane(self, scope: Scope, receive: Receive, send: Send) -> None:
        query = parse_qsl(scope["query_string"].decode("latin-1"), keep_blank_values=True)
        versions = [v for k, v in query if k == "api-version"]
        if versions and versions[-1] not in API_VERSIONS:
            await answer(
                send,
                400,
                azure_error(
                    "BadRequest",
                    f"API version not supported: {versions[-1]!r}; use v1 or preview",
                ),
            )
            return
        key = dict(scope["headers"]).get(b"api-key")
        headers = with_header(scope, "api-key", None)
        headers = [(k, v) for k, v in headers if k != b"authorization"]
        if key is not None:
            headers.append((b"authorization", b"Bearer " + key))
        inner_path = "/v1/" + scope["path"][len(PREFIX) :]
        body = await read_body(receive)
        method = scope["method"]
        if method == "POST" and inner_path == "/v1/fine_tuning/jobs":
            data = json_body(body)
            if isinstance(data, dict) and "trainingType" in data:
                training_type = data.pop("trainingType")
                if training_type not in TRAINING_TYPES:
                    await answer(
                        send,
                        400,
                        azure_error(
                            "invalidPayload",
                            f"trainingType must be one of {', '.join(TRAINING_TYPES)}, "
                            f"not {training_type!r}",
                        ),
                    )
                    return
                body = json.dumps(data).encode()
        routed = _BY_DEPLOYMENT.match(inner_path)
        if routed is not None:
            # The SDK's AzureOpenAI puts the deployment in the path, as Azure's older API did.
            inner_path = f"/v1/{routed['what']}"
        if method == "POST" and inner_path in ("/v1/chat/completions", "/v1/completions"):
            data = json_body(body)
            model = data.get("model") if isinstance(data, dict) else None
            if routed is not None and isinstance(data, dict):
                data["model"] = model = routed["name"]
            if isinstance(model, str):
                deployment = self.deployments.get(model)
                if deployment is None:
                    await answer(
                        send,
                        404,
                        azure_error(
                            "DeploymentNotFound",
                            f"The API deployment {model} for this resource does not exist. "
                            "Deploy the model first (the deploy step), then name the "
                            "deployment as the model.",
                        ),
                    )
                    return
                data["model"] = deployment["properties"]["model"]["name"]
                body = json.dumps(data).encode()
        headers = [(k, v) for k, v in headers if k != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        inner = {
            **scope,
            "path": inner_path,
            "raw_path": inner_path.encode(),
            "query_string": urlencode([(k, v) for k, v in query if k != "api-version"]).encode(),
            "headers": headers,
        }
        await self.app(inner, replay(body), _AzureAnswer(send))

    # -- the management API's deployments ------------------------------------------------

    async def management(self, scope: Scope, receive: Receive, send: Send) -> None:
        found = _DEPLOYMENT.match(scope["path"])
        if found is None:
            await answer(send, 404, azure_error("NotFound", f"no such resource {scope['path']}"))
            return
        authorization = dict(scope["headers"]).get(b"authorization", b"").decode("latin-1")
        token = authorization[7:].strip() if authorization.lower().startswith("bearer ") else ""
        if not token or (
            # A backend guarded by a key takes it as the management token too.
            self.ctx.api_key is not None
            and not secrets.compare_digest(token.encode(), self.ctx.api_key.encode())
        ):
            await answer(
                send,
                401,
                azure_error(
                    "AuthenticationFailed",
                    "Authentication failed. The 'Authorization' header is missing or its "
                    "bearer token is not valid.",
                ),
            )
            return
        query = dict(parse_qsl(scope["query_string"].decode("latin-1")))
        if not query.get("api-version"):
            await answer(
                send,
                400,
                azure_error(
                    "MissingApiVersionParameter",
                    "The api-version query parameter (?api-version=) is required for all requests.",
                ),
            )
            return
        name = found["name"]
        method = scope["method"]
        body = await read_body(receive)
        if method == "GET":
            deployment = self.deployments.get(name)
            if deployment is None:
                await answer(
                    send, 404, azure_error("DeploymentNotFound", f"Deployment {name} not found.")
                )
                return
            deployment["properties"]["provisioningState"] = "Succeeded"
            await answer(send, 200, deployment)
        elif method == "DELETE":
            self.deployments.pop(name, None)
            await answer(send, 200, {})
        elif method == "PUT":
            await self.deploy(scope, send, name, body)
        else:
            await answer(send, 405, azure_error("MethodNotAllowed", f"{method} is not allowed"))

    async def deploy(self, scope: Scope, send: Send, name: str, body: bytes) -> None:
        data = json_body(body)
        model = (
            data.get("properties", {}).get("model", {}) if isinstance(data, dict) else {}
        ) or {}
        model_name = model.get("name") if isinstance(model, dict) else None
        if not isinstance(model_name, str) or not model_name:
            await answer(
                send,
                400,
                azure_error("InvalidResourceProperties", "properties.model.name is required."),
            )
            return
        key = self.ctx.api_key
        check = await call(
            self.app,
            scope,
            "GET",
            f"/v1/models/{model_name}",
            headers=[(b"authorization", f"Bearer {key}".encode())] if key else [],
        )
        if check.status != 200:
            await answer(
                send,
                400,
                azure_error(
                    "DeploymentModelNotSupported",
                    f"The model '{model_name}' is not a model of this resource; deploy a "
                    "fine-tuned model whose job succeeded.",
                ),
            )
            return
        created = name not in self.deployments
        self.deployments[name] = {
            "id": scope["path"],
            "name": name,
            "type": "Microsoft.CognitiveServices/accounts/deployments",
            "sku": (data or {}).get("sku") or {"name": "standard", "capacity": 1},
            "properties": {
                "model": {"format": "OpenAI", "version": "1", **model},
                # Azure answers while it provisions; the next GET finds it Succeeded.
                "provisioningState": "Creating",
            },
            "systemData": {"createdAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())},
        }
        await answer(send, 201 if created else 200, self.deployments[name])


class _AzureAnswer:
    """Passes the answer on with Azure's request id header and its error ``type``."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.start: Message | None = None
        self.chunks: list[bytes] = []

    async def __call__(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = list(message.get("headers", []))
            request_id = dict(headers).get(b"x-request-id")
            if request_id:
                headers.append((b"apim-request-id", request_id))
            message = {**message, "headers": headers}
            if message["status"] < 400:
                await self.send(message)
            else:
                self.start = message
            return
        if self.start is None:
            await self.send(message)
            return
        self.chunks.append(message.get("body", b""))
        if message.get("more_body"):
            return
        content = b"".join(self.chunks)
        error = json_body(content)
        if isinstance(error, dict) and isinstance(error.get("error"), dict):
            # Azure's errors say type "error" whatever went wrong, and leave out what
            # they do not know (its schema has no null param or code).
            fields = {k: v for k, v in error["error"].items() if v is not None}
            error["error"] = {**fields, "type": "error"}
            content = json.dumps(error).encode()
        headers = [(k, v) for k, v in self.start["headers"] if k != b"content-length"]
        headers.append((b"content-length", str(len(content)).encode()))
        await self.send({**self.start, "headers": headers})
        await self.send({"type": "http.response.body", "body": content})


__all__ = ["API_VERSIONS", "PREFIX", "TRAINING_TYPES", "AzureDialect"]
