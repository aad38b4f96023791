"""The real trainer behind the embedded backend (``trainer: transformers``).

TRL's SFT and DPO trainers with PEFT's LoRA (or the whole model), in a child process per
job whose state lives in the job's folder; answers from the trained weights. Importing
this package imports no torch: the ``steprun[train]`` extra is needed only to train and
to serve.
"""

from __future__ import annotations

from .service import Trainer
from .serving import ModelCache, TrainedModel, Weights
from .settings import (
    INSTALL_HINT,
    TRAINERS,
    BaseModelSpec,
    TrainerSettings,
    missing_extra_message,
    parse_models,
)
from .tiny import NAME as TINY

__all__ = [
    "INSTALL_HINT",
    "TINY",
    "TRAINERS",
    "BaseModelSpec",
    "ModelCache",
    "TrainedModel",
    "Trainer",
    "TrainerSettings",
    "Weights",
    "missing_extra_message",
    "parse_models",
]
