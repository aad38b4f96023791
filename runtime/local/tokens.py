"""A small deterministic tokenizer standing in for OpenAI's byte-pair encodings.

Tokens follow the shape of GPT's pre-tokenizer (a word with its leading space, runs of
digits, runs of punctuation, whitespace), so counts are close to real ones for English
and a text always equals the concatenation of its tokens, which echo, ``text_offset``,
stop sequences and streaming rely on. Token ids are stable hashes of the token text
(below the size of ``cl100k_base``), which is what ``logit_bias`` keys and token-array
prompts refer to.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterable

VOCABULARY_SIZE = 100_277
END_OF_TEXT = "<|endoftext|>"

_PATTERN = re.compile(
    r"'(?:s|t|re|ve|m|ll|d)(?![^\W\d_])"
    r"| ?[^\W\d_]+"
    r"| ?\d{1,3}"
    r"| ?(?:[^\s\w]|_)+"
    r"|\s+(?!\S)"
    r"|\s+"
)


def tokenize(text: str) -> list[str]:
    """Split ``text`` into tokens whose concatenation is ``text``."""
    return _PATTERN.findall(text)


def count(text: str) -> int:
    return len(tokenize(text))


def token_id(token: str) -> int:
    if token == END_OF_TEXT:
        return VOCABULARY_SIZE - 1
    return zlib.crc32(token.encode("utf-8")) % (VOCABULARY_SIZE - 1)


def decode(ids: Iterable[int], vocabulary: dict[int, str]) -> str:
    """Text of token ids; ids the vocabulary does not know decode to nothing."""
    return "".join(vocabulary.get(i, "") for i in ids)


__all__ = ["END_OF_TEXT", "VOCABULARY_SIZE", "count", "decode", "token_id", "tokenize"]
