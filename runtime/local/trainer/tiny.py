"""``steprun-tiny``: a small, RANDOMLY INITIALISED causal LM built locally for demos and CI.

It is not pretrained and knows nothing: before fine-tuning it babbles. It exists so that
the real trainer can run offline with nothing downloaded, and learn a small data set by
heart in a couple of minutes on a laptop's CPU. Everything about it is fixed by this
file and ``tiny_merges.txt``, built twice it is the same model to the last bit:

* its vocabulary: byte-level BPE (GPT-2's scheme: every text encodes, nothing is
  unknown) with 1,792 merges learned once from English that has nothing to do with any
  fine-tuning data (the text of CPython 3.11's ``pydoc_data.topics``, the language
  reference ``help()`` shows; see :func:`learn_merges`), plus three special tokens.
  A byte per token made an answer of the example data ~200 tokens long, and a random
  network needs far more passes to learn sequences that long by heart; these merges
  give ~2.3 bytes per token on English text;
* a ChatML chat template;
* a four-layer Llama architecture of about 0.9M parameters, its weights drawn from a
  fixed seed.
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
VERSION = 2
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
# How it trains (in full: LoRA on a random network barely moves its loss). From scratch a
# network needs a far higher rate than the 2e-4 that suits LoRA on a pretrained one, and a
# warm-up, or the first steps at that rate throw it somewhere it learns slowly from (at
# 3e-3 without one, the example's loss fell half as fast); a cosine decay keeps the rate
# high longer than a linear one, for the late epochs where it learns which answer goes
# with which question (on the example data, greedy answers that start as their training
# answer does, in a bare TRL run: 35 of 36 after 25 epochs, 26 after 20; after 15 the
# answers are whole training answers, but often to another question).
BASE_LEARNING_RATE = 3e-3
SCHEDULE = ("cosine", 0.05)  # transformers' lr_scheduler_type, warm-up fraction of steps
_MARK = "steprun-tiny.json"


MERGES_FILE = Path(__file__).with_name("tiny_merges.txt")
VOCABULARY_SIZE = 2048  # bytes and merges; the special tokens come on top


def learn_merges() -> list[tuple[str, str]]:
    """The merges of ``tiny_merges.txt``, learned again (``tokenizers``' BPE trainer).

    Run under CPython 3.11 it gives the file's merges; the file, not this function, is
    what builds the model, so another Python's documentation never changes it.
    """
    import pydoc_data.topics

    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    topics = pydoc_data.topics.topics
    text = "\n".join(topics[key] for key in sorted(topics))
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=VOCABULARY_SIZE,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    core.train_from_iterator([text], trainer=trainer)
    return [(a, b) for a, b in json.loads(core.to_str())["model"]["merges"]]


def merges() -> list[tuple[str, str]]:
    lines = MERGES_FILE.read_text(encoding="utf-8").splitlines()
    return [(a, b) for a, b in (line.split(" ") for line in lines if not line.startswith("#"))]


def _tokenizer() -> Any:
    """Byte-level BPE: the 256 bytes, then one token per merge, in the merges' order."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {symbol: index for index, symbol in enumerate(sorted(alphabet))}
    pairs = merges()
    for left, right in pairs:
        vocab.setdefault(left + right, len(vocab))
    core = Tokenizer(models.BPE(vocab=vocab, merges=pairs))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
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
    from .quiet import quiet

    quiet()
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


__all__ = [
    "BASE_LEARNING_RATE",
    "CHAT_TEMPLATE",
    "MERGES_FILE",
    "NAME",
    "SCHEDULE",
    "SEED",
    "VERSION",
    "VOCABULARY_SIZE",
    "build",
    "ensure",
    "learn_merges",
    "merges",
]
