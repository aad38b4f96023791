"""Reading fine-tuning data: which format a JSONL file is in, how big, what it teaches.

Three formats, as OpenAI's guides define them, one JSON object per line:

* ``chat``: ``{"messages": [{"role": "system"|"user"|"assistant", "content": ...}, ...]}``
  (what gpt-* models learn from);
* ``completion``: ``{"prompt": "...", "completion": "..."}`` (babbage-002, davinci-002 and
  the legacy ada/babbage/curie/davinci);
* ``preference``: ``{"input": {"messages": [...]}, "preferred_output": [...],
  "non_preferred_output": [...]}`` (DPO).

What a model learns is a list of :class:`Example` (a question, the answer to give, and
the system prompt it was given under), one per assistant turn.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from . import tokens

Format = Literal["chat", "completion", "preference"]

# Per-message overhead of the chat format, as OpenAI's token-counting cookbook counts it.
_TOKENS_PER_MESSAGE = 3


@dataclass(frozen=True, slots=True)
class Example:
    query: str
    answer: str
    system: str = ""


@dataclass(frozen=True, slots=True)
class TrainingData:
    """What a training file holds. ``format`` is None when lines disagree or fit none."""

    format: Format | None
    n_examples: int
    tokens: int
    examples: list[Example] = field(default_factory=list)
    bad_line: int | None = None  # first line (1-based) that is not a JSON object


def first_bad_line(content: bytes) -> int | None:
    """The first non-empty line that is not a JSON object, or None when all are."""
    return first_bad_of(content.decode("utf-8", errors="replace").splitlines())


def first_bad_of(lines: Iterable[str]) -> int | None:
    """:func:`first_bad_line` of lines read one at a time (a file too big to hold)."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            return number
        if not isinstance(value, dict):
            return number
    return None


def message_text(content: Any) -> str:
    """Text of a message content: a string, or the text parts of a content array."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(
            part.get("text", "")
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        )
    return ""


def _messages(value: Any) -> list[dict[str, Any]] | None:
    if not isinstance(value, list) or not value:
        return None
    if not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in value):
        return None
    return value


def _chat_examples(messages: list[dict[str, Any]]) -> list[Example]:
    system = next((message_text(m.get("content")) for m in messages if m["role"] == "system"), "")
    examples = []
    query = ""
    for message in messages:
        if message["role"] == "user":
            query = message_text(message.get("content"))
        elif message["role"] == "assistant" and message.get("weight", 1) != 0:
            answer = message_text(message.get("content"))
            if answer:
                examples.append(Example(query, answer, system))
    return examples


def chat_tokens(messages: list[dict[str, Any]]) -> int:
    return (
        sum(
            _TOKENS_PER_MESSAGE + tokens.count(message_text(m.get("content"))) + 1 for m in messages
        )
        + _TOKENS_PER_MESSAGE
    )


def _classify(record: dict[str, Any]) -> tuple[Format, list[Example], int] | None:
    messages = _messages(record.get("messages"))
    if messages is not None:
        return "chat", _chat_examples(messages), chat_tokens(messages)
    prompt, completion = record.get("prompt"), record.get("completion")
    if isinstance(prompt, str) and isinstance(completion, str):
        return (
            "completion",
            [Example(prompt, completion)],
            tokens.count(prompt) + tokens.count(completion),
        )
    source = record.get("input")
    inputs = _messages(source.get("messages")) if isinstance(source, dict) else None
    preferred = _messages(record.get("preferred_output"))
    if inputs is not None and preferred is not None and record.get("non_preferred_output"):
        answer = message_text(preferred[-1].get("content"))
        query = next(
            (message_text(m.get("content")) for m in reversed(inputs) if m["role"] == "user"), ""
        )
        system = next((message_text(m.get("content")) for m in inputs if m["role"] == "system"), "")
        return "preference", [Example(query, answer, system)], chat_tokens(inputs + preferred)
    return None


def parse(content: bytes) -> TrainingData:
    """Read a JSONL training file; never raises on bad data (the caller words the error)."""
    bad = first_bad_line(content)
    if bad is not None:
        return TrainingData(format=None, n_examples=0, tokens=0, bad_line=bad)
    formats: set[Format] = set()
    examples: list[Example] = []
    count = total = 0
    for line in content.decode("utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        count += 1
        found = _classify(json.loads(line))
        if found is None:
            return TrainingData(format=None, n_examples=count, tokens=total)
        kind, learned, size = found
        formats.add(kind)
        examples.extend(learned)
        total += size
    kind_of_file = formats.pop() if len(formats) == 1 else None
    return TrainingData(format=kind_of_file, n_examples=count, tokens=total, examples=examples)


__all__ = [
    "Example",
    "Format",
    "TrainingData",
    "chat_tokens",
    "first_bad_line",
    "first_bad_of",
    "message_text",
    "parse",
]
