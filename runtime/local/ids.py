"""Object ids in OpenAI's formats: a prefix and random (or derived) base-62 characters."""

from __future__ import annotations

import hashlib
import secrets
import string

_ALPHABET = string.ascii_letters + string.digits

# Lengths of the random part, as OpenAI's ids have them.
LENGTHS = {
    "file-": 22,
    "ftjob-": 24,
    "ftevent-": 24,
    "ftckpt_": 24,
    "ft-": 24,
    "cmpl-": 29,
    "chatcmpl-": 29,
}


def new_id(prefix: str, length: int | None = None) -> str:
    """A fresh random id, e.g. ``new_id("ftjob-")``."""
    size = length if length is not None else LENGTHS.get(prefix, 24)
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(size))


def derived_id(prefix: str, *parts: object, length: int | None = None) -> str:
    """An id that is a pure function of ``parts``.

    Events and checkpoints are computed from a job's timeline on every read; deriving
    their ids keeps them stable across reads and across restarts.
    """
    size = length if length is not None else LENGTHS.get(prefix, 24)
    digest = hashlib.sha256(":".join(map(str, parts)).encode()).digest()
    number = int.from_bytes(digest, "big")
    chars = []
    for _ in range(size):
        number, index = divmod(number, len(_ALPHABET))
        chars.append(_ALPHABET[index])
    return prefix + "".join(chars)


def request_id() -> str:
    return "req_" + secrets.token_hex(16)


def mask_key(key: str) -> str:
    """A key as OpenAI shows it in errors: a short prefix and suffix, stars between.

    OpenAI prints ``sk-XG6GW***...***wlmi`` (8 + 4 characters of a 51-character key);
    shorter keys show proportionally less so that a short secret is never echoed whole.
    """
    if len(key) >= 24:
        head, tail = 8, 4
    else:
        head = tail = len(key) // 6
    return key[:head] + "*" * (len(key) - head - tail) + (key[-tail:] if tail else "")


__all__ = ["LENGTHS", "derived_id", "mask_key", "new_id", "request_id"]
