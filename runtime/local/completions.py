"""``/v1/completions``, answered by the model behind :func:`sampling.generate`.

Every sampling parameter OpenAI documents for this endpoint is honoured the way ``model``
explains: ``max_tokens``, ``stop``, ``n``, ``best_of`` (the ``n`` best of that many by log
probability per token), ``echo``, ``logprobs`` (the model's own numbers; with ``echo`` the
first prompt token has none, as the API answers), ``temperature``/``top_p``/``seed``,
``logit_bias``, ``stream`` (with ``stream_options.include_usage``; ``best_of == n`` may
stream). The penalties are accepted and have no effect.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import ids, tokens
from .context import Context, json_body
from .errors import APIError, invalid
from .model import Generation, RetrievalModel, TokenChoice
from .params import BOOLEAN, LOGIT_BIAS, STOP, STREAM_OPTIONS, STRING, Param, check
from .sampling import (
    PENALTY,
    SEED,
    TEMPERATURE,
    TOP_P,
    N,
    Sampling,
    Served,
    best,
    check_stream_options,
    fingerprint,
    generate,
    interleave,
    prompt_size,
    sampling,
    usage,
)
from .sse import EventStream

if TYPE_CHECKING:
    from .trainer.serving import TrainedModel

COMPLETION_PARAMS = {
    "model": STRING,
    "prompt": Param(("string", "array")),
    "best_of": Param(("integer",), minimum=0, maximum=20),
    "echo": BOOLEAN,
    "frequency_penalty": PENALTY,
    "logit_bias": LOGIT_BIAS,
    "logprobs": Param(("integer",), minimum=0, maximum=5),
    "max_tokens": Param(("integer",), minimum=0),
    "n": N,
    "presence_penalty": PENALTY,
    "seed": SEED,
    "stop": STOP,
    "stream": BOOLEAN,
    "stream_options": STREAM_OPTIONS,
    "suffix": STRING,
    "temperature": TEMPERATURE,
    "top_p": TOP_P,
    "user": STRING,
}


def _prompts(value: Any, model: Served) -> list[str]:
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


def _completion_logprobs(model: Served, choice: _Choice, *, echo: bool, k: int) -> dict[str, Any]:
    items: list[tuple[str, float | None, dict[str, float] | None]] = []
    if echo:
        for position, token in enumerate(tokens.tokenize(choice.prompt)):
            if position == 0:
                # Nothing comes before the first prompt token, so nothing predicts it: the
                # API answers null for its log probability and its alternatives.
                items.append((token, None, None))
                continue
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
    include_usage = check_stream_options(body)
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
    settings = sampling(body, max_tokens, logprobs or 0)
    head = {
        "id": ids.new_id("cmpl-"),
        "object": "text_completion",
        "created": int(ctx.now()),
        "model": model_id,
        "system_fingerprint": fingerprint(model_id),
    }
    if stream and not echo and not isinstance(model, RetrievalModel):
        # Trained weights: each token is sent as soon as it is generated.
        prompts = _prompts(body["prompt"], model)
        live = _live_chunks(ctx, model, head, prompts, settings, n, logprobs, include_usage)
        return EventStream(live)
    choices: list[_Choice] = []
    prompt_tokens = completion_tokens = 0
    for prompt in _prompts(body["prompt"], model):
        prompt_tokens += prompt_size(model, prompt)
        generated = generate(model, prompt, settings, best_of)
        completion_tokens += sum(len(g.tokens) for g in generated)
        if best_of > n:
            generated = best(generated, n)
        for generation in generated:
            choices.append(_Choice(len(choices), prompt, generation))
    ctx.rate.tokens += prompt_tokens + completion_tokens
    counts = usage(prompt_tokens, completion_tokens, chat=False)
    if stream:
        chunks = _completion_chunks(model, head, choices, echo, logprobs)
        return EventStream(
            [*chunks, *([{**head, "choices": [], "usage": counts}] if include_usage else [])]
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
            "usage": counts,
        }
    )


def _completion_chunks(
    model: Served,
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
    return interleave(streams)


def _live_chunks(
    ctx: Context,
    model: TrainedModel,
    head: dict[str, Any],
    prompts: list[str],
    settings: Sampling,
    n: int,
    logprobs: int | None,
    include_usage: bool,
) -> Iterator[dict[str, Any]]:
    """The chunks of ``_completion_chunks`` (without echo), each sent as its token is
    generated (the choices one after another)."""
    prompt_tokens = completion_tokens = 0
    index = 0
    for prompt in prompts:
        prompt_tokens += prompt_size(model, prompt)
        for _ in range(n):
            generation = Generation()
            offset = len(prompt)
            for token in model.stream(prompt, settings, generation):
                completion_tokens += 1
                part = None
                if logprobs is not None:
                    part = {
                        "tokens": [token.token],
                        "token_logprobs": [token.logprob],
                        "top_logprobs": [_top_dict(token)],
                        "text_offset": [offset],
                    }
                offset += len(token.token)
                choice = {"text": token.token, "index": index, "logprobs": part}
                yield {**head, "choices": [{**choice, "finish_reason": None}]}
            choice = {"text": "", "index": index, "logprobs": None}
            yield {**head, "choices": [{**choice, "finish_reason": generation.finish_reason}]}
            index += 1
    ctx.rate.tokens += prompt_tokens + completion_tokens
    if include_usage:
        yield {**head, "choices": [], "usage": usage(prompt_tokens, completion_tokens, chat=False)}


def routes(ctx: Context) -> list[Route]:
    async def completions(request: Request) -> Response:
        body = await json_body(request)
        if ctx.trainer is not None:
            # Trained weights generate on a worker thread: the event loop keeps serving.
            return await run_in_threadpool(completion, ctx, body)
        return completion(ctx, body)

    return [Route("/v1/completions", completions, methods=["POST"])]


__all__ = ["COMPLETION_PARAMS", "completion", "routes"]
