"""Fault injection: make the next requests fail the ways OpenAI's API fails.

A fault matches requests by ``method`` and ``path`` (an fnmatch pattern on the URL path,
``/v1/fine_tuning/jobs/*``) and applies to the next ``times`` of them (``null``: every
one, until cleared). Kinds:

``status``
    Answer ``status`` at once with an OpenAI error body, without processing the request:
    429 ``rate_limit_exceeded`` (with ``retry_after`` seconds → ``Retry-After``, or
    ``retry_after_ms`` → ``retry-after-ms``), 429 ``insufficient_quota``, 500, 503, ...
    ``message``/``type``/``code``/``param`` override the defaults; ``should_retry``
    sets ``x-should-retry: true|false``.
``latency``
    Read the request, wait ``seconds``, then process it. A client that gives up during the
    wait does not stop the work (as with a real server that already has the request): a
    create still creates its job, which is the case a careful client must reconcile.
``drop``
    Process the request (a job really is created), then break the connection midway
    through the response body: the client never learns the outcome.
``cut_stream``
    Pass the first ``after_chunks`` body chunks of a (streamed) response, then break the
    connection: the stream ends without ``data: [DONE]``. A response with no more chunks
    than that passes whole.
``malformed``
    Process the request, then answer a well-formed HTTP response whose JSON body is cut
    in half.
``job_failure``
    Not an HTTP fault: the next ``times`` fine-tuning jobs created (either API) fail
    ``at`` ``validating_files`` or ``running`` with ``error`` (``{code, message, param}``).

The control endpoints that manage faults are documented in ``control``.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
from collections.abc import Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import ids
from .errors import APIError, error_body

log = logging.getLogger("steprun.local")

Kind = Literal["status", "latency", "drop", "cut_stream", "malformed", "job_failure"]
KINDS: tuple[Kind, ...] = ("status", "latency", "drop", "cut_stream", "malformed", "job_failure")
HTTP_KINDS = ("status", "latency", "drop", "cut_stream", "malformed")
# Work fractions at which a planned failure happens (see ``jobs``).
FAILURE_POINTS = {"validating_files": 0.05, "running": 0.55}

_RATE_LIMIT_MESSAGE = (
    "Rate limit reached for requests in organization {org} on requests per min (RPM): "
    "Limit 3, Used 3, Requested 1. Please try again in {wait}. Visit "
    "https://platform.openai.com/account/rate-limits to learn more."
)
_QUOTA_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. For more "
    "information on this error, read the docs: "
    "https://platform.openai.com/docs/guides/error-codes/api-errors."
)
_DEFAULTS: dict[int, tuple[str, str, str | None]] = {
    # status: (message, type, code)
    400: ("Bad request.", "invalid_request_error", None),
    408: ("Request timed out.", "timeout", None),
    409: ("The request conflicted with another request.", "invalid_request_error", None),
    500: (
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
    ),
    502: ("Bad gateway.", "server_error", None),
    503: ("The server is overloaded or not ready yet.", "server_error", None),
    504: ("Gateway timeout.", "server_error", None),
}
_DEFAULT_JOB_ERROR = {
    "code": "internal_error",
    "message": "The job failed due to an internal error.",
    "param": None,
}


class InjectedDisconnect(httpx.RemoteProtocolError):
    """The connection a ``drop`` or ``cut_stream`` fault breaks.

    Under uvicorn it closes the connection mid-body. In-process (httpx's ASGITransport
    re-raises what the app raises) it reaches the client as the very error httpx raises
    for a peer that closed a connection mid-body.
    """


@dataclass
class Fault:
    id: str
    kind: Kind
    path: str = "*"
    method: str | None = None
    times: int | None = 1
    status: int = 500
    message: str | None = None
    type: str | None = None
    code: str | None = None
    param: str | None = None
    retry_after: float | None = None
    retry_after_ms: int | None = None
    should_retry: bool | None = None
    seconds: float = 0.0
    after_chunks: int = 2
    at: str = "running"
    error: dict[str, Any] = field(default_factory=lambda: dict(_DEFAULT_JOB_ERROR))
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return fnmatch.fnmatchcase(path, self.path)

    def view(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind,
            "path": self.path,
            "method": self.method,
            "times": self.times,
            "hits": self.hits,
        }
        if self.kind == "status":
            data |= {
                "status": self.status,
                "message": self.message,
                "type": self.type,
                "code": self.code,
                "param": self.param,
                "retry_after": self.retry_after,
                "retry_after_ms": self.retry_after_ms,
                "should_retry": self.should_retry,
            }
        elif self.kind == "latency":
            data["seconds"] = self.seconds
        elif self.kind == "cut_stream":
            data["after_chunks"] = self.after_chunks
        elif self.kind == "job_failure":
            data |= {"at": self.at, "error": self.error}
        return data

    def error_response(self, organization: str) -> tuple[int, dict[str, Any], dict[str, str]]:
        """Status, body and headers of a ``status`` fault."""
        headers: dict[str, str] = {}
        if self.retry_after is not None:
            headers["retry-after"] = f"{self.retry_after:g}"
        if self.retry_after_ms is not None:
            headers["retry-after-ms"] = str(self.retry_after_ms)
        if self.should_retry is not None:
            headers["x-should-retry"] = "true" if self.should_retry else "false"
        message: str
        type_: str
        code: str | None
        if self.status == 429 and self.code == "insufficient_quota":
            message, type_, code = _QUOTA_MESSAGE, "insufficient_quota", "insufficient_quota"
        elif self.status == 429:
            wait = self.retry_after if self.retry_after is not None else 20
            if self.retry_after_ms is not None:
                wait = self.retry_after_ms / 1000
            message = _RATE_LIMIT_MESSAGE.format(org=organization, wait=f"{wait:g}s")
            type_, code = "requests", "rate_limit_exceeded"
        else:
            message, type_, code = _DEFAULTS.get(
                self.status, (f"Injected error {self.status}.", "server_error", None)
            )
        body = error_body(
            self.message or message,
            type=self.type or type_,
            param=self.param,
            code=self.code if self.code is not None else code,
        )
        return self.status, body, headers

    def failure_plan(self) -> dict[str, Any]:
        error = {**_DEFAULT_JOB_ERROR, **self.error}
        return {"at": FAILURE_POINTS[self.at], "error": error}


def _expect(data: Mapping[str, Any], name: str, kinds: tuple[type, ...], what: str) -> Any:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) and bool not in kinds:
        raise _bad(f"'{name}' must be {what}, not {value!r}")
    if not isinstance(value, kinds):
        raise _bad(f"'{name}' must be {what}, not {value!r}")
    return value


# The longest latency and Retry-After a fault may ask for: an hour, a day. Longer would
# only hold a connection (or a test) hostage.
MAX_LATENCY = 3600.0
MAX_RETRY_AFTER = 86400.0


def _bad(message: str) -> APIError:
    return APIError(400, f"Invalid fault: {message}.", param="fault", code="invalid_fault")


def _within(name: str, value: float, most: float) -> None:
    # Also refuses NaN and infinities, which fail both comparisons.
    if not 0 <= value <= most:
        raise _bad(f"'{name}' must be between 0 and {most:g}, not {value!r}")


def parse_fault(data: Any) -> Fault:
    """A fault from its JSON description; a 400 that says what is wrong otherwise."""
    if not isinstance(data, Mapping):
        raise _bad("expected a JSON object")
    known = {
        "kind", "path", "method", "times", "status", "message", "type", "code", "param",
        "retry_after", "retry_after_ms", "should_retry", "seconds", "after_chunks", "at", "error",
    }  # fmt: skip
    unknown = sorted(set(data) - known)
    if unknown:
        raise _bad(f"unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    kind = data.get("kind")
    if kind not in KINDS:
        raise _bad(f"'kind' must be one of {', '.join(KINDS)}, not {kind!r}")
    fault = Fault(id=ids.new_id("fault_", 12), kind=kind)
    fault.path = _expect(data, "path", (str,), "a path pattern like /v1/fine_tuning/jobs*") or "*"
    fault.method = _expect(data, "method", (str,), "an HTTP method")
    if "times" in data:
        times = _expect(data, "times", (int,), "a positive integer or null")
        if times is not None and times < 1:
            raise _bad("'times' must be a positive integer or null (every request)")
        fault.times = times
    status = _expect(data, "status", (int,), "an HTTP status code")
    if status is not None:
        if not 400 <= status <= 599:
            raise _bad(f"'status' must be an error status (400-599), not {status}")
        fault.status = status
    for name in ("message", "type", "code", "param"):
        setattr(fault, name, _expect(data, name, (str,), "a string"))
    fault.retry_after = _expect(data, "retry_after", (int, float), "a number of seconds")
    if fault.retry_after is not None:
        _within("retry_after", fault.retry_after, MAX_RETRY_AFTER)
    fault.retry_after_ms = _expect(data, "retry_after_ms", (int,), "milliseconds")
    if fault.retry_after_ms is not None:
        _within("retry_after_ms", fault.retry_after_ms, MAX_RETRY_AFTER * 1000)
    fault.should_retry = _expect(data, "should_retry", (bool,), "true or false")
    fault.seconds = float(_expect(data, "seconds", (int, float), "a number of seconds") or 0)
    _within("seconds", fault.seconds, MAX_LATENCY)
    chunks = _expect(data, "after_chunks", (int,), "a number of chunks")
    if chunks is not None:
        fault.after_chunks = max(0, chunks)
    at = _expect(data, "at", (str,), "validating_files or running")
    if at is not None:
        if at not in FAILURE_POINTS:
            raise _bad(f"'at' must be one of {', '.join(FAILURE_POINTS)}, not {at!r}")
        fault.at = at
    error = _expect(data, "error", (dict,), "an object {code, message, param}")
    if error is not None:
        fault.error = {**_DEFAULT_JOB_ERROR, **error}
    return fault


class Faults:
    """The faults armed on one backend, in the order they were added."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []

    def add(self, fault: Fault) -> Fault:
        self._faults.append(fault)
        return fault

    def clear(self) -> None:
        self._faults.clear()

    def views(self) -> list[dict[str, Any]]:
        return [fault.view() for fault in self._faults]

    def _take(self, kinds: tuple[str, ...], method: str, path: str) -> Fault | None:
        for fault in self._faults:
            if fault.kind in kinds and fault.matches(method, path):
                fault.hits += 1
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times == 0:
                        self._faults.remove(fault)
                return fault
        return None

    def take(self, method: str, path: str) -> Fault | None:
        """The HTTP fault the next request to ``path`` gets, consumed; None for none."""
        return self._take(HTTP_KINDS, method, path)

    def take_job_failure(self, path: str) -> Fault | None:
        """A planned failure for a job being created by a POST to ``path``."""
        return self._take(("job_failure",), "POST", path)


class FaultMiddleware:
    """Applies the armed HTTP faults to requests under ``/v1``."""

    def __init__(self, app: ASGIApp, faults: Faults, organization: str) -> None:
        self.app = app
        self.faults = faults
        self.organization = organization

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            await self.app(scope, receive, send)
            return
        fault = self.faults.take(scope["method"], scope["path"])
        if fault is None:
            await self.app(scope, receive, send)
            return
        log.info("fault %s (%s) on %s %s", fault.id, fault.kind, scope["method"], scope["path"])
        if fault.kind == "status":
            status, body, headers = fault.error_response(self.organization)
            await JSONResponse(body, status_code=status, headers=headers)(scope, receive, send)
        elif fault.kind == "latency":
            # The body is read before the wait: read after it, uvicorn would report the
            # departed client as a disconnect and the request would never be processed.
            buffered = await _read_body(receive)
            await asyncio.sleep(fault.seconds)
            await self.app(scope, _replay_body(buffered), send)
        elif fault.kind == "cut_stream":
            await self._cut(fault.after_chunks, scope, receive, send)
        else:
            start, content = await _capture(self.app, scope, receive)
            await _replay(fault.kind, start, content, send)

    async def _cut(self, after_chunks: int, scope: Scope, receive: Receive, send: Send) -> None:
        passed = 0

        async def limited(message: Message) -> None:
            nonlocal passed
            if message["type"] == "http.response.body" and message.get("body"):
                if passed >= after_chunks:
                    raise InjectedDisconnect("stream cut by an injected fault")
                passed += 1
            await send(message)

        try:
            await self.app(scope, receive, limited)
        except BaseExceptionGroup as group:  # anyio task groups may wrap it
            if group.subgroup(InjectedDisconnect) is None:
                raise
            raise InjectedDisconnect("stream cut by an injected fault") from None


async def _read_body(receive: Receive) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def _replay_body(body: bytes) -> Receive:
    """A receive that hands the app the body read earlier, then never reports more."""
    sent = False
    forever = asyncio.Event()

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        await forever.wait()  # a streaming response's disconnect listener waits here
        return {"type": "http.disconnect"}

    return receive


async def _capture(app: ASGIApp, scope: Scope, receive: Receive) -> tuple[Message, bytes]:
    """Run the app to completion, keeping its response instead of sending it."""
    start: MutableMapping[str, Any] = {}
    chunks: list[bytes] = []

    async def keep(message: Message) -> None:
        if message["type"] == "http.response.start":
            start.update(message)
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, keep)
    return dict(start), b"".join(chunks)


async def _replay(kind: str, start: Message, body: bytes, send: Send) -> None:
    half = body[: max(1, len(body) // 2)] if body else b""
    headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
    if kind == "malformed":
        headers.append((b"content-length", str(len(half)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": half, "more_body": False})
        return
    # drop: announce the whole body, deliver half, break the connection.
    headers.append((b"content-length", str(len(body)).encode()))
    await send({**start, "headers": headers})
    await send({"type": "http.response.body", "body": half, "more_body": True})
    raise InjectedDisconnect("connection dropped by an injected fault after processing")


__all__ = [
    "FAILURE_POINTS",
    "HTTP_KINDS",
    "KINDS",
    "Fault",
    "FaultMiddleware",
    "Faults",
    "InjectedDisconnect",
    "Kind",
    "parse_fault",
]
