"""steprun-tiny: built locally from a seed, the same every time, byte-level, not pretrained."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

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


def test_its_vocabulary_is_bytes_whatever_the_text(tmp_path: Path) -> None:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny.ensure(tmp_path))
    assert len(tokenizer) == 256 + 3
    text = "Zürich → 東京 🙂"
    ids = tokenizer(text)["input_ids"]
    assert len(ids) == len(text.encode("utf-8"))
    assert tokenizer.decode(ids) == text
