"""Token estimates (no tokenizer can be downloaded here) and the default epoch count."""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from typing import Any

from .limits import Format

# The default number of epochs OpenAI picks for n_epochs "auto", as the cookbook
# computes it: 3, raised for small files (to reach ~100 example passes, at most 25 epochs)
# and lowered for big ones (to stay near 25,000 example passes, at least 1 epoch).
_TARGET_EPOCHS = 3
_MIN_TARGET_EXAMPLES = 100
_MAX_TARGET_EXAMPLES = 25_000
_MIN_DEFAULT_EPOCHS = 1
_MAX_DEFAULT_EPOCHS = 25

# cl100k_base splits text with this pattern before byte-pair encoding:
#   (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*
#   |\s*[\r\n]+|\s+(?!\S)|\s+
# Python's re has no \p{L}: a letter is [^\W\d_] (a word character that is neither a digit
# nor "_"), a number is \d, and "neither letter nor number" is [^\w]|_ . o200k_base (the
# gpt-4o family) splits a little differently (case-aware words, contractions kept on their
# word) and its larger vocabulary gives the same or slightly smaller counts for English, so
# one estimator serves both.
_PRETOKEN = re.compile(
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)"
    r"|(?:[^\r\n\w]|_)?[^\W\d_]+"
    r"|\d{1,3}"
    r"| ?(?:[^\s\w]|_)+[\r\n]*"
    r"|\s*[\r\n]+"
    r"|\s+(?!\S)"
    r"|\s+"
)
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")


# Words repeat (Zipf's law): caching per piece makes the estimate several times faster.
@functools.lru_cache(maxsize=1 << 16)
def _piece_tokens(piece: str) -> int:
    """Estimated BPE tokens of one pre-token.

    Calibrated by hand against counts that OpenAI publishes for cl100k_base (the
    "How to count tokens with tiktoken" cookbook): "2 + 2 = 4" is 7 tokens (exact here,
    digits and lone spaces are their own tokens), "お誕生日おめでとう" is 9 (exact: one token
    per CJK character), and its six-message chat example is 129 tokens (this gives 125).
    Common English words up to ten letters are single tokens in the vocabulary; longer
    words split into pieces of about six letters. Rare words split more than that, which a
    vocabulary-free estimate cannot see ("tiktoken is great!" is 6 real tokens, 4 here).
    Other scripts split into roughly two characters per token. Expect about ±15% on
    ordinary English, and a low estimate for code, rare words and other scripts.
    """
    first = piece[0]
    if first.isspace() and piece.isspace():
        # Newline runs and indentation are mostly single tokens.
        return 1 + len(piece) // 16
    letters = piece[1:] if not (first.isalpha()) else piece
    if letters and letters.isalpha():
        cjk = len(_CJK.findall(letters))
        other = sum(1 for ch in letters if not ch.isascii()) - cjk
        ascii_letters = len(letters) - cjk - other
        tokens = cjk + math.ceil(other / 2)
        if ascii_letters:
            tokens += max(1, math.ceil((ascii_letters - 4) / 6))
        return max(tokens, 1)
    if piece.isdigit():
        return 1
    # Punctuation runs: ".", "!", "...", "://", "```" are single tokens; long runs split.
    return max(1, math.ceil(len(piece.strip(" ")) / 3))


# Training files repeat whole strings too: the same system prompt in every example.
@functools.lru_cache(maxsize=1 << 10)
def estimate_tokens(text: str) -> int:
    """An estimate of the cl100k_base token count of ``text`` (see :func:`_piece_tokens`)."""
    return sum(map(_piece_tokens, _PRETOKEN.findall(text)))


# The cookbook's chat formula: every message costs 3 tokens of framing plus its values
# (1 more with a name), and every example 3 more for the assistant reply's priming.
_TOKENS_PER_MESSAGE = 3
_TOKENS_PER_NAME = 1
_TOKENS_PER_EXAMPLE = 3
# An image part is billed by size and detail, which a text check cannot know; 85 tokens is
# the cost of a low-detail image, so image-heavy files are underestimated, never inflated.
_TOKENS_PER_IMAGE = 85


def _value_tokens(value: Any) -> int:
    if isinstance(value, str):
        return estimate_tokens(value)
    if value is None:
        return 0
    return estimate_tokens(json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def _content_tokens(content: Any) -> int:
    if isinstance(content, list):
        total = 0
        for part in content:
            if isinstance(part, dict) and part.get("type") == "image_url":
                total += _TOKENS_PER_IMAGE
            elif isinstance(part, dict) and isinstance(part.get("text"), str):
                total += estimate_tokens(part["text"])
            elif isinstance(part, dict) and isinstance(part.get("refusal"), str):
                total += estimate_tokens(part["refusal"])
            else:
                total += _value_tokens(part)
        return total
    return _value_tokens(content)


def _messages_tokens(messages: list[Any]) -> int:
    total = 0
    for message in messages:
        if not isinstance(message, dict):
            continue
        total += _TOKENS_PER_MESSAGE
        for key, value in message.items():
            if key == "weight":
                continue  # a training control, not text the model sees
            total += _content_tokens(value) if key == "content" else _value_tokens(value)
            if key == "name":
                total += _TOKENS_PER_NAME
    return total


def example_tokens(fmt: Format, example: dict[str, Any]) -> int:
    if fmt == "completion":
        return _value_tokens(example.get("prompt")) + _value_tokens(example.get("completion"))
    if fmt == "chat":
        tokens = _messages_tokens(example["messages"]) + _TOKENS_PER_EXAMPLE
        for key in ("tools", "functions"):
            if key in example:
                tokens += _value_tokens(example[key])
        return tokens
    # preference: the shared input plus both outputs (DPO trains on both completions).
    source = example["input"]
    tokens = _messages_tokens(source["messages"]) + _TOKENS_PER_EXAMPLE
    if "tools" in source:
        tokens += _value_tokens(source["tools"])
    tokens += _messages_tokens(example["preferred_output"])
    tokens += _messages_tokens(example["non_preferred_output"])
    return tokens


def default_epochs(n_examples: int) -> int:
    """The number of epochs OpenAI picks for ``n_epochs: "auto"`` (cookbook rule)."""
    if n_examples <= 0:
        return _TARGET_EPOCHS
    if n_examples * _TARGET_EPOCHS < _MIN_TARGET_EXAMPLES:
        return min(_MAX_DEFAULT_EPOCHS, _MIN_TARGET_EXAMPLES // n_examples)
    if n_examples * _TARGET_EPOCHS > _MAX_TARGET_EXAMPLES:
        return max(_MIN_DEFAULT_EPOCHS, _MAX_TARGET_EXAMPLES // n_examples)
    return _TARGET_EPOCHS


@dataclass
class TokenStats:
    """Running token statistics of one format's valid examples (no per-example list kept)."""

    count: int = 0
    total: int = 0
    minimum: int = 0
    maximum: int = 0
    billed: int = 0  # per epoch: each example truncated to the per-example limit
    over_limit: int = 0

    def add(self, tokens: int, limit: int) -> None:
        self.minimum = tokens if self.count == 0 else min(self.minimum, tokens)
        self.maximum = max(self.maximum, tokens)
        self.count += 1
        self.total += tokens
        self.billed += min(tokens, limit)
        if tokens > limit:
            self.over_limit += 1


__all__ = [
    "TokenStats",
    "default_epochs",
    "estimate_tokens",
    "example_tokens",
]
