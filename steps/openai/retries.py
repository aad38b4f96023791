"""The official SDK's retry policy, and the replay of a multipart body for a retry.

As ``openai/_base_client.py`` has it (``_should_retry``, ``_calculate_retry_timeout``,
``_parse_retry_after_header``, ``_RequestBodyReplay``) with the SDK's constants
(``openai/_constants.py``).
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Iterator, Mapping
from typing import Any

import httpx

INITIAL_RETRY_DELAY = 0.5
MAX_RETRY_DELAY = 8.0
MAX_RETRY_AFTER = 120.0
# Transport failures after which the server cannot have acted on the request: the
# connection never opened, or the request was not sent whole (an HTTP server acts on a
# request only once it has all of it).
NOT_SENT = (
    httpx.ConnectError,
    httpx.ConnectTimeout,
    httpx.PoolTimeout,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
    httpx.WriteError,
    httpx.WriteTimeout,
)
# Not worth a retry: the same request fails the same way.
PERMANENT = (httpx.UnsupportedProtocol, httpx.LocalProtocolError)


def retry_delay(retries_taken: int, headers: httpx.Headers | None = None) -> float:
    """Seconds to wait before retry number ``retries_taken + 1``, as the SDK computes it.

    A server-directed delay (``retry-after-ms``, then ``retry-after``) is honoured when it
    is above 0 and at most 120 s; otherwise 0.5 s * 2^n, capped at 8 s, minus up to 25 %
    jitter so that many clients do not retry in lockstep.
    """
    retry_after = parse_retry_after(headers)
    if (
        retry_after is not None
        and math.isfinite(retry_after)
        and 0 < retry_after <= MAX_RETRY_AFTER
    ):
        return retry_after
    delay = min(INITIAL_RETRY_DELAY * 2.0 ** min(retries_taken, 1000), MAX_RETRY_DELAY)
    return max(delay * (1 - 0.25 * random.random()), 0.0)


def parse_retry_after(headers: httpx.Headers | None) -> float | None:
    """The server's requested delay in seconds, or None when it gives none we can read."""
    if headers is None:
        return None
    # Milliseconds first, then seconds (floats allowed, as the SDK allows them).
    for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            delay = float(value)
        except ValueError:
            continue
        if math.isnan(delay):
            continue
        if math.isinf(delay):
            # An overflowing number is an excessive delay, not a reason to retry sooner.
            return MAX_RETRY_AFTER + 1
        return delay / divisor
    # Last, an HTTP date (RFC 9110 allows it in Retry-After).
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return when.timestamp() - time.time()


class FilesReplay:
    """Rewinds file objects of a multipart body before a retry (the SDK's _RequestBodyReplay).

    A retry must send the same bytes again: file objects are seeked back to where they
    were; a body that cannot be rewound (a pipe, an iterator) is never retried.
    """

    def __init__(self, files: Any) -> None:
        self._positions: list[tuple[Any, int]] = []
        self._replayable = all(self._capture(content) for content in file_contents(files))

    def _capture(self, content: Any) -> bool:
        if content is None or isinstance(content, bytes | bytearray | str):
            return True
        if not callable(getattr(content, "read", None)):
            return False
        try:
            if not content.seekable():
                return False
            position = content.tell()
        except (AttributeError, OSError, ValueError):
            return False
        if not isinstance(position, int):
            return False
        self._positions.append((content, position))
        return True

    def rewind(self) -> bool:
        if not self._replayable:
            return False
        try:
            for content, position in self._positions:
                content.seek(position)
        except (OSError, ValueError):
            return False
        return True


def file_contents(files: Any) -> Iterator[Any]:
    if files is None:
        return
    entries = files.items() if isinstance(files, Mapping) else files
    for _, file in entries:
        yield file[1] if isinstance(file, tuple) and len(file) > 1 else file


__all__ = [
    "INITIAL_RETRY_DELAY",
    "MAX_RETRY_AFTER",
    "MAX_RETRY_DELAY",
    "NOT_SENT",
    "PERMANENT",
    "FilesReplay",
    "file_contents",
    "parse_retry_after",
    "retry_delay",
]
