"""steprun-tiny: built locally from a seed, the same every time, not pretrained."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

from steprun.runtime.local.trainer import tiny
from tests.local.trainer import conftest  # noqa: F401  (skips without the train extra)


def _digest(folder: Path) -> str:
    return hashlib.sha256((folder / "model.safetensors").read_bytes()).hexdigest()


def test_steprun_tiny_is_the_same_model_every_time_it_is_built(tmp_path: Path) -> None:
    first = tiny.ensure(tmp_path / "a")
    second = tiny.ensure(tmp_path / "b")
    assert _digest(first) == _digest(second)
    mark = json.loads((first / "steprun-tiny.json").read_text())
    assert mark == {
        "name": "steprun-tiny",
        "version": tiny.VERSION,
        "seed": tiny.SEED,
        "pretrained": False,
    }


def test_its_vocabulary_is_byte_level_bpe_fixed_by_its_merges_file(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny.ensure(tmp_path))
    assert len(tokenizer) == tiny.VOCABULARY_SIZE + 3  # and three special tokens
    # Any text encodes (nothing is unknown) and decodes back exactly.
    text = "Zürich → 東京 🙂 Open lumen.app/login"
    ids = tokenizer(text)["input_ids"]
    assert tokenizer.decode(ids) == text
    # English takes fewer tokens than bytes: that is what the merges are for.
    english = "Open the settings and enter the email you signed up with."
    assert len(tokenizer(english)["input_ids"]) < len(english.encode()) / 2


@pytest.mark.skipif(sys.version_info[:2] != (3, 11), reason="learned from CPython 3.11's text")
def test_its_merges_are_learned_from_text_that_is_no_training_data() -> None:
    # Learned again from CPython's own documentation, they are the file's merges.
    assert tiny.learn_merges() == tiny.merges()
