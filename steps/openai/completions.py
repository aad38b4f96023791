"""``openai.request_fine_tuned_model``: ask a (fine-tuned) model, Completions or Chat.

``mode: completion`` (the default) sends ``POST /completions`` with every setting of that
endpoint, including the ones the 2023 API had (``best_of``, ``logprobs``, ``echo``,
``logit_bias``, ``suffix``); ``mode: chat`` sends ``POST /chat/completions`` with
``messages``. A ``prompt`` in chat mode becomes a final user message, so a flow can
template one string for either kind of fine-tune. Chat mode has the current spec's settings
that make sense for a fine-tuned model (tools, structured outputs, ``reasoning_effort``,
``store``/``metadata``, ``service_tier``, ``prediction``, ...). What OpenAI refuses is
refused first: by the schema (a flow fails validation) or, for rules between settings,
here before anything is sent.

With ``stream: true`` the chunks are assembled into the object the non-streamed request
returns (choices by index, text and message content concatenated, tool calls merged,
logprobs merged, the finish reason, usage): the step's output never depends on whether
it streamed, and a stream that does not complete is an error, never a partial result.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from steprun.runtime.errors import StepError
from steprun.runtime.step import StepContext, StepType
from steprun.steps.openai.client import OpenAIClient
from steprun.steps.openai.shutdown import warn_if_retiring

# Config keys sent as they are, per mode. Everything else in the config is ours.
COMPLETION_PARAMS = (
    "model",
    "prompt",
    "suffix",
    "max_tokens",
    "temperature",
    "top_p",
    "n",
    "best_of",
    "stream",
    "logprobs",
    "echo",
    "stop",
    "presence_penalty",
    "frequency_penalty",
    "logit_bias",
    "seed",
    "user",
)
CHAT_PARAMS = (
    "model",
    "messages",
    "max_completion_tokens",
    "max_tokens",
    "temperature",
    "top_p",
    "n",
    "stream",
    "stop",
    "seed",
    "logprobs",
    "top_logprobs",
    "logit_bias",
    "frequency_penalty",
    "presence_penalty",
    "response_format",
    "tools",
    "tool_choice",
    "parallel_tool_calls",
    "reasoning_effort",
    "verbosity",
    "store",
    "metadata",
    "service_tier",
    "prediction",
    "modalities",
    "prompt_cache_key",
    "safety_identifier",
    "user",
)
_ANSWER_PREVIEW = 200


def _invalid(message: str, code: str, param: str) -> StepError:
    return StepError(message, type="invalid_config", code=code, param=param)


def _check_chat(body: dict[str, Any]) -> None:
    """What OpenAI refuses that a schema cannot say (it compares settings with each other)."""
    response_format = body.get("response_format") or {}
    if response_format.get("type") == "json_object" and not any(
        "json" in json.dumps(m.get("content"), ensure_ascii=False).casefold()
        for m in body["messages"]
    ):
        raise _invalid(
            "response_format json_object needs a message that mentions JSON (OpenAI answers "
            "400 otherwise): say in the system or user message that the answer is JSON",
            "json_not_mentioned",
            "messages",
        )
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        names = [
            (tool.get("function") or {}).get("name")
            for tool in body.get("tools") or []
            if tool.get("type") == "function"
        ]
        if name not in names:
            raise _invalid(
                f"tool_choice names the function {name!r}, which is not one of the tools "
                f"({', '.join(map(str, names)) or 'none'}): add it to tools or name another",
                "unknown_tool_choice",
                "tool_choice",
            )


def build_request(config: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The path and JSON body for a (schema-valid) config.

    ``None`` values are left out: a template that renders nothing means "the API's
    default", which is what leaving the setting out says.
    """
    chat = config.get("mode", "completion") == "chat"
    names = CHAT_PARAMS if chat else COMPLETION_PARAMS
    body = {name: config[name] for name in names if config.get(name) is not None}
    if chat:
        messages = list(config.get("messages") or [])
        if config.get("prompt") is not None:
            messages.append({"role": "user", "content": config["prompt"]})
        if not messages:
            raise StepError(
                "chat mode needs at least one message: give messages, a prompt, or both",
                type="invalid_config",
                code="missing_messages",
                param="messages",
            )
        body["messages"] = messages
        _check_chat(body)
    best_of, n = body.get("best_of"), body.get("n", 1)
    if best_of is not None and best_of < n:
        raise StepError(
            f"best_of ({best_of}) must be at least n ({n}): best_of is how many completions "
            "the server generates, n how many of them it returns",
            type="invalid_config",
            code="invalid_best_of",
            param="best_of",
        )
    if body.get("stream") and best_of is not None and best_of > max(1, n):
        raise _invalid(
            f"best_of ({best_of}) above n ({n}) cannot be streamed (the server keeps the "
            "completions it does not return): set best_of equal to n, or stream false",
            "invalid_best_of",
            "best_of",
        )
    if body.get("stream") and config.get("include_usage", True):
        # Without it a streamed answer has no usage, and would differ from the
        # non-streamed object; the API then sends usage in one last chunk.
        body["stream_options"] = {"include_usage": True}
    return ("/chat/completions" if chat else "/completions"), body


# --------------------------------------------------------------------------------------
# Stream assembly
# --------------------------------------------------------------------------------------


def _merge_logprobs(into: dict[str, Any] | None, part: Any) -> dict[str, Any] | None:
    """Concatenate the list fields of two logprobs objects (either kind of endpoint)."""
    if not isinstance(part, dict):
        return into
    merged = into if into is not None else {}
    for key, value in part.items():
        if isinstance(value, list):
            existing = merged.get(key)
            merged[key] = [*(existing or []), *value]
        elif key not in merged:
            merged[key] = value  # chat's `content: null` / `refusal: null` placeholders
    return merged


def _concat(current: Any, more: Any) -> Any:
    if more is None:
        return current
    return more if current is None else current + more


class _Assembler:
    """Builds the non-streamed object from a stream's chunks."""

    def __init__(self, chat: bool) -> None:
        self.chat = chat
        self.head: dict[str, Any] | None = None
        self.choices: dict[int, dict[str, Any]] = {}
        self.tool_calls: dict[int, dict[int, dict[str, Any]]] = {}
        self.usage: Any = None
        self.chunks = 0

    def add(self, chunk: dict[str, Any]) -> None:
        self.chunks += 1
        if self.head is None:
            self.head = {
                "id": chunk.get("id"),
                "object": "chat.completion" if self.chat else "text_completion",
                "created": chunk.get("created"),
                "model": chunk.get("model"),
            }
        for key in ("system_fingerprint", "service_tier"):
            if chunk.get(key) is not None:
                self.head[key] = chunk[key]
        if chunk.get("usage") is not None:
            self.usage = chunk["usage"]
        for part in chunk.get("choices") or []:
            index = part.get("index", 0)
            choice = self.choices.get(index)
            if choice is None:
                choice = self.choices[index] = self._new_choice(index)
            if self.chat:
                self._add_delta(choice, index, part.get("delta") or {})
            else:
                choice["text"] += part.get("text") or ""
            choice["logprobs"] = _merge_logprobs(choice["logprobs"], part.get("logprobs"))
            if part.get("finish_reason") is not None:
                choice["finish_reason"] = part["finish_reason"]

    def _new_choice(self, index: int) -> dict[str, Any]:
        if self.chat:
            # `annotations` is always present (often empty) in a non-streamed message.
            message: dict[str, Any] = {
                "role": "assistant",
                "content": None,
                "refusal": None,
                "annotations": [],
            }
            return {"index": index, "message": message, "logprobs": None, "finish_reason": None}
        return {"text": "", "index": index, "logprobs": None, "finish_reason": None}

    def _add_delta(self, choice: dict[str, Any], index: int, delta: dict[str, Any]) -> None:
        message = choice["message"]
        if delta.get("role"):
            message["role"] = delta["role"]
        message["content"] = _concat(message["content"], delta.get("content"))
        message["refusal"] = _concat(message["refusal"], delta.get("refusal"))
        if isinstance(delta.get("annotations"), list):
            message["annotations"].extend(delta["annotations"])
        if isinstance(delta.get("function_call"), dict):
            call = message.setdefault("function_call", {"name": "", "arguments": ""})
            for key in ("name", "arguments"):
                call[key] = _concat(call[key], delta["function_call"].get(key))
        for piece in delta.get("tool_calls") or []:
            # Tool calls arrive in pieces keyed by their own index: the first piece has
            # the id, type and name, later ones carry more of the arguments string.
            calls = self.tool_calls.setdefault(index, {})
            slot = piece.get("index", 0)
            call = calls.get(slot)
            if call is None:
                call = calls[slot] = {
                    "id": None,
                    "type": "function",
                    "function": {"name": "", "arguments": ""},
                }
            if piece.get("id"):
                call["id"] = piece["id"]
            if piece.get("type"):
                call["type"] = piece["type"]
            function = piece.get("function") or {}
            for key in ("name", "arguments"):
                call["function"][key] = _concat(call["function"][key], function.get(key))

    def result(self, what: str, step: str | None) -> dict[str, Any]:
        """The whole object; a StepError if the stream did not finish every choice."""
        if self.head is None or not self.choices:
            raise StepError(
                f"the stream of {what} ended after {self.chunks} chunk(s) without any choice; "
                "the answer is incomplete and was discarded",
                type="invalid_response",
                code="incomplete_stream",
                step=step,
            )
        unfinished = [i for i, c in sorted(self.choices.items()) if c["finish_reason"] is None]
        if unfinished:
            raise StepError(
                f"the stream of {what} ended without a finish_reason for choice(s) "
                f"{', '.join(map(str, unfinished))}; the answer is incomplete and was discarded",
                type="invalid_response",
                code="incomplete_stream",
                step=step,
            )
        for index, calls in self.tool_calls.items():
            self.choices[index]["message"]["tool_calls"] = [calls[k] for k in sorted(calls)]
        result = dict(self.head)
        result["choices"] = [self.choices[i] for i in sorted(self.choices)]
        if self.usage is not None:
            result["usage"] = self.usage
        return result


async def assemble(
    chunks: AsyncIterator[dict[str, Any]], *, chat: bool, what: str, step: str | None = None
) -> dict[str, Any]:
    """Consume a stream and return the object the non-streamed request would have.

    A StepError (code ``incomplete_stream``) when a choice never got its finish_reason.
    """
    assembler = _Assembler(chat)
    async for chunk in chunks:
        assembler.add(chunk)
    return assembler.result(what, step)


# --------------------------------------------------------------------------------------
# The step
# --------------------------------------------------------------------------------------


def _preview(result: dict[str, Any]) -> str:
    choices = result.get("choices") or []
    if not choices:
        return "(no choices)"
    first = choices[0]
    if "message" in first:
        message = first["message"] or {}
        text = message.get("content") or message.get("refusal")
        if not text and message.get("tool_calls"):
            names = [c.get("function", {}).get("name") for c in message["tool_calls"]]
            text = "tool calls: " + ", ".join(str(n) for n in names)
    else:
        text = first.get("text")
    text = str(text or "").strip().replace("\n", " ")
    return text if len(text) <= _ANSWER_PREVIEW else text[: _ANSWER_PREVIEW - 1] + "…"


async def _run(config: dict[str, Any], context: StepContext) -> Any:
    chat = config.get("mode", "completion") == "chat"
    result_format = config.get("result_format", "parsed")
    path, body = build_request(config)
    what = f"POST {path}"
    client = OpenAIClient(context)
    started = time.monotonic()
    if body.get("stream"):
        result = await assemble(
            client.stream("POST", path, json=body), chat=chat, what=what, step=context.step_id
        )
        output: Any = result
        if result_format == "raw" and client.stream_response is not None:
            meta = client.stream_response
            output = {"status": meta.status, "headers": meta.headers, "body": result}
    else:
        response = await client.request("POST", path, json=body)
        result = response.object()
        output = response.result(result_format)
    usage = result.get("usage") or {}
    finish = (result.get("choices") or [{}])[0].get("finish_reason")
    context.log.info(
        f"{config['model']} answered in {time.monotonic() - started:.1f}s: {_preview(result)}",
        finish_reason=finish,
        usage=usage,
    )
    # After the answer: the answer never waits for (or fails because of) the lookup.
    await warn_if_retiring(client, context, config["model"])
    return output


def _check(config: Mapping[str, Any]) -> list[tuple[tuple[str | int, ...], str]]:
    """The refusals of build_request, found when the flow is validated (n vs best_of, …)."""
    try:
        build_request(dict(config))
    except StepError as exc:
        return [((exc.param,) if exc.param else (), exc.message)]
    return []


REQUEST_FINE_TUNED_MODEL = StepType(
    type="openai.request_fine_tuned_model",
    title="Request fine-tuned model",
    version="1.0.0",
    run=_run,
    effect="none",
    check=_check,
    description=(
        "Sends a prompt to a (fine-tuned) model: POST /completions, or POST /chat/completions "
        "with mode: chat; streams when asked and outputs the same object either way."
    ),
)

STEP_TYPES: list[StepType] = [REQUEST_FINE_TUNED_MODEL]

__all__ = [
    "CHAT_PARAMS",
    "COMPLETION_PARAMS",
    "REQUEST_FINE_TUNED_MODEL",
    "STEP_TYPES",
    "assemble",
    "build_request",
]
