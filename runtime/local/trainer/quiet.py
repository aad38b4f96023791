"""Keep the machine-learning libraries' progress bars and advice off the user's terminal.

transformers draws a progress bar while it loads weights or writes them, and
transformers, TRL, PEFT and torch warn about their own coming changes (FutureWarning,
deprecations, advice about generation settings). None of it is about the user's flow, and
in the process that runs a flow it would land in the middle of steprun's report on
stderr. The training process writes its own output to its job's log file instead.
"""

from __future__ import annotations

import functools
import os
import warnings

_LIBRARIES = r"(transformers|trl|peft|accelerate|datasets|huggingface_hub|tokenizers|torch)(\.|$)"


@functools.cache
def quiet() -> None:
    """Silence the libraries for the rest of this process (once; before they load)."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    warnings.filterwarnings("ignore", module=_LIBRARIES)
    from huggingface_hub.utils.tqdm import disable_progress_bars
    from transformers.utils import logging

    logging.set_verbosity_error()
    logging.disable_progress_bar()
    disable_progress_bars()


__all__ = ["quiet"]
