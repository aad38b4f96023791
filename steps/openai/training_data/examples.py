"""Checking one example against its format: keys, roles, content parts, tools."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .limits import Format

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


def key_list(obj: dict[str, Any]) -> str:
    return ", ".join(repr(k) for k in obj) or "none"


def json_kind(value: Any) -> str:
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


class Problems:
    """Problems of one line, each prefixed with its JSON path inside the example."""

    def __init__(self) -> None:
        self.messages: list[str] = []

    def add(self, where: str, message: str) -> None:
        self.messages.append(f"{where}: {message}" if where else message)


def _check_unknown(
    obj: dict[str, Any],
    allowed: tuple[str, ...],
    where: str,
    out: Problems,
    *,
    reported_elsewhere: tuple[str, ...] = (),
) -> None:
    for key in obj:
        if key not in allowed and key not in reported_elsewhere:
            out.add(
                where,
                f"unknown key {key!r} (allowed: {', '.join(allowed)})",
            )


def _check_text(value: Any, where: str, out: Problems) -> None:
    if not isinstance(value, str):
        out.add(where, f"must be a string, found {json_kind(value)}")
    elif not value.strip():
        out.add(where, "is empty" if not value else "is only whitespace")


def _check_content(role: str, content: Any, where: str, out: Problems) -> None:
    if isinstance(content, str):
        if not content.strip():
            out.add(where, "is empty" if not content else "is only whitespace")
        return
    if not isinstance(content, list):
        out.add(where, f"must be a string or a list of content parts, found {json_kind(content)}")
        return
    if not content:
        out.add(where, "is an empty list of content parts")
        return
    allowed = _PART_TYPES[role]
    for i, part in enumerate(content):
        at = f"{where}[{i}]"
        if not isinstance(part, dict):
            out.add(at, f"a content part must be an object, found {json_kind(part)}")
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


def _check_function_call(value: Any, where: str, out: Problems) -> None:
    if not isinstance(value, dict):
        out.add(where, f"must be an object with 'name' and 'arguments', found {json_kind(value)}")
        return
    _check_text(value.get("name"), f"{where}.name", out)
    if not isinstance(value.get("arguments"), str):
        out.add(f"{where}.arguments", "must be a string of JSON (the call's arguments)")


def _check_tool_calls(value: Any, where: str, out: Problems) -> None:
    if not isinstance(value, list) or not value:
        out.add(where, "must be a non-empty list of tool calls")
        return
    for i, call in enumerate(value):
        at = f"{where}[{i}]"
        if not isinstance(call, dict):
            out.add(at, f"a tool call must be an object, found {json_kind(call)}")
            continue
        _check_text(call.get("id"), f"{at}.id", out)
        if call.get("type") != "function":
            out.add(f"{at}.type", f"must be 'function', found {call.get('type')!r}")
        _check_function_call(call.get("function"), f"{at}.function", out)


def _check_message(
    message: Any, where: str, out: Problems, *, roles: tuple[str, ...], weight_ok: bool
) -> str | None:
    """Check one message; returns its role when the role is valid."""
    if not isinstance(message, dict):
        out.add(where, f"a message must be an object, found {json_kind(message)}")
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


def _check_tools(example: dict[str, Any], where: str, out: Problems) -> None:
    prefix = f"{where}." if where else ""
    if "tools" in example:
        tools = example["tools"]
        if not isinstance(tools, list):
            out.add(f"{prefix}tools", f"must be a list of tools, found {json_kind(tools)}")
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
            out.add(
                f"{prefix}functions", f"must be a list of functions, found {json_kind(functions)}"
            )
        else:
            for i, function in enumerate(functions):
                if not isinstance(function, dict):
                    out.add(f"{prefix}functions[{i}]", "must be an object with a 'name'")
                else:
                    _check_text(function.get("name"), f"{prefix}functions[{i}].name", out)
    if "parallel_tool_calls" in example and not isinstance(example["parallel_tool_calls"], bool):
        out.add(f"{prefix}parallel_tool_calls", "must be true or false")


def _check_messages_list(value: Any, where: str, out: Problems) -> list[Any] | None:
    if not isinstance(value, list):
        out.add(where, f"must be a list of messages, found {json_kind(value)}")
        return None
    if not value:
        out.add(where, "is an empty list")
        return None
    return value


def _check_chat(example: dict[str, Any], out: Problems) -> None:
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


def _check_completion(example: dict[str, Any], out: Problems) -> None:
    _check_unknown(example, _COMPLETION_KEYS, "", out)
    if "prompt" not in example:
        out.add("", "has no 'prompt'")
    elif not isinstance(example["prompt"], str):
        # An empty prompt is allowed: it trains plain text generation.
        out.add("prompt", f"must be a string, found {json_kind(example['prompt'])}")
    if "completion" not in example:
        out.add("", "has no 'completion'")
    else:
        _check_text(example["completion"], "completion", out)


def _check_preference(example: dict[str, Any], out: Problems) -> None:
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
        out.add("input", f"must be an object with 'messages', found {json_kind(source)}")
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


CHECKS: dict[Format, Callable[[dict[str, Any], Problems], None]] = {
    "chat": _check_chat,
    "completion": _check_completion,
    "preference": _check_preference,
}

FORMAT_WORDS: dict[Format, str] = {
    "chat": "a chat example ('messages')",
    "completion": "a completion example ('prompt', 'completion')",
    "preference": "a preference example ('input', 'preferred_output', 'non_preferred_output')",
}


__all__ = [
    "CHECKS",
    "FORMAT_WORDS",
    "Problems",
    "detect_format",
    "json_kind",
    "key_list",
]
