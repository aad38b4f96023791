"""A purpose-built HTTP/1.1 server on loopback that misbehaves on request.

It is a raw asyncio TCP server in its own thread, because the faults we must prove we
survive live below what an ASGI app can express: a connection reset before the request is
read, a connection dropped after the request was read (and acted on), a chunked stream
cut mid-way, bytes split at awkward places. Every response closes its connection, so each
request arrives on a fresh one and a scripted fault hits exactly the request it is meant for.

Tests script the next answers with :meth:`FaultServer.script`; when the script is empty
the server asks :attr:`FaultServer.handler`. An action may be a callable taking the
:class:`Request`, which lets a test act on a request (create a job) and then drop it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias
from urllib.parse import parse_qsl, urlsplit


@dataclass(frozen=True)
class Request:
    method: str
    target: str
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def path(self) -> str:
        return urlsplit(self.target).path

    @property
    def query(self) -> list[tuple[str, str]]:
        return parse_qsl(urlsplit(self.target).query, keep_blank_values=True)

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Reply:
    """A complete response."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, data: Any, status: int = 200, **headers: str) -> Reply:
        merged = {"content-type": "application/json", **_header_names(headers)}
        return cls(status, json.dumps(data).encode(), merged)

    @classmethod
    def error(
        cls,
        status: int,
        message: str,
        *,
        type: str = "invalid_request_error",
        code: str | None = None,
        param: str | None = None,
        **headers: str,
    ) -> Reply:
        body = {"error": {"message": message, "type": type, "param": param, "code": code}}
        return cls.json(body, status, **headers)


@dataclass(frozen=True)
class Chunks:
    """A chunked response sent piece by piece (each flushed, with a pause between).

    ``cut`` closes the connection without the terminating chunk: the body is incomplete.
    """

    chunks: list[bytes]
    status: int = 200
    headers: dict[str, str] = field(
        default_factory=lambda: {"content-type": "text/event-stream; charset=utf-8"}
    )
    cut: bool = False
    pause: float = 0.01


@dataclass(frozen=True)
class Reset:
    """Reset the TCP connection as soon as it is accepted, before reading the request."""


@dataclass(frozen=True)
class Drop:
    """Read the whole request, then close the connection without a word."""


@dataclass(frozen=True)
class Hang:
    """Read the request, then say nothing for ``seconds`` (a read timeout on the client)."""

    seconds: float = 2.0


Action: TypeAlias = Reply | Chunks | Reset | Drop | Hang
Scripted: TypeAlias = Action | Callable[[Request], Action]


def _header_names(headers: dict[str, str]) -> dict[str, str]:
    # Keyword arguments cannot hold dashes: retry_after_ms=... means retry-after-ms.
    return {name.replace("_", "-").lower(): value for name, value in headers.items()}


def _not_found(request: Request) -> Action:
    return Reply.error(404, f"no handler for {request.method} {request.path}")


class FaultServer:
    def __init__(self) -> None:
        self.requests: list[Request] = []
        self.handler: Callable[[Request], Action] = _not_found
        self._script: deque[Scripted] = deque()
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self.port = 0

    # -- control (called from tests, any thread) --------------------------------------

    def start(self) -> FaultServer:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self._loop)
        future.result(timeout=5)
        return self

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            # Connections still open (a Hang still sleeping) end now, not at interpreter exit.
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._server is not None:
                await self._server.wait_closed()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(timeout=5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self._script.clear()
            self.handler = _not_found

    def script(self, *actions: Scripted) -> None:
        with self._lock:
            self._script.extend(actions)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    # -- the server (its own thread and loop) -----------------------------------------

    async def _start(self) -> None:
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def _next(self, request: Request | None) -> Scripted | None:
        with self._lock:
            if request is None:
                if self._script and isinstance(self._script[0], Reset):
                    return self._script.popleft()
                return None
            self.requests.append(request)
            if self._script:
                return self._script.popleft()
            return None

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if self._next(None) is not None:
                _reset(writer)
                return
            request = await _read_request(reader)
            if request is None:
                return
            scripted = self._next(request)
            if scripted is None:
                scripted = self.handler
            action = scripted(request) if callable(scripted) else scripted
            await self._answer(action, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away; that is its business
        finally:
            writer.transport.abort() if writer.transport.is_closing() else writer.close()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await writer.wait_closed()

    async def _answer(self, action: Action, writer: asyncio.StreamWriter) -> None:
        if isinstance(action, Reset):
            _reset(writer)
        elif isinstance(action, Drop):
            return  # the caller's `finally` closes the connection: a FIN, no response
        elif isinstance(action, Hang):
            await asyncio.sleep(action.seconds)
        elif isinstance(action, Reply):
            head = _head(action.status, {**action.headers, "content-length": str(len(action.body))})
            writer.write(head + action.body)
            await writer.drain()
        else:
            writer.write(_head(action.status, {**action.headers, "transfer-encoding": "chunked"}))
            await writer.drain()
            for chunk in action.chunks:
                writer.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                await writer.drain()
                await asyncio.sleep(action.pause)
            if action.cut:
                _reset(writer)
                return
            writer.write(b"0\r\n\r\n")
            await writer.drain()


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        # Linger 0: close() sends RST instead of FIN, as a crashed proxy or server would.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _head(status: int, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}", "connection: close"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _read_request(reader: asyncio.StreamReader) -> Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return None
    request_line, *header_lines = head[:-4].decode("latin-1").split("\r\n")
    method, target, _ = request_line.split(" ", 2)
    headers: dict[str, str] = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n"))[:-2].split(b";")[0], 16)
            body += await reader.readexactly(size + 2)
            del body[-2:]
            if size == 0:
                break
        return Request(method, target, headers, bytes(body))
    length = int(headers.get("content-length", "0"))
    body_bytes = await reader.readexactly(length) if length else b""
    return Request(method, target, headers, body_bytes)


_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    408: "Request Timeout",
    409: "Conflict",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


__all__ = ["Action", "Chunks", "Drop", "FaultServer", "Hang", "Reply", "Request", "Reset"]
