"""``openai.record_answers``: a model's answers on a golden set, kept in a JSONL file.

The golden set is the prompts of a validation file (chat examples without their final
assistant message, or prompt/completion examples). Each answer is appended to the output
file, one JSON line, and flushed as it arrives, so a run killed at any instant keeps what
it recorded; run again (or ``steprun resume``), the step asks only for the examples the
file does not hold. A file that holds another model's answers, or answers to other
prompts, is refused rather than mixed. At most ``concurrency`` requests are in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steprun.runtime.errors import StepError
from steprun.runtime.step import StepContext, StepType

from .client import OpenAIClient
from .completions import build_request
from .shutdown import warn_if_retiring
from .training_data import detect_format

DEFAULT_CONCURRENCY = 4


@dataclass(frozen=True)
class Example:
    index: int
    prompt: Any  # a list of chat messages, or a prompt string
    expected: str | None
    digest: str


def read_golden_set(path: Path, step: str) -> list[Example]:
    """The prompts of a validation file, each with its reference answer."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise _invalid(f"{path}: no such file; check `file`", step) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _invalid(f"{path}: cannot be read as UTF-8 text ({exc})", step) from None
    examples: list[Example] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            example = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _invalid(f"{path}:{number}: not JSON ({exc.msg})", step) from None
        kind = detect_format(example) if isinstance(example, dict) else None
        if kind == "chat":
            messages = list(example["messages"])
            expected = None
            if (
                messages
                and isinstance(messages[-1], dict)
                and messages[-1].get("role") == ("assistant")
            ):
                expected = _text(messages.pop().get("content"))
            prompt: Any = messages
        elif kind == "completion":
            prompt, expected = example["prompt"], _text(example.get("completion"))
        else:
            raise _invalid(
                f'{path}:{number}: expected a chat example ({{"messages": [...]}}) or a '
                f"prompt/completion example, found {_keys(example)}",
                step,
            )
        digest = hashlib.sha256(json.dumps(prompt, sort_keys=True).encode()).hexdigest()[:16]
        examples.append(Example(len(examples), prompt, expected, digest))
    if not examples:
        raise _invalid(f"{path}: holds no examples", step)
    return examples


def read_recorded(path: Path, model: str, examples: list[Example], step: str) -> set[int]:
    """The indexes the output file already answers; a torn last line is cut off."""
    if not path.exists():
        return set()
    raw = path.read_bytes()
    end = raw.rfind(b"\n") + 1
    if end < len(raw):
        # A kill mid-write leaves a partial last line: drop it, that answer is asked again.
        with path.open("r+b") as stream:
            stream.truncate(end)
    done: set[int] = set()
    for number, line in enumerate(raw[:end].decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            index, digest, owner = row["index"], row["prompt_sha256"], row["model"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise _invalid(
                f"{path}:{number}: not a line this step wrote; choose another `output`", step
            ) from None
        if owner != model:
            raise _invalid(
                f"{path} holds answers of {owner}, not {model}; choose another `output` "
                "(one file per model)",
                step,
            )
        if not isinstance(index, int) or not 0 <= index < len(examples):
            raise _invalid(f"{path}:{number}: example {index!r} is not in the file", step)
        if examples[index].digest != digest:
            raise _invalid(
                f"{path}:{number}: answers another prompt than example {index} of the "
                "golden set (the file changed); choose another `output`",
                step,
            )
        done.add(index)
    return done


def _request_config(config: dict[str, Any], example: Example) -> dict[str, Any]:
    chat = isinstance(example.prompt, list)
    request: dict[str, Any] = {
        "model": config["model"],
        "mode": "chat" if chat else "completion",
        "temperature": config.get("temperature", 0),
        "max_tokens": config.get("max_tokens"),
        "seed": config.get("seed"),
    }
    request["messages" if chat else "prompt"] = example.prompt
    return request


def _answer_text(body: dict[str, Any], chat: bool) -> str:
    choice = (body.get("choices") or [{}])[0]
    if chat:
        return _text((choice.get("message") or {}).get("content")) or ""
    return _text(choice.get("text")) or ""


async def _run(config: dict[str, Any], context: StepContext) -> Any:
    model: str = config["model"]
    source = context.path(config["file"])
    output = context.path(config["output"])
    concurrency: int = config.get("concurrency", DEFAULT_CONCURRENCY)
    examples = read_golden_set(source, context.step_id)
    done = read_recorded(output, model, examples, context.step_id)
    todo = [e for e in examples if e.index not in done]
    client = OpenAIClient(context)
    if done:
        context.log.info(f"{len(done)} of {len(examples)} answers already in {output}")
    output.parent.mkdir(parents=True, exist_ok=True)
    queue: asyncio.Queue[Example] = asyncio.Queue()
    for example in todo:
        queue.put_nowait(example)
    asked = 0
    with output.open("a", encoding="utf-8") as stream:

        async def worker() -> None:
            nonlocal asked
            while True:
                try:
                    example = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                path, body = build_request(_request_config(config, example))
                answer = (await client.request("POST", path, json=body)).object()
                row = {
                    "index": example.index,
                    "prompt_sha256": example.digest,
                    "model": model,
                    "prompt": example.prompt,
                    "expected": example.expected,
                    "answer": _answer_text(answer, isinstance(example.prompt, list)),
                    "finish_reason": (answer.get("choices") or [{}])[0].get("finish_reason"),
                    "usage": answer.get("usage"),
                }
                # One write of a whole line, flushed: a kill never leaves half an answer
                # that a later run would trust.
                stream.write(json.dumps(row, ensure_ascii=False) + "\n")
                stream.flush()
                asked += 1

        workers = [asyncio.create_task(worker()) for _ in range(min(concurrency, len(todo)))]
        try:
            await asyncio.gather(*workers)
        except StepError as exc:
            for task in workers:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError, StepError):
                await asyncio.gather(*workers, return_exceptions=True)
            exc.info.message += (
                f" ({len(done) + asked} of {len(examples)} answers are recorded in {output}; "
                "run the step again to ask only for the rest)"
            )
            exc.args = (exc.info.message,)
            raise
        finally:
            stream.flush()
            os.fsync(stream.fileno())
    if todo:
        await warn_if_retiring(client, context, model)
    context.log.info(
        f"recorded {asked} answer(s) of {model} in {output} "
        f"({len(done)} were already there, {len(examples)} in all)"
    )
    return {
        "model": model,
        "file": str(source),
        "output": str(output),
        "examples": len(examples),
        "asked": asked,
        "already_recorded": len(done),
    }


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):  # content parts: the text ones, joined
        return "".join(p.get("text", "") for p in value if isinstance(p, dict))
    return str(value)


def _keys(value: Any) -> str:
    if isinstance(value, dict):
        return "keys " + ", ".join(sorted(value)) if value else "an empty object"
    return type(value).__name__


def _invalid(message: str, step: str) -> StepError:
    return StepError(message, type="invalid_config", code="invalid_golden_set", step=step)


RECORD_ANSWERS = StepType(
    type="openai.record_answers",
    title="Record a model's answers",
    version="1.0.0",
    run=_run,
    effect="idempotent",
    description=(
        "Asks a model every prompt of a validation file (bounded concurrency) and appends "
        "each answer to a JSONL file; run again, it asks only for what the file lacks."
    ),
)

STEP_TYPES: list[StepType] = [RECORD_ANSWERS]

__all__ = ["RECORD_ANSWERS", "STEP_TYPES", "Example", "read_golden_set", "read_recorded"]
