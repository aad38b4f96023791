"""``steprun-tiny``: a small, RANDOMLY INITIALISED causal LM built locally for demos and CI.

It is not pretrained and knows nothing: before fine-tuning it babbles bytes. It exists
so that the real trainer can run offline with nothing downloaded. Everything about it
is fixed by this file: a byte-level vocabulary (the 256 bytes plus three special tokens,
independent of any data), a ChatML chat template, a four-layer Llama architecture of
about 0.8M parameters and the seed its weights are drawn from. Built twice, it is the
same model to the last bit.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

NAME = "steprun-tiny"
# Bumped whenever anything below changes, so a folder built by an older steprun is rebuilt.
VERSION = 1
SEED = 20260507
END_OF_TEXT = "<|endoftext|>"
TURN_START = "<|im_start|>"
TURN_END = "<|im_end|>"
# ChatML, as Qwen's models use it; the turn end is the end-of-sequence token.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
ARCHITECTURE = {
    "hidden_size": 128,
    "intermediate_size": 256,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 4,
    "max_position_embeddings": 2048,
}
# The learning rate its multiplier applies to: a random model learns from scratch and
# needs a far higher rate than the 2e-4 that suits LoRA on a pretrained one.
BASE_LEARNING_RATE = 5e-3
_MARK = "steprun-tiny.json"


def _tokenizer() -> Any:
    """A byte-level BPE tokenizer with no merges: one token per byte, whatever the text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {symbol: index for index, symbol in enumerate(sorted(alphabet))}
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=core,
        eos_token=TURN_END,
        pad_token=END_OF_TEXT,
        additional_special_tokens=[TURN_START],
    )
    tokenizer.add_special_tokens({"additional_special_tokens": [TURN_START]})
    tokenizer.add_tokens([END_OF_TEXT, TURN_END], special_tokens=True)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.model_max_length = ARCHITECTURE["max_position_embeddings"]
    return tokenizer


def build(folder: Path) -> None:
    """Write the model and its tokenizer to ``folder`` (replaced whole)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = _tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids(TURN_END),
        pad_token_id=tokenizer.convert_tokens_to_ids(END_OF_TEXT),
        tie_word_embeddings=True,
        **ARCHITECTURE,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(SEED)
        model = LlamaForCausalLM(config)
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}."))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / _MARK).write_text(
            json.dumps({"name": NAME, "version": VERSION, "seed": SEED, "pretrained": False})
        )
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(folder)
        os.replace(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def ensure(root: Path) -> Path:
    """The folder of steprun-tiny under ``root``, built on first use."""
    folder = root / f"{NAME}-v{VERSION}"
    mark = folder / _MARK
    if not mark.exists():
        build(folder)
    return folder


__all__ = ["BASE_LEARNING_RATE", "CHAT_TEMPLATE", "NAME", "SEED", "VERSION", "build", "ensure"]
