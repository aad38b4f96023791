"""OpenAI fine-tuning JSONL as TRL datasets take it (pure Python; no torch here).

* chat: one prompt/completion row per assistant turn that has weight (``weight: 0``
  turns are context only), in TRL's conversational form, so the loss is computed on the
  assistant's answer alone, whatever the base model's chat template;
* prompt/completion: as is (TRL computes the loss on the completion);
* preference (DPO): ``prompt`` (the input messages), ``chosen`` and ``rejected``.
"""

from __future__ import annotations

import json
from typing import Any

from ..training import message_text


class BadData(ValueError):
    """Training data that cannot train; ``code`` is OpenAI's error code."""

    def __init__(self, message: str, code: str = "invalid_training_file") -> None:
        super().__init__(message)
        self.code = code


def _message(value: dict[str, Any]) -> dict[str, str]:
    return {"role": str(value["role"]), "content": message_text(value.get("content"))}


def _chat_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    messages = record["messages"]
    rows = []
    for index, message in enumerate(messages):
        if message.get("role") != "assistant" or message.get("weight", 1) == 0:
            continue
        answer = _message(message)
        if answer["content"]:
            rows.append({"prompt": [_message(m) for m in messages[:index]], "completion": [answer]})
    return rows


def rows(content: bytes, kind: str, file_id: str) -> list[dict[str, Any]]:
    """The dataset rows of a training or validation file of format ``kind``."""
    found: list[dict[str, Any]] = []
    for number, line in enumerate(content.decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        record = json.loads(line)
        where = f"line {number} of {file_id}"
        if kind == "chat":
            if not isinstance(record.get("messages"), list):
                raise BadData(f"{where} has no 'messages' list")
            made = _chat_rows(record)
            if not made:
                raise BadData(f"{where} has no assistant message to learn from")
            found += made
        elif kind == "completion":
            found.append({"prompt": record["prompt"], "completion": record["completion"]})
        else:
            inputs = [_message(m) for m in record["input"]["messages"]]
            chosen = [_message(m) for m in record["preferred_output"]]
            rejected = [_message(m) for m in record["non_preferred_output"]]
            if not chosen[-1]["content"] or not rejected[-1]["content"]:
                raise BadData(f"{where} has an empty preferred or non-preferred output")
            found.append({"prompt": inputs, "chosen": chosen, "rejected": rejected})
    if not found:
        raise BadData(f"{file_id} has no examples")
    return found


def texts(row: dict[str, Any]) -> list[str]:
    """Every text of a row, for a quick look before tokenizing."""
    out: list[str] = []
    for value in row.values():
        if isinstance(value, str):
            out.append(value)
        else:
            out += [m["content"] for m in value]
    return out


__all__ = ["BadData", "rows", "texts"]
