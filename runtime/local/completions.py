"""``/v1/completions`` and ``/v1/chat/completions``, answered by the retrieval model.

Every sampling parameter OpenAI documents for these endpoints is honoured the way
``model`` explains: ``max_tokens``/``max_completion_tokens``, ``stop``, ``n``,
``best_of`` (the ``n`` best of that many by log probability per token), ``echo``,
``logprobs``/``top_logprobs`` (the model's own numbers, in each endpoint's shape),
``temperature``/``top_p``/``seed``, ``logit_bias``, ``stream`` (with
``stream_options.include_usage``). The penalties and the chat-only features (tools,
response formats, audio, ...) are accepted and have no effect.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import ids, tokens
from .context import Context, json_body
from .errors import APIError, invalid
from .model import Generation, RetrievalModel, TokenChoice
from .params import (
    ANY,
    BOOLEAN,
    LOGIT_BIAS,
    STOP,
    STREAM_OPTIONS,
    STRING,
    Param,
    check,
)
from .sse import EventStream
from .training import chat_tokens, message_text

_PENALTY = Param(("number",), minimum=-2, maximum=2)
_TEMPERATURE = Param(("number",), minimum=0, maximum=2)
_TOP_P = Param(("number",), minimum=0, maximum=1)
_N = Param(("integer",), minimum=1, maximum=128)
_SEED = Param(("integer",))

COMPLETION_PARAMS = {
    "model": STRING,
    "prompt": Param(("string", "array")),
    "best_of": Param(("integer",), minimum=0, maximum=20),
    "echo": BOOLEAN,
    "frequency_penalty": _PENALTY,
    "logit_bias": LOGIT_BIAS,
    "logprobs": Param(("integer",), minimum=0, maximum=5),
    "max_tokens": Param(("integer",), minimum=0),
    "n": _N,
    "presence_penalty": _PENALTY,
    "seed": _SEED,
    "stop": STOP,
    "stream": BOOLEAN,
    "stream_options": STREAM_OPTIONS,
    "suffix": STRING,
    "temperature": _TEMPERATURE,
    "top_p": _TOP_P,
    "user": STRING,
}
# Accepted and without effect on a retrieval model.
_CHAT_PASSIVE = (
    "audio", "function_call", "functions", "metadata", "modalities", "moderation",
    "parallel_tool_calls", "prediction", "prompt_cache_key", "prompt_cache_options",
    "prompt_cache_retention", "reasoning_effort", "response_format", "safety_identifier",
    "service_tier", "store", "tool_choice", "tools", "user", "verbosity", "web_search_options",
)  # fmt: skip
CHAT_PARAMS = {
    "model": STRING,
    "messages": Param(("array",), min_length=1, items=Param(("object",), nullable=False)),
    "frequency_penalty": _PENALTY,
    "presence_penalty": _PENALTY,
    "logit_bias": LOGIT_BIAS,
    "logprobs": BOOLEAN,
    "top_logprobs": Param(("integer",), minimum=0, maximum=20),
    "max_tokens": Param(("integer",), minimum=1),
    "max_completion_tokens": Param(("integer",), minimum=1),
    "n": _N,
    "seed": _SEED,
    "stop": STOP,
    "stream": BOOLEAN,
    "stream_options": STREAM_OPTIONS,
    "temperature": _TEMPERATURE,
    "top_p": _TOP_P,
    **dict.fromkeys(_CHAT_PASSIVE, ANY),
}
ROLES = ("system", "assistant", "user", "function", "tool", "developer")


@dataclass(frozen=True, slots=True)
class Sampling:
    max_tokens: int | None
    stop: tuple[str, ...]
    temperature: float
    top_p: float
    top_logprobs: int
    bias: dict[int, float]
    rng: random.Random


def _sampling(body: dict[str, Any], max_tokens: int | None, top_logprobs: int) -> Sampling:
    stop = body.get("stop")
    seed = body.get("seed")
    return Sampling(
        max_tokens=max_tokens,
        stop=(stop,) if isinstance(stop, str) else tuple(stop or ()),
        temperature=1.0 if body.get("temperature") is None else float(body["temperature"]),
        top_p=1.0 if body.get("top_p") is None else float(body["top_p"]),
        top_logprobs=top_logprobs,
        bias=_logit_bias(body.get("logit_bias")),
        rng=random.Random(seed) if seed is not None else random.Random(),
    )


def _logit_bias(value: dict[str, Any] | None) -> dict[int, float]:
    bias = {}
    for key, weight in (value or {}).items():
        if not key.isdigit():
            raise invalid(
                f"Invalid key in 'logit_bias': {key}. You should only be submitting "
                "non-negative integers.",
                param="logit_bias",
                code="invalid_value",
            )
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise invalid(
                f"Invalid type for 'logit_bias.{key}': expected a number.",
                param="logit_bias",
                code="invalid_type",
            )
        if not -100 <= weight <= 100:
            raise invalid(
                f"Invalid 'logit_bias.{key}': the bias must be between -100 and 100, "
                f"but got {weight} instead.",
                param="logit_bias",
                code="invalid_value",
            )
        bias[int(key)] = float(weight)
    return bias


def _generate(
    model: RetrievalModel, query: str, sampling: Sampling, count: int
) -> list[Generation]:
    logits = model.logits(query, sampling.bias)
    return [
        model.generate(
            model.sample(
                logits,
                temperature=sampling.temperature,
                top_p=sampling.top_p,
                rng=sampling.rng,
            ),
            logits,
            max_tokens=sampling.max_tokens,
            stop=sampling.stop,
            top_logprobs=sampling.top_logprobs,
        )
        for _ in range(count)
    ]


def _best(generations: list[Generation], n: int) -> list[Generation]:
    """The ``n`` generations with the highest log probability per token."""
    ranked = sorted(generations, key=lambda g: -g.logprob / max(1, len(g.tokens)))
    return ranked[:n]


def _fingerprint(model: str) -> str:
    return ids.derived_id("fp_", model, length=10)


def _usage(prompt: int, completion: int, *, chat: bool) -> dict[str, Any]:
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if chat:
        usage["prompt_tokens_details"] = {"cached_tokens": 0, "audio_tokens": 0}
        usage["completion_tokens_details"] = {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        }
    return usage


def _check_stream_options(body: dict[str, Any]) -> bool:
    if body.get("stream_options") is not None and not body.get("stream"):
        raise invalid(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
            code="invalid_value",
        )
    return bool((body.get("stream_options") or {}).get("include_usage"))


# --- /v1/completions -------------------------------------------------------------------------


def _prompts(value: Any, model: RetrievalModel) -> list[str]:
    """The prompt texts of a request: a string, strings, token ids, or lists of token ids."""
    if isinstance(value, str):
        return [value]
    assert isinstance(value, list)
    if not value:
        raise invalid(
            "Invalid 'prompt': empty array. Expected an array with minimum length 1, "
            "but got an empty array instead.",
            param="prompt",
            code="empty_array",
        )
    if all(isinstance(item, str) for item in value):
        return list(value)
    if all(isinstance(item, int) and not isinstance(item, bool) for item in value):
        return [tokens.decode(value, model.vocabulary)]
    if all(isinstance(item, list) and item for item in value) and all(
        isinstance(i, int) and not isinstance(i, bool) for item in value for i in item
    ):
        return [tokens.decode(item, model.vocabulary) for item in value]
    raise invalid(
        "Invalid 'prompt': expected a string, an array of strings, an array of tokens or "
        "an array of token arrays.",
        param="prompt",
        code="invalid_type",
    )


@dataclass(slots=True)
class _Choice:
    index: int
    prompt: str
    generation: Generation


def _top_dict(choice: TokenChoice) -> dict[str, float]:
    # The API always includes the sampled token: up to `logprobs` + 1 entries.
    top = dict(choice.top)
    top.setdefault(choice.token, choice.logprob)
    return top


def _completion_logprobs(
    model: RetrievalModel, choice: _Choice, *, echo: bool, k: int
) -> dict[str, Any]:
    items: list[tuple[str, float, dict[str, float]]] = []
    if echo:
        for token in tokens.tokenize(choice.prompt):
            lp = model.unigram_logprob(token)
            top = dict(model.unigram_top(k)) if k else {}
            top.setdefault(token, lp)
            items.append((token, lp, top))
    items += [(t.token, t.logprob, _top_dict(t)) for t in choice.generation.tokens]
    offsets = []
    position = 0 if echo else len(choice.prompt)
    for token, _, _ in items:
        offsets.append(position)
        position += len(token)
    return {
        "tokens": [token for token, _, _ in items],
        "token_logprobs": [lp for _, lp, _ in items],
        "top_logprobs": [top for _, _, top in items],
        "text_offset": offsets,
    }


def completion(ctx: Context, body: dict[str, Any]) -> Response:
    check(body, COMPLETION_PARAMS, required=("model", "prompt"))
    include_usage = _check_stream_options(body)
    model_id = body["model"]
    kind, model = ctx.serving(model_id)
    if kind == "chat":
        raise APIError(
            404,
            "This is a chat model and not supported in the v1/completions endpoint. "
            "Did you mean to use v1/chat/completions?",
            param="model",
        )
    n = body.get("n") or 1
    best_of = body.get("best_of") or n
    if best_of < n:
        raise invalid("best_of must be greater than or equal to n.", param="best_of")
    stream = bool(body.get("stream"))
    if stream and best_of > 1 and best_of != n:
        raise invalid("Cannot stream results when best_of > n.", param="stream")
    echo = bool(body.get("echo"))
    logprobs = body.get("logprobs")
    max_tokens = 16 if body.get("max_tokens") is None else body["max_tokens"]
    sampling = _sampling(body, max_tokens, logprobs or 0)
    choices: list[_Choice] = []
    prompt_tokens = completion_tokens = 0
    for prompt in _prompts(body["prompt"], model):
        prompt_tokens += tokens.count(prompt)
        generated = _generate(model, prompt, sampling, best_of)
        completion_tokens += sum(len(g.tokens) for g in generated)
        if best_of > n:
            generated = _best(generated, n)
        for generation in generated:
            choices.append(_Choice(len(choices), prompt, generation))
    ctx.rate.tokens += prompt_tokens + completion_tokens
    head = {
        "id": ids.new_id("cmpl-"),
        "object": "text_completion",
        "created": int(ctx.now()),
        "model": model_id,
        "system_fingerprint": _fingerprint(model_id),
    }
    usage = _usage(prompt_tokens, completion_tokens, chat=False)
    if stream:
        chunks = _completion_chunks(model, head, choices, echo, logprobs)
        return EventStream(
            [*chunks, *([{**head, "choices": [], "usage": usage}] if include_usage else [])]
        )
    return JSONResponse(
        {
            **head,
            "choices": [
                {
                    "text": (choice.prompt if echo else "") + choice.generation.text,
                    "index": choice.index,
                    "logprobs": (
                        _completion_logprobs(model, choice, echo=echo, k=logprobs)
                        if logprobs is not None
                        else None
                    ),
                    "finish_reason": choice.generation.finish_reason,
                }
                for choice in choices
            ],
            "usage": usage,
        }
    )


def _interleave(streams: Sequence[list[dict[str, Any]]]) -> Iterator[dict[str, Any]]:
    """Chunks of several choices, round-robin, as the API interleaves them."""
    for position in range(max((len(s) for s in streams), default=0)):
        for stream in streams:
            if position < len(stream):
                yield stream[position]


def _completion_chunks(
    model: RetrievalModel,
    head: dict[str, Any],
    choices: list[_Choice],
    echo: bool,
    logprobs: int | None,
) -> Iterator[dict[str, Any]]:
    streams = []
    for choice in choices:
        full = (
            _completion_logprobs(model, choice, echo=echo, k=logprobs)
            if logprobs is not None
            else None
        )
        # (text, how many logprob entries it holds): an echoed prompt is one chunk.
        pieces = [(choice.prompt, len(tokens.tokenize(choice.prompt)))] if echo else []
        pieces += [(t.token, 1) for t in choice.generation.tokens]
        chunks = []
        consumed = 0
        for text, size in pieces:
            part = None
            if full is not None:
                part = {key: values[consumed : consumed + size] for key, values in full.items()}
            consumed += size
            chunks.append(
                {
                    **head,
                    "choices": [
                        {
                            "text": text,
                            "index": choice.index,
                            "logprobs": part,
                            "finish_reason": None,
                        }
                    ],
                }
            )
        chunks.append(
            {
                **head,
                "choices": [
                    {
                        "text": "",
                        "index": choice.index,
                        "logprobs": None,
                        "finish_reason": choice.generation.finish_reason,
                    }
                ],
            }
        )
        streams.append(chunks)
    return _interleave(streams)


# --- /v1/chat/completions --------------------------------------------------------------------


def _check_messages(messages: list[dict[str, Any]]) -> None:
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        role = message.get("role")
        if role is None:
            raise invalid(
                f"Missing required parameter: '{where}.role'.",
                param=f"{where}.role",
                code="missing_required_parameter",
            )
        if role not in ROLES:
            raise invalid(
                f"Invalid value: '{role}'. Supported values are: 'system', 'assistant', "
                "'user', 'function', 'tool', and 'developer'.",
                param=f"{where}.role",
                code="invalid_value",
            )
        content = message.get("content")
        if role != "assistant" and content is None:
            raise invalid(
                f"Missing required parameter: '{where}.content'.",
                param=f"{where}.content",
                code="missing_required_parameter",
            )
        if content is not None and not isinstance(content, str | list):
            raise invalid(
                f"Invalid type for '{where}.content': expected one of a string or array of "
                "objects, but got an object instead.",
                param=f"{where}.content",
                code="invalid_type",
            )


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


def chat_completion(ctx: Context, body: dict[str, Any]) -> Response:
    check(body, CHAT_PARAMS, required=("model", "messages"))
    messages = body["messages"]
    _check_messages(messages)
    include_usage = _check_stream_options(body)
    model_id = body["model"]
    kind, model = ctx.serving(model_id)
    if kind != "chat":
        raise APIError(
            404,
            "This is not a chat model and thus not supported in the v1/chat/completions "
            "endpoint. Did you mean to use v1/completions?",
            param="model",
        )
    want_logprobs = bool(body.get("logprobs"))
    top_logprobs = body.get("top_logprobs")
    if top_logprobs is not None and not want_logprobs:
        raise invalid(
            "Invalid value for 'top_logprobs': 'logprobs' must be set to true when "
            "'top_logprobs' is used.",
            param="top_logprobs",
            code="invalid_value",
        )
    n = body.get("n") or 1
    limit = body.get("max_completion_tokens")
    if limit is None:
        limit = body.get("max_tokens")
    sampling = _sampling(body, limit, top_logprobs or 0)
    query = next(
        (message_text(m.get("content")) for m in reversed(messages) if m["role"] == "user"), ""
    )
    generations = _generate(model, query, sampling, n)
    prompt_tokens = chat_tokens(messages)
    completion_tokens = sum(len(g.tokens) for g in generations)
    ctx.rate.tokens += prompt_tokens + completion_tokens
    usage = _usage(prompt_tokens, completion_tokens, chat=True)
    head = {
        "id": ids.new_id("chatcmpl-"),
        "created": int(ctx.now()),
        "model": model_id,
        "service_tier": "default",
        "system_fingerprint": _fingerprint(model_id),
    }
    if body.get("stream"):
        chunks = _chat_chunks(head, generations, want_logprobs, include_usage)
        if include_usage:
            chunks.append(
                {**head, "object": "chat.completion.chunk", "choices": [], "usage": usage}
            )
        return EventStream(chunks)
    return JSONResponse(
        {
            **head,
            "object": "chat.completion",
            "choices": [
                {
                    "index": index,
                    "message": {
                        "role": "assistant",
                        "content": generation.text,
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": _chat_logprobs(generation) if want_logprobs else None,
                    "finish_reason": generation.finish_reason,
                }
                for index, generation in enumerate(generations)
            ],
            "usage": usage,
        }
    )


def _chat_chunks(
    head: dict[str, Any], generations: list[Generation], logprobs: bool, include_usage: bool
) -> list[dict[str, Any]]:
    base = {**head, "object": "chat.completion.chunk"}
    if include_usage:
        # With include_usage every chunk carries `usage: null` but the last.
        base["usage"] = None
    streams = []
    for index, generation in enumerate(generations):
        chunks = [
            {
                **base,
                "choices": [
                    {
                        "index": index,
                        "delta": {"role": "assistant", "content": "", "refusal": None},
                        "logprobs": None,
                        "finish_reason": None,
                    }
                ],
            }
        ]
        for token in generation.tokens:
            part = None
            if logprobs:
                part = _chat_logprobs(Generation([token]))
            chunks.append(
                {
                    **base,
                    "choices": [
                        {
                            "index": index,
                            "delta": {"content": token.token},
                            "logprobs": part,
                            "finish_reason": None,
                        }
                    ],
                }
            )
        chunks.append(
            {
                **base,
                "choices": [
                    {
                        "index": index,
                        "delta": {},
                        "logprobs": None,
                        "finish_reason": generation.finish_reason,
                    }
                ],
            }
        )
        streams.append(chunks)
    return list(_interleave(streams))


def routes(ctx: Context) -> list[Route]:
    async def completions(request: Request) -> Response:
        return completion(ctx, await json_body(request))

    async def chat(request: Request) -> Response:
        return chat_completion(ctx, await json_body(request))

    return [
        Route("/v1/completions", completions, methods=["POST"]),
        Route("/v1/chat/completions", chat, methods=["POST"]),
    ]


__all__ = ["CHAT_PARAMS", "COMPLETION_PARAMS", "ROLES", "chat_completion", "completion", "routes"]
