"""The formats a training file may be in, and the check's default limits."""

from __future__ import annotations

from typing import Literal

Format = Literal["chat", "completion", "preference"]
FORMATS: tuple[Format, ...] = ("chat", "completion", "preference")

DEFAULT_MIN_EXAMPLES = 10
DEFAULT_MAX_PROBLEMS = 100
# The cookbook's MAX_TOKENS_PER_EXAMPLE ("Data preparation and analysis for chat model
# fine-tuning"): longer examples are truncated to it, so only this many tokens are billed.
DEFAULT_MAX_TOKENS_PER_EXAMPLE = 16385
# A single line with hundreds of broken messages must not push every other line's
# problems out of the capped list.
MAX_PROBLEMS_PER_LINE = 10

ESTIMATOR = "regex pre-tokenizer approximating cl100k_base (an estimate, not a tokenizer count)"


__all__ = [
    "DEFAULT_MAX_PROBLEMS",
    "DEFAULT_MAX_TOKENS_PER_EXAMPLE",
    "DEFAULT_MIN_EXAMPLES",
    "ESTIMATOR",
    "FORMATS",
    "MAX_PROBLEMS_PER_LINE",
    "Format",
]
