"""How the real trainer is configured: which base models it knows, which device, rates.

``trainer: transformers`` in a ``provider: local`` authorization (or
``steprun serve-local --trainer transformers``) turns it on. ``models`` maps the names a
job may use as ``model`` to whatever ``from_pretrained`` takes (a local folder, or a Hub
id that must already be in the local cache when ``HF_HUB_OFFLINE=1``); the built-in
``steprun-tiny`` is always there. ``device`` is ``auto`` (CUDA, then MPS, then CPU) or a
torch device name. ``max_memory`` (``8GB``, ``512MiB``, bytes) holds each training
process to that much memory: beyond it the job fails with ``out_of_memory`` (see ``memory``).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from . import tiny

TRAINERS = ("simulated", "transformers")
# What the `steprun[train]` extra brings; each is imported by name when training starts.
REQUIRED_MODULES = ("torch", "transformers", "peft", "trl", "datasets")
INSTALL_HINT = "pip install 'steprun[train]'"
# The learning rate that `learning_rate_multiplier` multiplies, by kind of fine-tuning:
# the usual starting points for LoRA and for full fine-tuning of a pretrained model.
BASE_LEARNING_RATE = {"lora": 2e-4, "full": 2e-5}
AUTO_LEARNING_RATE_MULTIPLIER = 1.0
DEFAULT_LORA = {"r": 16, "alpha": 32, "dropout": 0.0}


def missing_modules() -> list[str]:
    """The modules of the ``train`` extra that cannot be imported here."""
    return [name for name in REQUIRED_MODULES if importlib.util.find_spec(name) is None]


def missing_extra_message() -> str | None:
    """One sentence saying how to install the extra, or None when it is installed."""
    missing = missing_modules()
    if not missing:
        return None
    return (
        f"trainer: transformers needs {', '.join(missing)}, which are not installed; "
        f"install them with: {INSTALL_HINT}"
    )


@dataclass(frozen=True)
class BaseModelSpec:
    """A base model the trainer may fine-tune: a name and where ``from_pretrained`` finds it."""

    name: str
    source: str  # a folder or a Hub id; "" for the built-in steprun-tiny
    adapter: str = "lora"  # "lora" or "full"
    base_learning_rate: float = BASE_LEARNING_RATE["lora"]
    # The rate's course over the job (transformers' names) and its warm-up, a fraction of
    # the steps: TRL's defaults, except for steprun-tiny (see tiny.SCHEDULE).
    schedule: str = "linear"
    warmup: float = 0.0

    @property
    def builtin(self) -> bool:
        return self.name == tiny.NAME


@dataclass(frozen=True)
class TrainerSettings:
    models: Mapping[str, BaseModelSpec] = field(default_factory=dict)
    device: str = "auto"
    max_memory: int | None = None  # bytes a training process may use (see memory)

    def base(self, name: str) -> BaseModelSpec | None:
        if name == tiny.NAME:
            # Full fine-tuning: LoRA on a random network barely moves its loss.
            schedule, warmup = tiny.SCHEDULE
            return BaseModelSpec(tiny.NAME, "", "full", tiny.BASE_LEARNING_RATE, schedule, warmup)
        return self.models.get(name)

    @property
    def names(self) -> list[str]:
        return [tiny.NAME, *sorted(self.models)]


def parse_models(value: Mapping[str, Any] | None) -> dict[str, BaseModelSpec]:
    """``models`` as an authorization or ``--model NAME=PATH`` gives it.

    A value is a path or Hub id, or a mapping ``{path, adapter: lora|full,
    learning_rate}``; ValueError names what is wrong.
    """
    found: dict[str, BaseModelSpec] = {}
    for name, spec in (value or {}).items():
        if name == tiny.NAME:
            raise ValueError(f"models: {tiny.NAME!r} is built in; give your model another name")
        if isinstance(spec, str):
            spec = {"path": spec}
        if not isinstance(spec, Mapping) or not isinstance(spec.get("path"), str):
            raise ValueError(
                f"models.{name}: expected a path or Hub id, or {{path: ..., adapter: lora|full}}"
            )
        adapter = spec.get("adapter", "lora")
        if adapter not in BASE_LEARNING_RATE:
            raise ValueError(f"models.{name}.adapter: expected lora or full, not {adapter!r}")
        rate = spec.get("learning_rate", BASE_LEARNING_RATE[adapter])
        found[name] = BaseModelSpec(name, spec["path"], adapter, float(rate))
    return found


__all__ = [
    "AUTO_LEARNING_RATE_MULTIPLIER",
    "BASE_LEARNING_RATE",
    "DEFAULT_LORA",
    "INSTALL_HINT",
    "REQUIRED_MODULES",
    "TRAINERS",
    "BaseModelSpec",
    "TrainerSettings",
    "missing_extra_message",
    "missing_modules",
    "parse_models",
]
