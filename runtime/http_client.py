"""The runtime's one HTTP client, and the gate that keeps its connection pool fast.

httpx's connection pool (httpcore 1.0) gets slow when more requests are waiting for a
connection than it has: every time a connection is freed or a request arrives, it scans
every waiting request against every connection, and it hands a freed HTTP/1.1 connection
to every waiting request at once, so all but one wake up for nothing and scan again
(encode/httpcore#1035, pydantic/httpx2#1075). In bench/concurrent_runs.py (200 runs at
once, one API) that scan took a third to 40 % of the process's CPU time when the machine
was busy, and the slower the process, the longer the queue, and the longer each scan.

So requests wait here instead, in order, before they reach the pool: at most
``MAX_CONNECTIONS`` are in flight, the pool never has a queue, and its own limit (the same
number) is never what makes a request wait. The limits themselves stay httpx's defaults;
only where the waiting happens changes. A request still gives up after the pool timeout
(``httpx.PoolTimeout``) if no slot frees in time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import httpx

from .step import BEFORE_EFFECT, SAFE_METHODS

# httpx's defaults, which the runtime's client has always had.
MAX_CONNECTIONS = 100
MAX_KEEPALIVE_CONNECTIONS = 20
CONNECT_TIMEOUT = 5.0


class BoundedTransport(httpx.AsyncBaseTransport):
    """At most ``limit`` requests in flight through ``transport``; the rest wait, in order.

    A request holds its slot until its response is closed (read to the end and released,
    as ``AsyncClient.send`` does, or closed by the caller of a streamed response), which is
    when the pool gets its connection back.
    """

    def __init__(self, transport: httpx.AsyncBaseTransport, limit: int = MAX_CONNECTIONS):
        self._transport = transport
        self._slots = asyncio.Semaphore(limit)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = request.extensions.get("timeout") or {}
        wait = timeouts.get("pool")
        try:
            async with asyncio.timeout(wait):
                await self._slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout(
                f"no connection became free within {wait:g}s", request=request
            ) from None
        try:
            response = await self._transport.handle_async_request(request)
        except BaseException:
            self._slots.release()
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        response.stream = _ReleasingStream(response.stream, self._slots.release)
        return response

    async def aclose(self) -> None:
        await self._transport.aclose()


class _ReleasingStream(httpx.AsyncByteStream):
    """A response body that gives its request's slot back when it is closed (once)."""

    def __init__(self, stream: httpx.AsyncByteStream, release: Callable[[], None]) -> None:
        self._stream = stream
        self._release: Callable[[], None] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self._stream:
            yield chunk

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            release, self._release = self._release, None
            if release is not None:
                release()


async def _before_request(request: httpx.Request) -> None:
    """A request that may have an effect waits until its step's start is durable."""
    if request.method not in SAFE_METHODS:
        before = BEFORE_EFFECT.get()
        if before is not None:
            await before()


def new_client(
    *,
    transport: httpx.AsyncBaseTransport | None,
    mounts: dict[str, httpx.AsyncBaseTransport],
    timeout: float,
) -> httpx.AsyncClient:
    """The runtime's client: the network behind the gate, unless a transport is injected.

    An injected transport (tests, a platform's own) is used as it is: its owner sets its
    limits. ``mounts`` (the embedded backend) are in-process and have no pool to protect.
    """
    if transport is None:
        limits = httpx.Limits(
            max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_KEEPALIVE_CONNECTIONS
        )
        transport = BoundedTransport(httpx.AsyncHTTPTransport(limits=limits), MAX_CONNECTIONS)
    return httpx.AsyncClient(
        transport=transport,
        mounts=mounts,
        timeout=httpx.Timeout(timeout, connect=CONNECT_TIMEOUT),
        follow_redirects=False,
        event_hooks={"request": [_before_request]},
    )


__all__ = [
    "CONNECT_TIMEOUT",
    "MAX_CONNECTIONS",
    "MAX_KEEPALIVE_CONNECTIONS",
    "BoundedTransport",
    "new_client",
]
