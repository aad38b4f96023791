"""``openai.validate_training_data``: check a fine-tuning JSONL file before it is uploaded.

Everything happens locally: no request is sent. The file is read line by line (a training
file may be hundreds of megabytes), every problem is reported with its line number, and the
token counts are *estimated* with a small regex pre-tokenizer (see :func:`estimate_tokens`)
because no tokenizer vocabulary can be downloaded here.

Three formats are recognised, one per file:

* ``chat``: ``{"messages": [...]}``, optionally with ``tools``, ``functions`` and
  ``parallel_tool_calls`` (supervised fine-tuning of chat models);
* ``completion``: ``{"prompt": "...", "completion": "..."}`` (``babbage-002``/``davinci-002``
  and the legacy ``/v1/fine-tunes`` API);
* ``preference``: ``{"input": {"messages": [...]}, "preferred_output": [...],
  "non_preferred_output": [...]}`` (DPO, as OpenAI's current DPO guide writes it).

:func:`check_training_data` is the whole check; ``openai.upload_file`` calls it too. The
parts: ``limits`` (formats, defaults), ``tokens`` (the estimate), ``lines`` (reading a line),
``examples`` (checking one example), ``report``, ``check`` (the file) and ``step``.
"""

from __future__ import annotations

from .check import check_training_data
from .examples import detect_format
from .limits import (
    DEFAULT_MAX_PROBLEMS,
    DEFAULT_MAX_TOKENS_PER_EXAMPLE,
    DEFAULT_MIN_EXAMPLES,
    FORMATS,
    Format,
)
from .report import LineProblem, TrainingDataReport
from .step import STEP_TYPES, VALIDATE_TRAINING_DATA, invalid_training_data, local_result
from .tokens import default_epochs, estimate_tokens

__all__ = [
    "DEFAULT_MAX_PROBLEMS",
    "DEFAULT_MAX_TOKENS_PER_EXAMPLE",
    "DEFAULT_MIN_EXAMPLES",
    "FORMATS",
    "STEP_TYPES",
    "VALIDATE_TRAINING_DATA",
    "Format",
    "LineProblem",
    "TrainingDataReport",
    "check_training_data",
    "default_epochs",
    "detect_format",
    "estimate_tokens",
    "invalid_training_data",
    "local_result",
]
