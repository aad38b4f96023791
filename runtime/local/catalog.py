"""The base models the local backend knows: which can be requested and which fine-tuned.

``kind`` says which endpoint serves a model (``chat`` → /chat/completions, ``completion``
→ /completions) and which training-data format it learns from. ``tunable`` says which
API may fine-tune it: ``current`` (/fine_tuning/jobs) or ``legacy`` (/fine-tunes).
Aliases resolve to a dated snapshot, as the API reports ``gpt-4o-mini-2024-07-18`` for a
job created with ``gpt-4o-mini``.

``shutdown_date`` is OpenAI's own (``GET /v1/models`` reports it), from its deprecations
page (developers.openai.com/api/docs/deprecations, as of 2026-11): the four snapshots that
can still be fine-tuned shut down on 2027-01-14, gpt-3.5-turbo-0125, gpt-4.1-nano and
o4-mini on 2026-10-23, the GPT-3 bases of the legacy API on 2024-01-04; None where no date
has been announced. This backend serves every model whatever the date: its models are not subject
to OpenAI's shutdowns, it reports them so that flows can plan for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Kind = Literal["chat", "completion"]


@dataclass(frozen=True, slots=True)
class BaseModel:
    id: str
    created: int
    kind: Kind
    tunable: Literal["current", "legacy", None] = None
    owned_by: str = "system"
    alias_of: str | None = None
    shutdown_date: str | None = None  # YYYY-MM-DD, as the API spells it


# OpenAI's shutdown dates (see the module docstring).
_JAN_2027 = "2027-01-14"
_OCT_2026 = "2026-10-23"
_JAN_2024 = "2024-01-04"

BASE_MODELS: dict[str, BaseModel] = {
    model.id: model
    for model in (
        BaseModel("gpt-4o-mini-2024-07-18", 1721172717, "chat", "current", shutdown_date=_JAN_2027),
        BaseModel("gpt-4o-mini", 1721172741, "chat", alias_of="gpt-4o-mini-2024-07-18"),
        BaseModel("gpt-4o-2024-08-06", 1722814719, "chat", "current", shutdown_date=_JAN_2027),
        BaseModel("gpt-4o", 1715367049, "chat", alias_of="gpt-4o-2024-08-06"),
        BaseModel("gpt-4.1-2025-04-14", 1744315746, "chat", "current", shutdown_date=_JAN_2027),
        BaseModel("gpt-4.1", 1744316542, "chat", alias_of="gpt-4.1-2025-04-14"),
        BaseModel(
            "gpt-4.1-mini-2025-04-14", 1744317547, "chat", "current", shutdown_date=_JAN_2027
        ),
        BaseModel("gpt-4.1-mini", 1744318173, "chat", alias_of="gpt-4.1-mini-2025-04-14"),
        BaseModel(
            "gpt-4.1-nano-2025-04-14", 1744321025, "chat", "current", shutdown_date=_OCT_2026
        ),
        BaseModel("gpt-4.1-nano", 1744321707, "chat", alias_of="gpt-4.1-nano-2025-04-14"),
        # The reasoning model OpenAI offers for reinforcement fine-tuning (and only that).
        BaseModel("o4-mini-2025-04-16", 1744133506, "chat", "current", shutdown_date=_OCT_2026),
        BaseModel("o4-mini", 1744225351, "chat", alias_of="o4-mini-2025-04-16"),
        BaseModel("gpt-3.5-turbo-0125", 1706048358, "chat", "current", shutdown_date=_OCT_2026),
        BaseModel("gpt-3.5-turbo-1106", 1698959748, "chat", "current"),
        BaseModel(
            "gpt-3.5-turbo", 1677610602, "chat", owned_by="openai", alias_of="gpt-3.5-turbo-0125"
        ),
        BaseModel("gpt-3.5-turbo-instruct", 1692901427, "completion"),
        BaseModel("babbage-002", 1692634615, "completion", "current"),
        BaseModel("davinci-002", 1692634301, "completion", "current"),
        # The embedded backend's own base model, never an OpenAI one: no shutdown date. The
        # real trainer builds it as a small randomly initialised model (steprun-tiny); the
        # simulated trainer fine-tunes it like any chat model. Flows that must keep running
        # offline whatever the date (the move-off example) fine-tune it.
        BaseModel("steprun-tiny", 1767225600, "chat", "current", owned_by="steprun"),
        # The 2023 /fine-tunes API trained these four.
        BaseModel(
            "ada", 1649357491, "completion", "legacy", owned_by="openai", shutdown_date=_JAN_2024
        ),
        BaseModel(
            "babbage",
            1649358449,
            "completion",
            "legacy",
            owned_by="openai",
            shutdown_date=_JAN_2024,
        ),
        BaseModel(
            "curie", 1649359874, "completion", "legacy", owned_by="openai", shutdown_date=_JAN_2024
        ),
        BaseModel(
            "davinci",
            1649359874,
            "completion",
            "legacy",
            owned_by="openai",
            shutdown_date=_JAN_2024,
        ),
        # Open models that Nebius (the first two) and Together (the -Reference builds)
        # fine-tune, so that their flows run against the backend's dialects unchanged.
        BaseModel("meta-llama/Meta-Llama-3.1-8B-Instruct", 1721692800, "chat", "current"),
        BaseModel("meta-llama/Llama-3.3-70B-Instruct", 1733356800, "chat", "current"),
        BaseModel("meta-llama/Meta-Llama-3.1-8B-Instruct-Reference", 1721692800, "chat", "current"),
    )
}

LEGACY_BASES = ("ada", "babbage", "curie", "davinci")
# Models that fine-tune with method reinforcement (and with no other method).
REINFORCEMENT = ("o4-mini-2025-04-16",)
# Reasoning models: reasoning_effort, max_completion_tokens only, default sampling only.
REASONING = ("o4-mini-2025-04-16",)
# Dollars per 1K training tokens in the 2023 price list; the legacy API reports a cost event.
LEGACY_PRICES = {"ada": 0.0004, "babbage": 0.0006, "curie": 0.003, "davinci": 0.03}


def resolve(model_id: str) -> BaseModel | None:
    """The base model (an alias resolved to its snapshot), or None."""
    model = BASE_MODELS.get(model_id)
    if model is not None and model.alias_of is not None:
        return BASE_MODELS[model.alias_of]
    return model


def shutdown_date(model_id: str) -> str | None:
    """When a base model (or an alias of one) shuts down, as the API reports it."""
    model = resolve(model_id)
    return model.shutdown_date if model is not None else None


__all__ = [
    "BASE_MODELS",
    "LEGACY_BASES",
    "LEGACY_PRICES",
    "REASONING",
    "REINFORCEMENT",
    "BaseModel",
    "Kind",
    "resolve",
    "shutdown_date",
]
