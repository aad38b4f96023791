"""The checks a new fine-tuning job passes, shared by both APIs: parameters, metadata,
suffix, and the training and validation files (purpose, format, size); and the "auto"
hyperparameters OpenAI picks from the size of the data."""

from __future__ import annotations

import math
import re
from typing import Any

from .context import Context
from .errors import invalid
from .params import ARRAY, METADATA, OBJECT, STRING, Param, check_value
from .training import TrainingData

MIN_EXAMPLES = 10

_INT_1_50 = Param(("integer",), minimum=1, maximum=50, auto=True)
_BATCH = Param(("integer",), minimum=1, maximum=256, auto=True)
_RATE = Param(("number",), minimum=0, exclusive_minimum=True, auto=True)
_HYPER = Param(
    ("object",),
    fields={"batch_size": _BATCH, "learning_rate_multiplier": _RATE, "n_epochs": _INT_1_50},
    open=False,
)
_DPO_HYPER = Param(
    ("object",),
    fields={
        "batch_size": _BATCH,
        "learning_rate_multiplier": _RATE,
        "n_epochs": _INT_1_50,
        "beta": Param(("number",), minimum=0, maximum=2, exclusive_minimum=True, auto=True),
    },
    open=False,
)
_RFT_HYPER = Param(
    ("object",),
    fields={
        "batch_size": _BATCH,
        "learning_rate_multiplier": _RATE,
        "n_epochs": _INT_1_50,
        "reasoning_effort": Param(("string",), enum=("default", "low", "medium", "high")),
        "compute_multiplier": Param(
            ("number",), minimum=0.00001, maximum=10, exclusive_minimum=True, auto=True
        ),
        "eval_interval": Param(("integer",), minimum=1, auto=True),
        "eval_samples": Param(("integer",), minimum=1, auto=True),
    },
    open=False,
)
_WANDB = Param(
    ("object",),
    fields={"project": STRING, "name": STRING, "entity": STRING, "tags": ARRAY},
    required=("project",),
    open=False,
)
CREATE_PARAMS = {
    "model": STRING,
    "training_file": STRING,
    "hyperparameters": _HYPER,
    "suffix": Param(("string",), min_length=1, max_length=64),
    "validation_file": STRING,
    "integrations": Param(
        ("array",),
        items=Param(
            ("object",),
            fields={"type": Param(("string",), enum=("wandb",)), "wandb": _WANDB},
            required=("type", "wandb"),
            open=False,
        ),
    ),
    "seed": Param(("integer",), minimum=0, maximum=2_147_483_647),
    "method": Param(
        ("object",),
        fields={
            "type": Param(("string",), enum=("supervised", "dpo", "reinforcement")),
            "supervised": Param(("object",), fields={"hyperparameters": _HYPER}, open=False),
            "dpo": Param(("object",), fields={"hyperparameters": _DPO_HYPER}, open=False),
            "reinforcement": Param(
                ("object",),
                fields={"grader": OBJECT, "hyperparameters": _RFT_HYPER, "response_format": OBJECT},
                required=("grader",),
                open=False,
            ),
        },
        required=("type",),
        open=False,
    ),
    "metadata": METADATA,
}


# Characters a model name can carry: a ':' would split the name, a '/' the URL.
SUFFIX_PATTERN = "^[a-zA-Z0-9_-]+$"


def check_suffix(suffix: Any) -> None:
    """Refuse a suffix that would make a model name the API cannot serve, in the API's
    wording for a suffix it refuses (openai/openai-python#585 quotes it)."""
    if isinstance(suffix, str) and not re.match(SUFFIX_PATTERN, suffix):
        raise invalid(
            f'invalid suffix: {suffix}, string does not match regex "{SUFFIX_PATTERN}"',
            param="suffix",
            code="invalid_value",
        )


def check_metadata(metadata: Any, name: str = "metadata") -> None:
    """OpenAI's limits: 16 keys of up to 64 characters, string values up to 512."""
    if metadata is None:
        return
    assert isinstance(metadata, dict)
    if len(metadata) > 16:
        raise invalid(
            f"Invalid '{name}': too many properties. Expected an object with at most 16 "
            f"properties, but got an object with {len(metadata)} properties instead.",
            param=name,
            code="object_above_max_properties",
        )
    for key, value in metadata.items():
        check_value(f"{name}.{key}", value, Param(("string",), nullable=False, max_length=512))
        if len(key) > 64:
            raise invalid(
                f"Invalid '{name}': key too long. Expected a key with maximum length 64, but "
                f"got a key with length {len(key)} instead.",
                param=name,
                code="string_above_max_length",
            )


def auto_epochs(n_examples: int) -> int:
    """OpenAI's default epochs: 3, more for small sets (at least ~100 examples seen),
    fewer for big ones (at most ~25,000)."""
    if n_examples * 3 < 100:
        return min(25, math.ceil(100 / max(1, n_examples)))
    if n_examples * 3 > 25_000:
        return max(1, 25_000 // n_examples)
    return 3


def auto_batch_size(n_examples: int) -> int:
    return max(1, min(256, round(n_examples * 0.002)))


def checked_data(
    ctx: Context, file_id: str, param: str, *, purpose: str = "fine-tune"
) -> TrainingData:
    """The parsed content of a training or validation file, after the file checks."""
    record = ctx.store.files.get(file_id)
    if record is None:
        raise invalid(f"invalid {param}: {file_id}", param=param)
    if record.purpose != purpose:
        raise invalid(
            f"File '{file_id}' has purpose '{record.purpose}', but must have purpose '{purpose}'",
            param=param,
        )
    data = ctx.training_data(file_id)
    if data.bad_line is not None:
        raise invalid(
            f"Invalid file format for Fine-Tuning API. Must be .jsonl: line {data.bad_line} "
            f"of {file_id} is not a JSON object.",
            param=param,
            code="invalid_file_format",
        )
    return data


def check_format(data: TrainingData, file_id: str, model: str, param: str, expected: str) -> None:
    if data.format != expected:
        raise invalid(
            f"File {file_id} format is not compatible with model {model}",
            param=param,
            code="invalid_file_format",
        )


def check_count(data: TrainingData, file_id: str) -> None:
    if data.n_examples < MIN_EXAMPLES:
        raise invalid(
            f"{file_id} has {data.n_examples} example(s), but must have at least "
            f"{MIN_EXAMPLES} examples",
            param="training_file",
            code="invalid_n_examples",
        )


__all__ = [
    "CREATE_PARAMS",
    "MIN_EXAMPLES",
    "SUFFIX_PATTERN",
    "auto_batch_size",
    "auto_epochs",
    "check_count",
    "check_format",
    "check_metadata",
    "check_suffix",
    "checked_data",
]
