"""Server-sent events as OpenAI streams them: ``data: {json}`` blocks, then ``[DONE]``."""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Any

from starlette.concurrency import iterate_in_threadpool
from starlette.responses import StreamingResponse

DONE = b"data: [DONE]\n\n"


def encode(data: Any) -> bytes:
    return b"data: " + json.dumps(data, separators=(",", ":")).encode() + b"\n\n"


class EventStream(StreamingResponse):
    """A ``text/event-stream`` response of JSON chunks, closed by ``data: [DONE]``."""

    def __init__(self, chunks: AsyncIterable[Any] | Iterable[Any]) -> None:
        super().__init__(
            _frames(chunks),
            media_type="text/event-stream",
            headers={"cache-control": "no-cache", "x-accel-buffering": "no"},
        )


async def _frames(chunks: AsyncIterable[Any] | Iterable[Any]) -> AsyncIterator[bytes]:
    if isinstance(chunks, AsyncIterable):
        async for chunk in chunks:
            yield encode(chunk)
    elif isinstance(chunks, Iterator):
        # Made while they are sent (tokens as they are generated): off the event loop.
        async for chunk in iterate_in_threadpool(chunks):
            yield encode(chunk)
    else:
        for chunk in chunks:
            yield encode(chunk)
    yield DONE


__all__ = ["DONE", "EventStream", "encode"]
