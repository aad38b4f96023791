"""Calling the backend behind a dialect in process, and answering in JSON."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


async def read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def replay(body: bytes) -> Receive:
    """A ``receive`` that hands the app ``body`` once, then waits like a quiet client."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


def with_header(scope: Scope, name: str, value: str | None) -> list[tuple[bytes, bytes]]:
    """The scope's headers with ``name`` set to ``value`` (or removed when None)."""
    key = name.lower().encode()
    headers = [(k, v) for k, v in scope["headers"] if k != key]
    if value is not None:
        headers.append((key, value.encode("latin-1")))
    return headers


async def call(
    app: ASGIApp,
    scope: Scope,
    method: str,
    path: str,
    *,
    query: str = "",
    body: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
) -> Reply:
    """Send one request to ``app`` in process, as the client's request in ``scope`` would."""
    inner = {
        **scope,
        "method": method,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "headers": headers if headers is not None else list(scope["headers"]),
    }
    inner.pop("state", None)
    status = 500
    response_headers: dict[str, str] = {}
    chunks: list[bytes] = []

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
            response_headers.update(
                (k.decode("latin-1").lower(), v.decode("latin-1"))
                for k, v in message.get("headers", [])
            )
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(inner, replay(body), send)
    return Reply(status, response_headers, b"".join(chunks))


async def answer(send: Send, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
    content = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(content)).encode())]
    raw += [(k.encode(), v.encode("latin-1")) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": content})


def json_body(body: bytes) -> Any:
    """The JSON of a body, or None: the backend behind answers a bad one in its own words."""
    try:
        return json.loads(body) if body else None
    except (ValueError, RecursionError):  # RecursionError: JSON nested too deep
        return None


__all__ = ["Reply", "answer", "call", "json_body", "read_body", "replay", "with_header"]
