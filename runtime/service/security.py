"""The service's guards: the bearer token, body size limits, and headers on every answer."""

from __future__ import annotations

import hmac
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# Routes anyone on the machine may call: they say nothing about runs or secrets. The
# dashboard (/ui) checks its own session cookie and sends strangers to its login form.
PUBLIC_PATHS = frozenset({"/health", "/", "/favicon.ico"})
COOKIE_PATHS = "/ui/"
SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),
    (b"referrer-policy", b"no-referrer"),
]


class BodyTooLarge(Exception):
    pass


def error_response(status: int, kind: str, message: str, **extra: Any) -> JSONResponse:
    headers = {"www-authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(
        {"error": {"type": kind, "message": message, **extra}}, status_code=status, headers=headers
    )


class TokenGuard:
    """Every route but :data:`PUBLIC_PATHS` needs ``Authorization: Bearer TOKEN``.

    The token is compared in constant time, so its bytes cannot be found by timing.
    """

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._expected = f"Bearer {token}".encode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] in PUBLIC_PATHS
            or scope["path"].startswith(COOKIE_PATHS)
        ):
            await self.app(scope, receive, _with_headers(send))
            return
        given = b""
        for name, value in scope["headers"]:
            if name == b"authorization":
                given = value
        if not hmac.compare_digest(given, self._expected):
            response = error_response(
                401,
                "unauthorized",
                "a valid bearer token is required: send 'Authorization: Bearer TOKEN' with "
                "the token of `steprun serve` (--token-file)",
            )
            await response(scope, receive, _with_headers(send))
            return
        await self.app(scope, receive, _with_headers(send))


def _with_headers(send: Send) -> Send:
    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = list(message.get("headers", [])) + SECURITY_HEADERS
        await send(message)

    return wrapped


async def read_json(request: Request, limit: int) -> Any:
    """The request's JSON body, read no further than ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BodyTooLarge
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ValueError(f"the body is not valid JSON: {exc}") from None


__all__ = ["BodyTooLarge", "TokenGuard", "error_response", "read_json"]
