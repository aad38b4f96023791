"""``openai.validate_training_data``: check a fine-tuning JSONL file before it is uploaded.

Everything happens locally: no request is sent. The file is read line by line (a training
file may be hundreds of megabytes), every problem is reported with its line number, and the
token counts are *estimated* with a small regex pre-tokenizer (see :func:`estimate_tokens`)
because no tokenizer vocabulary can be downloaded here.

Three formats are recognised, one per file:

* ``chat``: ``{"messages": [...]}``, optionally with ``tools``, ``functions`` and
  ``parallel_tool_calls`` (supervised fine-tuning of chat models);
* ``completion``: ``{"prompt": "...", "completion": "..."}`` (``babbage-002``/``davinci-002``
  and the legacy ``/v1/fine-tunes`` API);
* ``preference``: ``{"input": {"messages": [...]}, "preferred_output": [...],
  "non_preferred_output": [...]}`` (DPO, as OpenAI's current DPO guide writes it).

:func:`check_training_data` is the whole check; ``openai.upload_file`` calls it too.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from steprun.runtime.errors import StepError
from steprun.runtime.step import StepContext, StepType

Format = Literal["chat", "completion", "preference"]
FORMATS: tuple[Format, ...] = ("chat", "completion", "preference")

DEFAULT_MIN_EXAMPLES = 10
DEFAULT_MAX_PROBLEMS = 100
# The cookbook's MAX_TOKENS_PER_EXAMPLE ("Data preparation and analysis for chat model
# fine-tuning"): longer examples are truncated to it, so only this many tokens are billed.
DEFAULT_MAX_TOKENS_PER_EXAMPLE = 16385
# A single line with hundreds of broken messages must not push every other line's
# problems out of the capped list.
_MAX_PROBLEMS_PER_LINE = 10

# The default number of epochs OpenAI picks for n_epochs "auto", as the same cookbook
# computes it: 3, raised for small files (to reach ~100 example passes, at most 25 epochs)
# and lowered for big ones (to stay near 25,000 example passes, at least 1 epoch).
_TARGET_EPOCHS = 3
_MIN_TARGET_EXAMPLES = 100
_MAX_TARGET_EXAMPLES = 25_000
_MIN_DEFAULT_EPOCHS = 1
_MAX_DEFAULT_EPOCHS = 25

ESTIMATOR = "regex pre-tokenizer approximating cl100k_base (an estimate, not a tokenizer count)"


# --------------------------------------------------------------------------------------
# Token estimate
# --------------------------------------------------------------------------------------

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


def _example_tokens(fmt: Format, example: dict[str, Any]) -> int:
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
class _TokenStats:
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


# --------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LineProblem:
    """One problem; ``line`` is 1-based, ``None`` for the file as a whole."""

    line: int | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "message": self.message}

    def __str__(self) -> str:
        return self.message if self.line is None else f"line {self.line}: {self.message}"


@dataclass
class TrainingDataReport:
    """What :func:`check_training_data` found; :meth:`to_dict` is the step's output."""

    file: str
    format: Format | None
    lines: int
    examples: int
    valid: int
    problem_count: int
    problems: list[LineProblem]
    tokens: _TokenStats
    max_tokens_per_example: int
    n_epochs: int
    n_epochs_source: Literal["config", "default"]

    @property
    def ok(self) -> bool:
        return self.problem_count == 0

    def summary(self, limit: int = 3) -> str:
        """Words for an error message: the count and the first few problems."""
        noun = "problem" if self.problem_count == 1 else "problems"
        shown = "; ".join(str(p) for p in self.problems[:limit])
        more = self.problem_count - min(limit, len(self.problems))
        tail = f" (and {more} more)" if more > 0 else ""
        return f"{self.problem_count} {noun} in {self.file}: {shown}{tail}"

    def to_dict(self) -> dict[str, Any]:
        stats = self.tokens
        return {
            "file": self.file,
            "format": self.format,
            "ok": self.ok,
            "counts": {
                "lines": self.lines,
                "examples": self.examples,
                "valid": self.valid,
                "invalid": self.examples - self.valid,
                "problems": self.problem_count,
            },
            "problems": [p.to_dict() for p in self.problems],
            "problems_not_listed": self.problem_count - len(self.problems),
            "tokens": {
                "estimate": ESTIMATOR,
                "examples_counted": stats.count,
                "per_example": {
                    "min": stats.minimum,
                    "mean": round(stats.total / stats.count, 1) if stats.count else 0,
                    "max": stats.maximum,
                },
                "total": stats.total,
                "max_tokens_per_example": self.max_tokens_per_example,
                "examples_over_limit": stats.over_limit,
            },
            "billing": {
                "n_epochs": self.n_epochs,
                "n_epochs_source": self.n_epochs_source,
                "billed_tokens_per_epoch": stats.billed,
                "billed_tokens": stats.billed * self.n_epochs,
            },
        }


# --------------------------------------------------------------------------------------
# Checking one example
# --------------------------------------------------------------------------------------

_CHAT_KEYS = ("messages", "tools", "functions", "parallel_tool_calls")
_COMPLETION_KEYS = ("prompt", "completion")
_PREFERENCE_KEYS = ("input", "preferred_output", "non_preferred_output")
_PREFERENCE_INPUT_KEYS = ("messages", "tools", "parallel_tool_calls")
# Names the OpenAPI spec used for a while (FineTunePreferenceRequestInput, last seen at
# openai-openapi 498c71d) while OpenAI's DPO guide, and the API, use *_output.
_OLD_PREFERENCE_KEYS = {
    "preferred_completion": "preferred_output",
    "non_preferred_completion": "non_preferred_output",
}
_ROLES = ("system", "developer", "user", "assistant", "tool", "function")
_MESSAGE_KEYS: dict[str, tuple[str, ...]] = {
    "system": ("role", "content", "name"),
    "developer": ("role", "content", "name"),
    "user": ("role", "content", "name"),
    "assistant": ("role", "content", "name", "weight", "tool_calls", "function_call", "refusal"),
    "tool": ("role", "content", "tool_call_id"),
    "function": ("role", "content", "name"),
}
# Content part types fine-tuning accepts, per role (audio and file inputs are not).
_PART_TYPES: dict[str, tuple[str, ...]] = {
    "system": ("text",),
    "developer": ("text",),
    "user": ("text", "image_url"),
    "assistant": ("text", "refusal"),
    "tool": ("text",),
    "function": ("text",),
}


def _keys(obj: dict[str, Any]) -> str:
    return ", ".join(repr(k) for k in obj) or "none"


def _kind(value: Any) -> str:
    """The JSON name of a value's type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def detect_format(example: dict[str, Any]) -> Format | None:
    """The format one example is written in, from its keys; ``None`` if none fits."""
    if "messages" in example:
        return "chat"
    if any(k in example for k in (*_PREFERENCE_KEYS, *_OLD_PREFERENCE_KEYS)):
        return "preference"
    if any(k in example for k in _COMPLETION_KEYS):
        return "completion"
    return None


class _Problems:
    """Problems of one line, each prefixed with its JSON path inside the example."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.messages.append(f"{where}: {message}" if where else message)


def _check_unknown(
    obj: dict[str, Any],
    allowed: tuple[str, ...],
    where: str,
    out: _Problems,
    *,
    reported_elsewhere: tuple[str, ...] = (),
) -> None:
    for key in obj:
        if key not in allowed and key not in reported_elsewhere:
            out.add(
                where,
                f"unknown key {key!r} (allowed: {', '.join(allowed)})",
            )


def _check_text(value: Any, where: str, out: _Problems) -> None:
    if not isinstance(value, str):
        out.add(where, f"must be a string, found {_kind(value)}")
    elif not value.strip():
        out.add(where, "is empty" if not value else "is only whitespace")


def _check_content(role: str, content: Any, where: str, out: _Problems) -> None:
    if isinstance(content, str):
        if not content.strip():
            out.add(where, "is empty" if not content else "is only whitespace")
        return
    if not isinstance(content, list):
        out.add(where, f"must be a string or a list of content parts, found {_kind(content)}")
        return
    if not content:
        out.add(where, "is an empty list of content parts")
        return
    allowed = _PART_TYPES[role]
    for i, part in enumerate(content):
        at = f"{where}[{i}]"
        if not isinstance(part, dict):
            out.add(at, f"a content part must be an object, found {_kind(part)}")
            continue
        kind = part.get("type")
        if kind not in allowed:
            out.add(
                at,
                f"content part type {kind!r} is not accepted in a {role} message "
                f"for fine-tuning (use {', '.join(allowed)})",
            )
        elif kind == "text":
            _check_text(part.get("text"), f"{at}.text", out)
        elif kind == "refusal":
            _check_text(part.get("refusal"), f"{at}.refusal", out)
        else:
            image = part.get("image_url")
            url = image.get("url") if isinstance(image, dict) else None
            if not isinstance(url, str) or not url:
                out.add(f"{at}.image_url", "needs a 'url' (an https URL or a data: URL)")


def _check_function_call(value: Any, where: str, out: _Problems) -> None:
    if not isinstance(value, dict):
        out.add(where, f"must be an object with 'name' and 'arguments', found {_kind(value)}")
        return
    _check_text(value.get("name"), f"{where}.name", out)
    if not isinstance(value.get("arguments"), str):
        out.add(f"{where}.arguments", "must be a string of JSON (the call's arguments)")


def _check_tool_calls(value: Any, where: str, out: _Problems) -> None:
    if not isinstance(value, list) or not value:
        out.add(where, "must be a non-empty list of tool calls")
        return
    for i, call in enumerate(value):
        at = f"{where}[{i}]"
        if not isinstance(call, dict):
            out.add(at, f"a tool call must be an object, found {_kind(call)}")
            continue
        _check_text(call.get("id"), f"{at}.id", out)
        if call.get("type") != "function":
            out.add(f"{at}.type", f"must be 'function', found {call.get('type')!r}")
        _check_function_call(call.get("function"), f"{at}.function", out)


def _check_message(
    message: Any, where: str, out: _Problems, *, roles: tuple[str, ...], weight_ok: bool
) -> str | None:
    """Check one message; returns its role when the role is valid."""
    if not isinstance(message, dict):
        out.add(where, f"a message must be an object, found {_kind(message)}")
        return None
    role = message.get("role")
    if "role" not in message:
        out.add(where, "has no 'role'")
        return None
    if role not in roles:
        out.add(f"{where}.role", f"{role!r} is not one of {', '.join(roles)}")
        return None
    # A misplaced weight gets its own message below rather than "unknown key".
    _check_unknown(message, _MESSAGE_KEYS[role], where, out, reported_elsewhere=("weight",))
    calls = role == "assistant" and ("tool_calls" in message or "function_call" in message)
    if "content" not in message:
        if not calls:
            out.add(where, "has no 'content'")
    elif message["content"] is None and calls:
        pass  # an assistant turn that only calls tools carries no text
    else:
        _check_content(role, message["content"], f"{where}.content", out)
    if "name" in message:
        _check_text(message["name"], f"{where}.name", out)
    if "weight" in message:
        weight = message["weight"]
        if not weight_ok:
            out.add(f"{where}.weight", "is only used in supervised chat examples")
        elif role != "assistant":
            out.add(f"{where}.weight", "is only allowed on assistant messages")
        elif isinstance(weight, bool) or weight not in (0, 1):
            out.add(f"{where}.weight", f"must be 0 or 1, found {json.dumps(weight)}")
    if "tool_calls" in message:
        _check_tool_calls(message["tool_calls"], f"{where}.tool_calls", out)
    if "function_call" in message:
        _check_function_call(message["function_call"], f"{where}.function_call", out)
    if role == "tool":
        _check_text(message.get("tool_call_id"), f"{where}.tool_call_id", out)
    return str(role)


def _check_tools(example: dict[str, Any], where: str, out: _Problems) -> None:
    prefix = f"{where}." if where else ""
    if "tools" in example:
        tools = example["tools"]
        if not isinstance(tools, list):
            out.add(f"{prefix}tools", f"must be a list of tools, found {_kind(tools)}")
        else:
            for i, tool in enumerate(tools):
                at = f"{prefix}tools[{i}]"
                if not isinstance(tool, dict) or tool.get("type") != "function":
                    out.add(at, "a tool must be an object with type 'function'")
                    continue
                function = tool.get("function")
                if not isinstance(function, dict):
                    out.add(f"{at}.function", "must be an object with a 'name'")
                else:
                    _check_text(function.get("name"), f"{at}.function.name", out)
    if "functions" in example:
        functions = example["functions"]
        if not isinstance(functions, list):
            out.add(f"{prefix}functions", f"must be a list of functions, found {_kind(functions)}")
        else:
            for i, function in enumerate(functions):
                if not isinstance(function, dict):
                    out.add(f"{prefix}functions[{i}]", "must be an object with a 'name'")
                else:
                    _check_text(function.get("name"), f"{prefix}functions[{i}].name", out)
    if "parallel_tool_calls" in example and not isinstance(example["parallel_tool_calls"], bool):
        out.add(f"{prefix}parallel_tool_calls", "must be true or false")


def _check_messages_list(value: Any, where: str, out: _Problems) -> list[Any] | None:
    if not isinstance(value, list):
        out.add(where, f"must be a list of messages, found {_kind(value)}")
        return None
    if not value:
        out.add(where, "is an empty list")
        return None
    return value


def _check_chat(example: dict[str, Any], out: _Problems) -> None:
    _check_unknown(example, _CHAT_KEYS, "", out)
    messages = _check_messages_list(example["messages"], "messages", out)
    if messages is not None:
        assistants: list[dict[str, Any]] = []
        for i, message in enumerate(messages):
            role = _check_message(message, f"messages[{i}]", out, roles=_ROLES, weight_ok=True)
            if role == "assistant":
                assistants.append(message)
        if not assistants:
            out.add("messages", "has no assistant message: each example needs at least one")
        elif all(m.get("weight") == 0 for m in assistants):
            out.add("messages", "every assistant message has weight 0, so nothing is learned")
    _check_tools(example, "", out)


def _check_completion(example: dict[str, Any], out: _Problems) -> None:
    _check_unknown(example, _COMPLETION_KEYS, "", out)
    if "prompt" not in example:
        out.add("", "has no 'prompt'")
    elif not isinstance(example["prompt"], str):
        # An empty prompt is allowed: it trains plain text generation.
        out.add("prompt", f"must be a string, found {_kind(example['prompt'])}")
    if "completion" not in example:
        out.add("", "has no 'completion'")
    else:
        _check_text(example["completion"], "completion", out)


def _check_preference(example: dict[str, Any], out: _Problems) -> None:
    for old, new in _OLD_PREFERENCE_KEYS.items():
        if old in example:
            out.add("", f"uses the old key {old!r}: OpenAI's DPO format names it {new!r}")
    _check_unknown(
        example, _PREFERENCE_KEYS, "", out, reported_elsewhere=tuple(_OLD_PREFERENCE_KEYS)
    )
    source = example.get("input")
    if "input" not in example:
        out.add("", "has no 'input' (an object with the prompt 'messages')")
    elif not isinstance(source, dict):
        out.add("input", f"must be an object with 'messages', found {_kind(source)}")
    else:
        _check_unknown(source, _PREFERENCE_INPUT_KEYS, "input", out)
        if "messages" not in source:
            out.add("input", "has no 'messages'")
        else:
            messages = _check_messages_list(source["messages"], "input.messages", out)
            for i, message in enumerate(messages or []):
                _check_message(message, f"input.messages[{i}]", out, roles=_ROLES, weight_ok=False)
        _check_tools(source, "input", out)
    outputs: list[Any] = []
    for key, old in (
        ("preferred_output", "preferred_completion"),
        ("non_preferred_output", "non_preferred_completion"),
    ):
        where = key if key in example else old
        if where not in example:
            out.add("", f"has no {key!r} (a list with the assistant's answer)")
            continue
        messages = _check_messages_list(example[where], where, out)
        if messages is None:
            continue
        roles = [
            _check_message(m, f"{where}[{i}]", out, roles=("assistant", "tool"), weight_ok=False)
            for i, m in enumerate(messages)
        ]
        if "assistant" not in roles:
            out.add(where, "has no assistant message")
        outputs.append(messages)
    if len(outputs) == 2 and outputs[0] == outputs[1]:
        out.add("", "preferred_output and non_preferred_output are identical: nothing to learn")


_CHECKS: dict[Format, Callable[[dict[str, Any], _Problems], None]] = {
    "chat": _check_chat,
    "completion": _check_completion,
    "preference": _check_preference,
}

_FORMAT_WORDS: dict[Format, str] = {
    "chat": "a chat example ('messages')",
    "completion": "a completion example ('prompt', 'completion')",
    "preference": "a preference example ('input', 'preferred_output', 'non_preferred_output')",
}


# --------------------------------------------------------------------------------------
# Reading the file
# --------------------------------------------------------------------------------------


class _DuplicateKeys(dict[str, Any]):
    """A JSON object that remembers which keys appeared twice (json keeps the last)."""

    duplicates: list[str]


def _object_pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = _DuplicateKeys(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        obj.duplicates = []
        for key, _ in pairs:
            if key in seen:
                obj.duplicates.append(key)
            seen.add(key)
    return obj


def _reject_constant(name: str) -> Any:
    # json accepts NaN and Infinity, which are not JSON and which the API rejects.
    raise ValueError(f"{name} is not valid JSON")


_DECODER = json.JSONDecoder(object_pairs_hook=_object_pairs, parse_constant=_reject_constant)


def _duplicates(value: Any, where: str = "") -> Iterator[str]:
    if isinstance(value, dict):
        for key in getattr(value, "duplicates", ()):
            yield f"{where}.{key}" if where else key
        for key, item in value.items():
            yield from _duplicates(item, f"{where}.{key}" if where else key)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _duplicates(item, f"{where}[{i}]")


def _parse_line(raw: bytes, out: _Problems) -> dict[str, Any] | None:
    """Decode and parse one line; the problems go to ``out``."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        out.add(
            "",
            f"is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1} of the "
            "line); save the file as UTF-8",
        )
        return None
    try:
        value = _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        out.add("", f"is not valid JSON: {exc.msg} (column {exc.colno})")
        return None
    except ValueError as exc:
        out.add("", f"is not valid JSON: {exc}")
        return None
    if not isinstance(value, dict):
        out.add("", f"must be a JSON object (one example per line), found {_kind(value)}")
        return None
    for path in _duplicates(value):
        out.add("", f"key {path!r} appears twice in the same object")
    return value


@dataclass
class _Collector:
    """Problems in line order, capped; every problem is counted."""

    limit: int
    listed: list[LineProblem] = field(default_factory=list)
    count: int = 0

    def add(self, line: int | None, message: str) -> None:
        self.count += 1
        if len(self.listed) < self.limit:
            self.listed.append(LineProblem(line, message))

    def add_line(self, line: int, messages: list[str]) -> None:
        for message in messages[:_MAX_PROBLEMS_PER_LINE]:
            self.add(line, message)
        if len(messages) > _MAX_PROBLEMS_PER_LINE:
            hidden = len(messages) - _MAX_PROBLEMS_PER_LINE
            # Counted, but summarised in one entry so one line cannot fill the list.
            self.count += hidden - 1
            self.add(line, f"... and {hidden} more problems on this line")


def check_training_data(
    path: Path,
    *,
    format: Format | Literal["auto"] = "auto",
    min_examples: int = DEFAULT_MIN_EXAMPLES,
    max_problems: int = DEFAULT_MAX_PROBLEMS,
    max_tokens_per_example: int = DEFAULT_MAX_TOKENS_PER_EXAMPLE,
    n_epochs: int | None = None,
    display_name: str | None = None,
) -> TrainingDataReport:
    """Check a JSONL training file and estimate its tokens. Reads the file once, streaming.

    With ``format="auto"`` each line's format is recognised from its keys and the file's
    format is the one most lines use; lines in another format are problems (a file holds
    one format). Token statistics cover the valid examples of the file's format.
    Raises :class:`StepError` (type ``invalid_request_error``, code ``file_not_found`` or
    ``file_unreadable``) when the file cannot be read at all.
    """
    name = display_name or str(path)
    collector = _Collector(max_problems)
    stats: dict[Format, _TokenStats] = {fmt: _TokenStats() for fmt in FORMATS}
    lines_by_format: dict[Format, list[int]] = {fmt: [] for fmt in FORMATS}
    valid_by_format: dict[Format, int] = {fmt: 0 for fmt in FORMATS}
    first_seen: list[Format] = []
    lines = examples = 0
    try:
        with path.open("rb") as handle:
            head = handle.read(4)
            if head[:2] in (b"\xff\xfe", b"\xfe\xff"):
                collector.add(
                    1,
                    "the file is UTF-16 encoded (it starts with a UTF-16 byte order mark); "
                    "save it as UTF-8",
                )
                return _report(
                    name,
                    None,
                    0,
                    0,
                    0,
                    collector,
                    stats,
                    max_tokens_per_example,
                    n_epochs,
                    min_examples=0,
                )
            handle.seek(0)
            for number, raw in enumerate(handle, start=1):
                lines = number
                out = _Problems()
                if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
                    out.add(
                        "",
                        "the file starts with a UTF-8 byte order mark (EF BB BF); "
                        "save it as UTF-8 without BOM",
                    )
                    raw = raw[3:]
                raw = raw.rstrip(b"\r\n")
                if not raw.strip():
                    collector.add(number, "is blank: a JSONL file has one JSON object per line")
                    continue
                examples += 1
                example = _parse_line(raw, out)
                fmt: Format | None = None
                if example is not None:
                    found = detect_format(example)
                    if found is None:
                        out.add(
                            "",
                            "is in no known format: expected 'messages' (chat), 'prompt' and "
                            "'completion' (completion) or 'input', 'preferred_output' and "
                            f"'non_preferred_output' (preference); found keys {_keys(example)}",
                        )
                    elif format != "auto" and found != format:
                        out.add(
                            "", f"expected {_FORMAT_WORDS[format]}, found {_FORMAT_WORDS[found]}"
                        )
                    else:
                        fmt = found
                        _CHECKS[fmt](example, out)
                        if fmt not in first_seen:
                            first_seen.append(fmt)
                        lines_by_format[fmt].append(number)
                if out.messages:
                    collector.add_line(number, out.messages)
                elif fmt is not None and example is not None:
                    valid_by_format[fmt] += 1
                    stats[fmt].add(_example_tokens(fmt, example), max_tokens_per_example)
    except FileNotFoundError:
        raise StepError(
            f"training file {name} does not exist; check the path (a relative path is read "
            "from the flow file's folder)",
            type="invalid_request_error",
            code="file_not_found",
            param="file",
        ) from None
    except IsADirectoryError:
        raise StepError(
            f"training file {name} is a directory; give the path of a .jsonl file",
            type="invalid_request_error",
            code="file_unreadable",
            param="file",
        ) from None
    except OSError as exc:
        raise StepError(
            f"training file {name} cannot be read ({exc.strerror or exc.__class__.__name__}); "
            "check its permissions",
            type="invalid_request_error",
            code="file_unreadable",
            param="file",
        ) from None

    def majority(fmt: Format) -> tuple[int, int]:
        # The most lines decide; on a tie, the format met first.
        return len(lines_by_format[fmt]), -first_seen.index(fmt)

    chosen: Format | None = None
    if format != "auto":
        chosen = format
    elif first_seen:
        ranked: list[Format] = sorted(first_seen, key=majority)
        chosen = ranked[-1]
    if chosen is not None:
        _add_stray_lines(collector, chosen, lines_by_format)
    valid = valid_by_format[chosen] if chosen is not None else 0
    return _report(
        name,
        chosen,
        lines,
        examples,
        valid,
        collector,
        stats,
        max_tokens_per_example,
        n_epochs,
        min_examples=min_examples,
    )


def _add_stray_lines(
    collector: _Collector, chosen: Format, lines_by_format: dict[Format, list[int]]
) -> None:
    """Report the lines written in another format than the file's, in line order."""
    strays = [
        LineProblem(
            line,
            f"is {_FORMAT_WORDS[fmt]} but the file is in {chosen} format (most examples are); "
            "a file holds one format",
        )
        for fmt in FORMATS
        if fmt != chosen
        for line in lines_by_format[fmt]
    ]
    if not strays:
        return
    # Both lists are in line order and the listed problems are the first `limit` of their
    # kind, so the first `limit` of the merge are the first `limit` of all problems.
    # sorted() is stable: problems of one line keep their order.
    merged = sorted([*collector.listed, *strays], key=lambda p: p.line or 0)
    collector.listed = merged[: collector.limit]
    collector.count += len(strays)


def _report(
    name: str,
    chosen: Format | None,
    lines: int,
    examples: int,
    valid: int,
    collector: _Collector,
    stats: dict[Format, _TokenStats],
    max_tokens_per_example: int,
    n_epochs: int | None,
    *,
    min_examples: int,
) -> TrainingDataReport:
    if examples < min_examples:
        # A file-level problem goes first: it is the one to fix first.
        noun = "example" if examples == 1 else "examples"
        problem = LineProblem(
            None,
            f"the file has {examples} {noun}; fine-tuning needs at least {min_examples}",
        )
        collector.listed.insert(0, problem)
        del collector.listed[collector.limit :]
        collector.count += 1
    chosen_stats = stats[chosen] if chosen is not None else _TokenStats()
    return TrainingDataReport(
        file=name,
        format=chosen,
        lines=lines,
        examples=examples,
        valid=max(valid, 0),
        problem_count=collector.count,
        problems=collector.listed,
        tokens=chosen_stats,
        max_tokens_per_example=max_tokens_per_example,
        n_epochs=n_epochs if n_epochs is not None else default_epochs(chosen_stats.count),
        n_epochs_source="config" if n_epochs is not None else "default",
    )


# --------------------------------------------------------------------------------------
# The step
# --------------------------------------------------------------------------------------


def invalid_training_data(report: TrainingDataReport, *, step: str | None = None) -> StepError:
    """The error a step raises for a file that fails the check (validate and upload)."""
    data = report.to_dict()
    return StepError(
        f"training data is not valid: {report.summary()}",
        type="invalid_training_data",
        code="invalid_training_data",
        param="file",
        step=step,
        extra={
            "file": data["file"],
            "format": data["format"],
            "counts": data["counts"],
            "problems": data["problems"],
            "problems_not_listed": data["problems_not_listed"],
        },
    )


def local_result(body: dict[str, Any], result_format: str) -> Any:
    """``result_format`` for a step that sends no request: raw has no status or headers."""
    if result_format == "raw":
        return {"status": None, "headers": {}, "body": body}
    return body


async def _run(config: dict[str, Any], context: StepContext) -> Any:
    path = context.path(config["file"])
    report = await asyncio.to_thread(
        check_training_data,
        path,
        format=config.get("format", "auto"),
        min_examples=config.get("min_examples", DEFAULT_MIN_EXAMPLES),
        max_problems=config.get("max_problems", DEFAULT_MAX_PROBLEMS),
        max_tokens_per_example=config.get("max_tokens_per_example", DEFAULT_MAX_TOKENS_PER_EXAMPLE),
        n_epochs=config.get("n_epochs"),
        display_name=config["file"],
    )
    stats = report.tokens
    context.log.info(
        f"{config['file']}: {report.examples} examples in {report.format or 'no known'} format, "
        f"{report.valid} valid, {report.problem_count} problems; "
        f"~{stats.total} tokens (estimate), ~{stats.billed * report.n_epochs} billed "
        f"over {report.n_epochs} epochs"
    )
    for problem in report.problems[:10]:
        context.log.warn(str(problem))
    if stats.over_limit:
        context.log.warn(
            f"{stats.over_limit} examples exceed {report.max_tokens_per_example} tokens "
            "(estimate) and will be truncated in training"
        )
    if not report.ok and config.get("fail_on_problems", True):
        raise invalid_training_data(report, step=context.step_id)
    return local_result(report.to_dict(), config.get("result_format", "parsed"))


VALIDATE_TRAINING_DATA = StepType(
    type="openai.validate_training_data",
    title="Validate training data",
    version="1.0.0",
    run=_run,
    effect="none",
    description=(
        "Checks a JSONL training file locally (chat, completion or preference/DPO format) "
        "and estimates its tokens and billed tokens; sends no request."
    ),
)

STEP_TYPES: list[StepType] = [VALIDATE_TRAINING_DATA]

__all__ = [
    "DEFAULT_MAX_TOKENS_PER_EXAMPLE",
    "DEFAULT_MIN_EXAMPLES",
    "FORMATS",
    "STEP_TYPES",
    "VALIDATE_TRAINING_DATA",
    "LineProblem",
    "TrainingDataReport",
    "check_training_data",
    "default_epochs",
    "detect_format",
    "estimate_tokens",
    "invalid_training_data",
    "local_result",
]
