"""What ``/v1/completions`` and ``/v1/chat/completions`` share: sampling settings, the
generation call, ranking, usage, ids and the round-robin of streamed choices.

Generation goes through :func:`generate` only, so the endpoints (and the response-format
and tool shaping in ``structured``) work over whatever text the model behind it produces.
"""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from . import ids, tokens
from .errors import invalid
from .model import Generation, RetrievalModel
from .params import Param
from .training import chat_tokens

if TYPE_CHECKING:
    from .trainer.serving import TrainedModel

# What answers a request: the simulated trainer's retrieval model, or trained weights.
Served: TypeAlias = "RetrievalModel | TrainedModel"

PENALTY = Param(("number",), minimum=-2, maximum=2)
TEMPERATURE = Param(("number",), minimum=0, maximum=2)
TOP_P = Param(("number",), minimum=0, maximum=1)
N = Param(("integer",), minimum=1, maximum=128)
SEED = Param(("integer",))


@dataclass(frozen=True, slots=True)
class Sampling:
    max_tokens: int | None
    stop: tuple[str, ...]
    temperature: float
    top_p: float
    top_logprobs: int
    bias: dict[int, float]
    rng: random.Random


def sampling(body: dict[str, Any], max_tokens: int | None, top_logprobs: int) -> Sampling:
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


def generate(
    model: Served,
    query: str,
    settings: Sampling,
    count: int,
    *,
    messages: list[dict[str, Any]] | None = None,
) -> list[Generation]:
    """``count`` generations for one prompt (a trained model reads the whole ``messages``)."""
    if not isinstance(model, RetrievalModel):
        return model.answer(query if messages is None else messages, settings, count)
    logits = model.logits(query, settings.bias)
    return [
        model.generate(
            model.sample(
                logits,
                temperature=settings.temperature,
                top_p=settings.top_p,
                rng=settings.rng,
            ),
            logits,
            max_tokens=settings.max_tokens,
            stop=settings.stop,
            top_logprobs=settings.top_logprobs,
        )
        for _ in range(count)
    ]


def prompt_size(model: Served, prompt: str | list[dict[str, Any]]) -> int:
    """Tokens of a prompt (text, or chat messages) as the model counts them."""
    if not isinstance(model, RetrievalModel):
        return model.count(prompt)
    return tokens.count(prompt) if isinstance(prompt, str) else chat_tokens(prompt)


def best(generations: list[Generation], n: int) -> list[Generation]:
    """The ``n`` generations with the highest log probability per token."""
    ranked = sorted(generations, key=lambda g: -g.logprob / max(1, len(g.tokens)))
    return ranked[:n]


def fingerprint(model: str) -> str:
    return ids.derived_id("fp_", model, length=10)


def usage(prompt: int, completion: int, *, chat: bool) -> dict[str, Any]:
    counts: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if chat:
        counts["prompt_tokens_details"] = {"cached_tokens": 0, "audio_tokens": 0}
        counts["completion_tokens_details"] = {
            "reasoning_tokens": 0,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        }
    return counts


def check_stream_options(body: dict[str, Any]) -> bool:
    """Whether a streamed answer ends with a usage chunk (400 for options without stream)."""
    if body.get("stream_options") is not None and not body.get("stream"):
        raise invalid(
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            param="stream_options",
            code="invalid_value",
        )
    return bool((body.get("stream_options") or {}).get("include_usage"))


def interleave(streams: Sequence[list[dict[str, Any]]]) -> Iterator[dict[str, Any]]:
    """Chunks of several choices, round-robin, as the API interleaves them."""
    for position in range(max((len(s) for s in streams), default=0)):
        for stream in streams:
            if position < len(stream):
                yield stream[position]


__all__ = [
    "PENALTY",
    "SEED",
    "TEMPERATURE",
    "TOP_P",
    "N",
    "Sampling",
    "Served",
    "best",
    "check_stream_options",
    "fingerprint",
    "generate",
    "interleave",
    "prompt_size",
    "sampling",
    "usage",
]
