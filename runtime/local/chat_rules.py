"""What ``/v1/chat/completions`` refuses before it generates anything, worded as OpenAI
words it: the messages (roles, contents, tool call ids and their answers), the
response format, the tools and the tool choice, the token limits.

Each rule is one the API enforces with a 400 ``invalid_request_error``; the first broken
one is raised. Where the wording comes from a report of the real API rather than from
the spec, the comment says where.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import invalid
from .params import Param, check_value
from .training import message_text

ROLES = ("system", "assistant", "user", "function", "tool", "developer")
RESPONSE_FORMATS = ("text", "json_object", "json_schema")
TOOL_TYPES = ("function", "custom")
TOOL_CHOICES = ("none", "auto", "required")
_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


def _missing(name: str) -> Exception:
    return invalid(
        f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter"
    )


def check_messages(messages: list[dict[str, Any]]) -> None:
    """Roles, contents, and the pairing of tool calls with the tool messages answering them."""
    open_calls: dict[str, int] = {}  # tool_call_id -> index of the assistant message
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        role = message.get("role")
        if role is None:
            raise _missing(f"{where}.role")
        if role not in ROLES:
            raise invalid(
                f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', "
                "'user', 'function', 'tool', and 'developer'.",
                param=f"{where}.role",
                code="invalid_value",
            )
        content = message.get("content")
        if role != "assistant" and content is None:
            raise _missing(f"{where}.content")
        if content is not None and not isinstance(content, str | list):
            raise invalid(
                f"Invalid type for '{where}.content': expected one of a string or array of "
                "objects, but got an object instead.",
                param=f"{where}.content",
                code="invalid_type",
            )
        if role == "function" and not message.get("name"):
            raise _missing(f"{where}.name")
        if open_calls and role != "tool":
            _unanswered(open_calls)
        if role == "tool":
            call_id = message.get("tool_call_id")
            if not call_id:
                raise _missing(f"{where}.tool_call_id")
            if call_id not in open_calls:
                # The API's own spelling ("preceeding").
                raise invalid(
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'.",
                    param=f"messages.[{index}].role",
                )
            del open_calls[call_id]
        if role == "assistant":
            for call in message.get("tool_calls") or []:
                if isinstance(call, dict) and isinstance(call.get("id"), str):
                    open_calls[call["id"]] = index
    if open_calls:
        _unanswered(open_calls)


def _unanswered(open_calls: dict[str, int]) -> None:
    index = min(open_calls.values())
    raise invalid(
        "An assistant message with 'tool_calls' must be followed by tool messages responding "
        "to each 'tool_call_id'. The following tool_call_ids did not have response messages: "
        + ", ".join(open_calls),
        param=f"messages.[{index}].role",
    )


def mentions_json(messages: list[dict[str, Any]]) -> bool:
    return any("json" in message_text(m.get("content")).casefold() for m in messages)


def check_response_format(value: Any, messages: list[dict[str, Any]]) -> None:
    if value is None:
        return
    check_value("response_format", value, Param(("object",)))
    kind = value.get("type")
    if kind is None:
        raise _missing("response_format.type")
    if kind not in RESPONSE_FORMATS:
        raise invalid(
            f"Invalid value: '{kind}'. Supported values are: 'text', 'json_object', and "
            "'json_schema'.",
            param="response_format.type",
            code="invalid_value",
        )
    if kind == "json_object" and not mentions_json(messages):
        # OpenAI answers this with param "messages" and no code.
        raise invalid(
            "'messages' must contain the word 'json' in some form, to use 'response_format' "
            "of type 'json_object'.",
            param="messages",
        )
    if kind != "json_schema":
        return
    spec = value.get("json_schema")
    if spec is None:
        raise _missing("response_format.json_schema")
    check_value("response_format.json_schema", spec, Param(("object",)))
    name = spec.get("name")
    if name is None:
        raise _missing("response_format.json_schema.name")
    _check_name("response_format.json_schema.name", name)
    check_value("response_format.json_schema.schema", spec.get("schema"), Param(("object",)))
    check_value("response_format.json_schema.strict", spec.get("strict"), Param(("boolean",)))


def _check_name(where: str, name: Any) -> None:
    check_value(where, name, Param(("string",), nullable=False))
    if not _NAME.match(name):
        raise invalid(
            f"Invalid '{where}': string does not match pattern. Expected a string that matches "
            "the pattern '^[a-zA-Z0-9_-]+$'.",
            param=where,
            code="invalid_value",
        )


def function_tools(tools: list[Any]) -> list[dict[str, Any]]:
    """The functions of a (checked) ``tools`` array."""
    return [t["function"] for t in tools if t.get("type") == "function"]


def check_tools(body: dict[str, Any]) -> None:
    """``tools``, ``tool_choice`` and ``parallel_tool_calls``, and how they fit together."""
    tools = body.get("tools")
    if tools is not None:
        check_value("tools", tools, Param(("array",), items=Param(("object",), nullable=False)))
        for index, tool in enumerate(tools):
            where = f"tools[{index}]"
            kind = tool.get("type")
            if kind is None:
                raise _missing(f"{where}.type")
            if kind not in TOOL_TYPES:
                raise invalid(
                    f"Invalid value: '{kind}'. Supported values are: 'function' and 'custom'.",
                    param=f"{where}.type",
                    code="invalid_value",
                )
            if kind != "function":
                continue
            function = tool.get("function")
            if function is None:
                raise _missing(f"{where}.function")
            check_value(f"{where}.function", function, Param(("object",)))
            if function.get("name") is None:
                raise _missing(f"{where}.function.name")
            _check_name(f"{where}.function.name", function["name"])
            check_value(
                f"{where}.function.parameters", function.get("parameters"), Param(("object",))
            )
    has_tools = bool(tools)
    for name in ("tool_choice", "parallel_tool_calls"):
        if body.get(name) is not None and not has_tools:
            raise invalid(
                f"Invalid value for '{name}': '{name}' is only allowed when 'tools' are specified.",
                param=name,
            )
    choice = body.get("tool_choice")
    if isinstance(choice, str):
        if choice not in TOOL_CHOICES:
            raise invalid(
                f"Invalid value: '{choice}'. Supported values are: 'none', 'auto', and 'required'.",
                param="tool_choice",
                code="invalid_value",
            )
    elif choice is not None:
        _check_named_choice(choice, function_tools(tools or []))


def _check_named_choice(choice: Any, functions: list[dict[str, Any]]) -> None:
    check_value("tool_choice", choice, Param(("string", "object")))
    if choice.get("type") is None:
        raise _missing("tool_choice.type")
    if choice["type"] != "function":
        raise invalid(
            f"Invalid value: '{choice['type']}'. Supported values are: 'function'.",
            param="tool_choice.type",
            code="invalid_value",
        )
    function = choice.get("function")
    if not isinstance(function, dict) or function.get("name") is None:
        raise _missing("tool_choice.function.name" if function else "tool_choice.function")
    name = function["name"]
    if all(f["name"] != name for f in functions):
        raise invalid(
            f"Invalid value for 'tool_choice': no function named '{name}' was specified in "
            "the 'tools' parameter.",
            param="tool_choice",
        )


def token_limit(body: dict[str, Any]) -> int | None:
    """``max_completion_tokens``, or the deprecated ``max_tokens``; never both."""
    if body.get("max_tokens") is not None and body.get("max_completion_tokens") is not None:
        # The API's answer, as reported in langchain-ai/langgraph#5943.
        raise invalid(
            "Setting 'max_tokens' and 'max_completion_tokens' at the same time is not supported.",
            param="max_tokens",
            code="invalid_parameter_combination",
        )
    limit = body.get("max_completion_tokens")
    return body.get("max_tokens") if limit is None else limit


def _unsupported(name: str, message: str) -> Exception:
    return invalid(message, param=name, code="unsupported_parameter")


def check_reasoning(body: dict[str, Any], reasoning: bool) -> None:
    """What a reasoning model (o4-mini) refuses, and what only it accepts."""
    if not reasoning:
        if body.get("reasoning_effort") is not None:
            raise _unsupported(
                "reasoning_effort",
                "Unsupported parameter: 'reasoning_effort' is not supported with this model.",
            )
        return
    if body.get("max_tokens") is not None:
        # The API's words, as reported in devnullvoid/dms-ai-assistant#12.
        raise _unsupported(
            "max_tokens",
            "Unsupported parameter: 'max_tokens' is not supported with this model. Use "
            "'max_completion_tokens' instead.",
        )
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None and value != 1:
            raise invalid(
                f"Unsupported value: '{name}' does not support {value} with this model. Only "
                "the default (1) value is supported.",
                param=name,
                code="unsupported_value",
            )


def check_chat(body: dict[str, Any]) -> None:
    """Every rule above, in the order the API reports them."""
    messages = body["messages"]
    check_messages(messages)
    check_response_format(body.get("response_format"), messages)
    check_tools(body)
    token_limit(body)


__all__ = [
    "RESPONSE_FORMATS",
    "ROLES",
    "TOOL_CHOICES",
    "check_chat",
    "check_messages",
    "check_reasoning",
    "check_response_format",
    "check_tools",
    "function_tools",
    "mentions_json",
    "token_limit",
]
