"""``/v1/chat/completions``: the model's answer, shaped as the request asks.

The sampling settings work as in ``completions`` (``max_completion_tokens`` or the
deprecated ``max_tokens``, ``stop``, ``n``, ``logprobs``/``top_logprobs``, ``seed``, ...).
``response_format`` and ``tools`` shape the answer (see ``shaping``): JSON mode, structured
outputs against a schema, tool calls with ``finish_reason: "tool_calls"`` (``"stop"`` when
``tool_choice`` names the function, as OpenAI answers), streamed in the deltas OpenAI
sends. Settings that change nothing a model of this backend can do (``store``,
``metadata``, ``service_tier``, ``reasoning_effort``, ``prediction``, the penalties, ...)
are accepted; ``service_tier`` is reported back as the tier that served the request.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import catalog, ids, shaping, tokens
from .chat_rules import check_chat, check_reasoning, token_limit
from .context import Context, json_body
from .errors import APIError
from .model import Generation, RetrievalModel, TokenChoice
from .params import ANY, BOOLEAN, LOGIT_BIAS, STOP, STREAM_OPTIONS, STRING, Param, check
from .sampling import (
    PENALTY,
    SEED,
    TEMPERATURE,
    TOP_P,
    N,
    Sampling,
    Served,
    check_stream_options,
    fingerprint,
    generate,
    interleave,
    prompt_size,
    sampling,
    usage,
)
from .sse import EventStream
from .training import message_text

if TYPE_CHECKING:
    from .trainer.serving import TrainedModel

# Accepted and without effect on this backend's models (their shape is checked where the
# API checks it: response_format, tools and tool_choice in chat_rules).
_CHAT_PASSIVE = (
    "audio", "function_call", "functions", "metadata", "modalities", "moderation",
    "parallel_tool_calls", "prediction", "prompt_cache_key", "prompt_cache_options",
    "prompt_cache_retention", "reasoning_effort", "response_format", "safety_identifier",
    "store", "tool_choice", "tools", "user", "verbosity", "web_search_options",
)  # fmt: skip
CHAT_PARAMS = {
    "model": STRING,
    "messages": Param(("array",), min_length=1, items=Param(("object",), nullable=False)),
    "frequency_penalty": PENALTY,
    "presence_penalty": PENALTY,
    "logit_bias": LOGIT_BIAS,
    "logprobs": BOOLEAN,
    "top_logprobs": Param(("integer",), minimum=0, maximum=20),
    "max_tokens": Param(("integer",), minimum=1),
    "max_completion_tokens": Param(("integer",), minimum=1),
    "n": N,
    "seed": SEED,
    "stop": STOP,
    "stream": BOOLEAN,
    "stream_options": STREAM_OPTIONS,
    "temperature": TEMPERATURE,
    "top_p": TOP_P,
    "service_tier": Param(
        ("string",), enum=("auto", "default", "flex", "scale", "priority", "fast")
    ),
    **dict.fromkeys(_CHAT_PASSIVE, ANY),
}


# The tier that served a request: "auto" (or nothing) is served by "default", and the
# spec says a "fast" request is reported as "priority".
_SERVED_TIER = {None: "default", "auto": "default", "fast": "priority"}


@dataclass(slots=True)
class Answer:
    """One choice: its content tokens, or the tool calls it makes instead."""

    generation: Generation
    tool_calls: list[shaping.ToolCall] = field(default_factory=list)
    finish_reason: str = "stop"

    @property
    def completion_tokens(self) -> int:
        if self.tool_calls:
            return sum(tokens.count(c.name) + tokens.count(c.arguments) for c in self.tool_calls)
        return len(self.generation.tokens)


def _retokenized(model: Served, text: str, k: int, limit: int | None) -> Generation:
    """A shaped text as generated tokens, scored by the model's own token distribution."""
    generation = Generation()
    for position, token in enumerate(tokens.tokenize(text)):
        if limit is not None and position >= limit:
            generation.finish_reason = "length"
            break
        top = model.unigram_top(k) if k else []
        generation.tokens.append(TokenChoice(token, model.unigram_logprob(token), top))
    return generation


def _answer(
    body: dict[str, Any],
    model: Served,
    generation: Generation,
    question: str,
    settings: Sampling,
    limit: int | None,
) -> Answer:
    """Give one generation the shape the request asks for."""
    text = generation.text
    function = shaping.choose_tool(body, question)
    if function is not None:
        call = shaping.tool_call(function, text, question)
        # A tool_choice that names the function ends with "stop", not "tool_calls" (OpenAI's
        # function-calling guide; see Future-House/aviary#60 and vllm-project/vllm#49496).
        forced = isinstance(body.get("tool_choice"), dict)
        return Answer(Generation(), [call], "stop" if forced else "tool_calls")
    response_format = body.get("response_format") or {"type": "text"}
    if response_format["type"] == "json_object":
        shaped = shaping.json_object(text)
    elif response_format["type"] == "json_schema":
        schema = response_format["json_schema"].get("schema") or {"type": "object"}
        shaped = shaping.json_for_schema(text, schema)
    else:
        return Answer(generation, finish_reason=generation.finish_reason)
    if shaped == text and generation.finish_reason == "stop":
        return Answer(generation)
    reshaped = _retokenized(model, shaped, settings.top_logprobs, limit)
    return Answer(reshaped, finish_reason=reshaped.finish_reason)


def _is_reasoning(ctx: Context, model_id: str) -> bool:
    """Whether the model is (or was fine-tuned from) a reasoning model."""
    record = ctx.fine_tuned(model_id)
    base = catalog.resolve(record.root if record is not None else model_id)
    return base is not None and base.id in catalog.REASONING


def _token_logprob(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode("utf-8"))}


def _chat_logprobs(generation: Generation) -> dict[str, Any]:
    return {
        "content": [
            {
                **_token_logprob(t.token, t.logprob),
                "top_logprobs": [_token_logprob(token, lp) for token, lp in t.top],
            }
            for t in generation.tokens
        ],
        "refusal": None,
    }


def _message(answer: Answer) -> dict[str, Any]:
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if answer.tool_calls else answer.generation.text,
        "refusal": None,
        "annotations": [],
    }
    if answer.tool_calls:
        message["tool_calls"] = [call.view() for call in answer.tool_calls]
    return message


def chat_completion(ctx: Context, body: dict[str, Any]) -> Response:
    check(body, CHAT_PARAMS, required=("model", "messages"))
    messages = body["messages"]
    check_chat(body)
    include_usage = check_stream_options(body)
    model_id = body["model"]
    kind, model = ctx.serving(model_id)
    if kind != "chat":
        raise APIError(
            404,
            "This is not a chat model and thus not supported in the v1/chat/completions "
            "endpoint. Did you mean to use v1/completions?",
            param="model",
        )
    check_reasoning(body, _is_reasoning(ctx, model_id))
    want_logprobs = bool(body.get("logprobs"))
    top_logprobs = body.get("top_logprobs")
    if top_logprobs is not None and not want_logprobs:
        raise APIError(
            400,
            "Invalid value for 'top_logprobs': 'logprobs' must be set to true when "
            "'top_logprobs' is used.",
            param="top_logprobs",
            code="invalid_value",
        )
    n = body.get("n") or 1
    limit = token_limit(body)
    shaped = (body.get("response_format") or {}).get("type") in ("json_object", "json_schema")
    # A shaped answer is cut to the limit after shaping, so the model answers in full first.
    settings = sampling(body, None if shaped else limit, top_logprobs or 0)
    question = next(
        (message_text(m.get("content")) for m in reversed(messages) if m["role"] == "user"), ""
    )
    tier = body.get("service_tier")
    head = {
        "id": ids.new_id("chatcmpl-"),
        "created": int(ctx.now()),
        "model": model_id,
        "service_tier": _SERVED_TIER.get(tier, tier),
        "system_fingerprint": fingerprint(model_id),
    }
    plain = not shaped and shaping.choose_tool(body, question) is None
    if body.get("stream") and plain and not isinstance(model, RetrievalModel):
        # Trained weights: each token is sent as soon as it is generated.
        live = _live_chunks(ctx, model, head, messages, settings, n, want_logprobs, include_usage)
        return EventStream(live)
    answers = [
        _answer(body, model, generation, question, settings, limit)
        for generation in generate(model, question, settings, n, messages=messages)
    ]
    prompt_tokens = prompt_size(model, messages)
    completion_tokens = sum(a.completion_tokens for a in answers)
    ctx.rate.tokens += prompt_tokens + completion_tokens
    counts = usage(prompt_tokens, completion_tokens, chat=True)
    if body.get("stream"):
        chunks = _chat_chunks(head, answers, want_logprobs, include_usage)
        if include_usage:
            chunks.append(
                {**head, "object": "chat.completion.chunk", "choices": [], "usage": counts}
            )
        return EventStream(chunks)
    return JSONResponse(
        {
            **head,
            "object": "chat.completion",
            "choices": [
                {
                    "index": index,
                    "message": _message(answer),
                    "logprobs": (
                        _chat_logprobs(answer.generation)
                        if want_logprobs and not answer.tool_calls
                        else None
                    ),
                    "finish_reason": answer.finish_reason,
                }
                for index, answer in enumerate(answers)
            ],
            "usage": counts,
        }
    )


def _argument_pieces(arguments: str) -> list[str]:
    """The arguments string in the small pieces OpenAI streams it in."""
    parts = tokens.tokenize(arguments)
    return parts or [arguments]


def _choice_chunks(
    base: dict[str, Any], index: int, answer: Answer, logprobs: bool
) -> list[dict[str, Any]]:
    def chunk(delta: dict[str, Any], part: Any = None, finish: str | None = None) -> dict[str, Any]:
        choice = {"index": index, "delta": delta, "logprobs": part, "finish_reason": finish}
        return {**base, "choices": [choice]}

    if answer.tool_calls:
        # First the call's id, type and name with empty arguments, then the arguments.
        chunks = []
        for slot, call in enumerate(answer.tool_calls):
            opening = {
                "index": slot,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            delta: dict[str, Any] = {"tool_calls": [opening]}
            if slot == 0:
                delta = {"role": "assistant", "content": None, **delta, "refusal": None}
            chunks.append(chunk(delta))
            chunks += [
                chunk({"tool_calls": [{"index": slot, "function": {"arguments": piece}}]})
                for piece in _argument_pieces(call.arguments)
            ]
        return [*chunks, chunk({}, finish=answer.finish_reason)]
    chunks = [chunk({"role": "assistant", "content": "", "refusal": None})]
    for token in answer.generation.tokens:
        part = _chat_logprobs(Generation([token])) if logprobs else None
        chunks.append(chunk({"content": token.token}, part))
    return [*chunks, chunk({}, finish=answer.finish_reason)]


def _chat_chunks(
    head: dict[str, Any], answers: list[Answer], logprobs: bool, include_usage: bool
) -> list[dict[str, Any]]:
    base = {**head, "object": "chat.completion.chunk"}
    if include_usage:
        # With include_usage every chunk carries `usage: null` but the last.
        base["usage"] = None
    streams = [_choice_chunks(base, i, answer, logprobs) for i, answer in enumerate(answers)]
    return list(interleave(streams))


def _delta(
    base: dict[str, Any],
    index: int,
    delta: dict[str, Any],
    part: Any = None,
    finish: str | None = None,
) -> dict[str, Any]:
    choice = {"index": index, "delta": delta, "logprobs": part, "finish_reason": finish}
    return {**base, "choices": [choice]}


def _live_chunks(
    ctx: Context,
    model: TrainedModel,
    head: dict[str, Any],
    messages: list[dict[str, Any]],
    settings: Sampling,
    n: int,
    logprobs: bool,
    include_usage: bool,
) -> Iterator[dict[str, Any]]:
    """The chunks of ``_chat_chunks``, each sent as its token is generated (the choices
    one after another)."""
    base = {**head, "object": "chat.completion.chunk"}
    if include_usage:
        base["usage"] = None
    completion_tokens = 0
    for index in range(n):
        yield _delta(base, index, {"role": "assistant", "content": "", "refusal": None})
        generation = Generation()
        for token in model.stream(messages, settings, generation):
            completion_tokens += 1
            part = _chat_logprobs(Generation([token])) if logprobs else None
            yield _delta(base, index, {"content": token.token}, part)
        yield _delta(base, index, {}, finish=generation.finish_reason)
    prompt_tokens = prompt_size(model, messages)
    ctx.rate.tokens += prompt_tokens + completion_tokens
    if include_usage:
        counts = usage(prompt_tokens, completion_tokens, chat=True)
        yield {**head, "object": "chat.completion.chunk", "choices": [], "usage": counts}


def routes(ctx: Context) -> list[Route]:
    async def chat(request: Request) -> Response:
        body = await json_body(request)
        if ctx.trainer is not None:
            # Trained weights generate on a worker thread: the event loop keeps serving.
            return await run_in_threadpool(chat_completion, ctx, body)
        return chat_completion(ctx, body)

    return [Route("/v1/chat/completions", chat, methods=["POST"])]


__all__ = ["CHAT_PARAMS", "Answer", "chat_completion", "routes"]
