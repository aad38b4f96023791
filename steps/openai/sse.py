"""Server-sent events, decoded incrementally from raw bytes.

Follows the WHATWG event-stream rules the OpenAI SDK follows (``openai/_streaming.py``):
lines end with CR, LF or CRLF, and a CRLF may be split across two network chunks; lines
are split on bytes *before* decoding, which is what makes a UTF-8 character split across
chunks safe (no byte of a multi-byte UTF-8 sequence is ever CR or LF).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass

_LINE_END = re.compile(rb"[\r\n]")
_BOM = "\ufeff"
# The data of the event that ends every OpenAI stream.
DONE = "[DONE]"


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One dispatched event: its ``event`` name (None for the default ``message``) and data."""

    data: str
    event: str | None = None
    id: str | None = None
    retry: int | None = None


class LineSplitter:
    """Splits a byte stream into lines on CR, LF and CRLF, whatever the chunk boundaries."""

    __slots__ = ("_buffer", "_skip_lf")

    def __init__(self) -> None:
        self._buffer = bytearray()
        # A chunk that ends in CR may be followed by a chunk that starts with the LF of
        # the same CRLF: that LF must not produce an empty line (= a spurious dispatch).
        self._skip_lf = False

    def feed(self, chunk: bytes) -> Iterator[bytes]:
        start = 0
        for match in _LINE_END.finditer(chunk):
            end = match.start()
            if self._skip_lf and end == start and chunk[end] == 0x0A:
                self._skip_lf = False
                start = end + 1
                continue
            self._buffer.extend(chunk[start:end])
            line = bytes(self._buffer)
            self._buffer.clear()
            self._skip_lf = chunk[end] == 0x0D
            start = end + 1
            yield line
        if start < len(chunk):
            self._skip_lf = False
            self._buffer.extend(chunk[start:])

    @property
    def pending(self) -> bytes:
        """Bytes received after the last line end (an unterminated last line)."""
        return bytes(self._buffer)


class EventDecoder:
    """Turns lines into events; an event is dispatched by an empty line."""

    __slots__ = ("_data", "_event", "_first_line", "_last_id", "_retry")

    def __init__(self) -> None:
        self._event: str | None = None
        self._data: list[str] = []
        self._last_id: str | None = None
        self._retry: int | None = None
        self._first_line = True

    def decode(self, line: str) -> ServerSentEvent | None:
        if self._first_line:
            # The spec strips one leading byte-order mark from the stream.
            self._first_line = False
            line = line.removeprefix(_BOM)
        if not line:
            if not self._data and self._event is None:
                # Nothing to dispatch (e.g. the blank line after a comment). The WHATWG
                # spec also drops a *named* event without data; like the OpenAI SDK we
                # dispatch it, so that a bare `event: error` cannot pass unnoticed.
                return None
            event = ServerSentEvent(
                data="\n".join(self._data), event=self._event, id=self._last_id, retry=self._retry
            )
            self._event, self._data, self._retry = None, [], None
            return event
        if line.startswith(":"):
            return None  # a comment, e.g. a keep-alive ": ping"
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value or None
        elif name == "id":
            if "\0" not in value:
                self._last_id = value
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None

    @property
    def has_pending(self) -> bool:
        """True when lines were read for an event that no empty line has dispatched yet."""
        return bool(self._data) or self._event is not None


async def iter_events(chunks: AsyncIterator[bytes]) -> AsyncIterator[ServerSentEvent]:
    """Every complete event in ``chunks``.

    Raises UnicodeDecodeError for a line that is not UTF-8. An unterminated final event
    (the stream stopped mid-event) is not yielded, as the spec says, with one exception:
    a final ``data: [DONE]`` that lacks only its blank line still ends the stream, since
    the terminator itself arrived whole and some OpenAI-compatible servers omit the
    blank line after it.
    """
    splitter = LineSplitter()
    decoder = EventDecoder()
    async for chunk in chunks:
        for raw in splitter.feed(chunk):
            event = decoder.decode(raw.decode("utf-8"))
            if event is not None:
                yield event
    tail = splitter.pending
    if tail:
        decoder.decode(tail.decode("utf-8"))
    if decoder.has_pending:
        event = decoder.decode("")
        if event is not None and event.data == DONE:
            yield event


__all__ = ["DONE", "EventDecoder", "LineSplitter", "ServerSentEvent", "iter_events"]
