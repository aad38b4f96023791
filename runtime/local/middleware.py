"""What wraps every request: OpenAI's response headers, the API key check, the ledger.

:class:`ResponseHeaders` is outermost, so that every response, a fault's or a 401
included, carries ``x-request-id``, ``openai-*`` and ``x-ratelimit-*`` headers. Only a
request that passed the key check is counted (:class:`Accounting`): in the ledger and in
the rate-limit window, so that someone without the key can use up neither.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterable
from email.utils import formatdate

from starlette.datastructures import MutableHeaders
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import ids
from .context import Context
from .errors import INVALID_REQUEST, error_body

OPENAI_VERSION = "2020-10-01"
# Requests served at once before more get a 429 (see Accounting).
MAX_IN_FLIGHT = 256
_MISSING_KEY = (
    "You didn't provide an API key. You need to provide your API key in an Authorization "
    "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field "
    "(with blank username) if you're accessing the API from your browser and are prompted for "
    "a username and password. You can obtain an API key from "
    "https://platform.openai.com/account/api-keys."
)
_BUSY = (
    "The local backend is answering too many requests at once; retry after the time in "
    "the Retry-After header."
)
_WRONG_KEY = (
    "Incorrect API key provided: {masked}. You can find your API key at "
    "https://platform.openai.com/account/api-keys."
)


def _duration(seconds: float) -> str:
    """A reset delay as OpenAI writes it: ``120ms``, ``8.64s``, ``6m0s``."""
    if seconds < 1:
        return f"{max(1, round(seconds * 1000))}ms"
    if seconds < 60:
        return f"{seconds:.3g}s"
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}m{rest}s"


class ResponseHeaders:
    """Adds OpenAI's headers (the rate-limit ones as :class:`Accounting` counted)."""

    def __init__(self, app: ASGIApp, ctx: Context) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx = self.ctx
        started = time.perf_counter()
        request_id = ids.request_id()
        scope.setdefault("state", {})["request_id"] = request_id
        api = scope["path"].startswith("/v1/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["x-request-id"] = request_id
                # The backend's own clock (settable in tests): clients that plan around
                # shutdown dates read "today" from here, as they would from OpenAI's.
                headers["date"] = formatdate(ctx.now(), usegmt=True)
                if api:
                    rate = ctx.rate
                    reset = _duration(max(0.0, 60 - (ctx.now() - rate.started)))
                    headers["openai-organization"] = ctx.organization_name
                    headers["openai-version"] = OPENAI_VERSION
                    elapsed = round((time.perf_counter() - started) * 1000)
                    headers["openai-processing-ms"] = str(elapsed)
                    headers["x-ratelimit-limit-requests"] = str(rate.requests_limit)
                    headers["x-ratelimit-limit-tokens"] = str(rate.tokens_limit)
                    headers["x-ratelimit-remaining-requests"] = str(
                        max(0, rate.requests_limit - rate.requests)
                    )
                    headers["x-ratelimit-remaining-tokens"] = str(
                        max(0, rate.tokens_limit - rate.tokens)
                    )
                    headers["x-ratelimit-reset-requests"] = reset
                    headers["x-ratelimit-reset-tokens"] = reset
            await send(message)

        await self.app(scope, receive, with_headers)


class Accounting:
    """Counts an admitted request (ledger, rate window) and brings jobs up to now.

    At most ``max_in_flight`` requests are served at once; more get a 429 with
    ``Retry-After`` at once, so that a flood of requests is answered instead of queued
    until its clients give up.
    """

    def __init__(
        self, app: ASGIApp, ctx: Context, create_paths: Iterable[str], max_in_flight: int
    ) -> None:
        self.app = app
        self.ctx = ctx
        self.create_paths = frozenset(create_paths)
        self.max_in_flight = max_in_flight
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.max_in_flight:
            body = error_body(_BUSY, type="requests", code="rate_limit_exceeded")
            await JSONResponse(body, status_code=429, headers={"retry-after": "1"})(
                scope, receive, send
            )
            return
        ctx = self.ctx
        path = scope["path"]
        if scope["method"] == "POST" and path in self.create_paths:
            ctx.store.count_create_request(path)
        if path.startswith("/v1/"):
            ctx.rate.roll(ctx.now())
            ctx.rate.requests += 1
            # Jobs finish on the clock; bring them up to now before anything reads them.
            ctx.settle()
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


class ApiKeyCheck:
    """With an API key configured, a request without it (or with another) gets OpenAI's 401."""

    def __init__(self, app: ASGIApp, api_key: str | None) -> None:
        self.app = app
        self.api_key = api_key

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.api_key is None:
            await self.app(scope, receive, send)
            return
        authorization = ""
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value.decode("latin-1")
        scheme, _, key = authorization.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            body = error_body(_MISSING_KEY, type=INVALID_REQUEST)
        elif not secrets.compare_digest(key.encode(), self.api_key.encode()):
            body = error_body(
                _WRONG_KEY.format(masked=ids.mask_key(key)),
                type=INVALID_REQUEST,
                code="invalid_api_key",
            )
        else:
            await self.app(scope, receive, send)
            return
        await JSONResponse(body, status_code=401)(scope, receive, send)


__all__ = ["MAX_IN_FLIGHT", "OPENAI_VERSION", "Accounting", "ApiKeyCheck", "ResponseHeaders"]
