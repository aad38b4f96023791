"""The event-stream decoder, fed byte by byte at every possible split."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from steprun.steps.openai.sse import ServerSentEvent, iter_events

STREAM = (
    "\ufeff: comment\r\n"
    'data: {"a": "é"}\r\n\r\n'
    "event: message\rdata: line 1\rdata: line 2\r\r"
    "id: 7\nretry: 1500\ndata: ✓ done\n\n"
    "event: ping\n\n"
    "data: [DONE]\n\n"
).encode()
EXPECTED = [
    ServerSentEvent(data='{"a": "é"}'),
    ServerSentEvent(data="line 1\nline 2", event="message"),
    ServerSentEvent(data="✓ done", id="7", retry=1500),
    ServerSentEvent(data="", event="ping", id="7"),
    ServerSentEvent(data="[DONE]", id="7"),
]


def decode(chunks: list[bytes]) -> list[ServerSentEvent]:
    async def source() -> AsyncIterator[bytes]:
        for chunk in chunks:
            yield chunk

    async def run() -> list[ServerSentEvent]:
        return [event async for event in iter_events(source())]

    return asyncio.run(run())


def test_every_two_chunk_split_decodes_the_same() -> None:
    for cut in range(len(STREAM) + 1):
        assert decode([STREAM[:cut], STREAM[cut:]]) == EXPECTED, f"split at byte {cut}"


def test_one_byte_chunks_decode_the_same() -> None:
    assert decode([bytes([b]) for b in STREAM]) == EXPECTED


def test_unterminated_last_event_is_not_dispatched() -> None:
    assert decode([b"data: 1\n\n", b"data: 2"]) == [ServerSentEvent(data="1")]


def test_done_without_its_blank_line_still_ends_the_stream() -> None:
    assert decode([b"data: 1\n\n", b"data: [DONE]"])[-1] == ServerSentEvent(data="[DONE]")


def test_invalid_utf8_raises() -> None:
    with pytest.raises(UnicodeDecodeError):
        decode([b"data: \xff\xfe\n\n"])
