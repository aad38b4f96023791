"""``eval.compare_answers``: a candidate model's answers against recorded reference answers.

Both files are what ``openai.record_answers`` writes (one JSON line per answered example,
by index). Each example both files answer gets the three scores of :mod:`.scores`; the
output holds the per-example table and the means. Examples only one file answers are
listed as missing, never scored as zero.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from steprun.runtime.errors import StepError
from steprun.runtime.step import StepContext, StepType

from .scores import exact_match, similarity, token_f1

SCORES = {"exact_match": exact_match, "token_f1": token_f1, "similarity": similarity}


def read_answers(path: Path, what: str, step: str) -> dict[int, dict[str, Any]]:
    """The rows of an answers file by example index (the first row of an index wins)."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise _invalid(f"{what} {path}: no such file; check the path", step) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise _invalid(f"{what} {path}: cannot be read as UTF-8 text ({exc})", step) from None
    rows: dict[int, dict[str, Any]] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            index, answer = row["index"], row["answer"]
        except (json.JSONDecodeError, KeyError, TypeError):
            raise _invalid(
                f"{what} {path}:{number}: expected a line written by openai.record_answers "
                "({index, answer, ...})",
                step,
            ) from None
        if not isinstance(index, int) or not isinstance(answer, str):
            raise _invalid(
                f"{what} {path}:{number}: index must be an integer and answer a string", step
            )
        rows.setdefault(index, row)
    return rows


def _prompt_text(prompt: Any) -> str:
    """What the table shows of a prompt: the last user message, or the prompt itself."""
    if isinstance(prompt, list):
        users = [
            m.get("content") for m in prompt if isinstance(m, dict) and m.get("role") == "user"
        ]
        last = users[-1] if users else ""
        return last if isinstance(last, str) else json.dumps(last)
    return prompt if isinstance(prompt, str) else json.dumps(prompt)


def _model(rows: dict[int, dict[str, Any]]) -> str | None:
    return next((str(r.get("model")) for r in rows.values() if r.get("model")), None)


async def _run(config: dict[str, Any], context: StepContext) -> Any:
    step = context.step_id
    reference = read_answers(context.path(config["reference"]), "reference", step)
    candidate = read_answers(context.path(config["candidate"]), "candidate", step)
    examples: list[dict[str, Any]] = []
    for index in sorted(reference.keys() & candidate.keys()):
        ref, cand = reference[index], candidate[index]
        if ref.get("prompt_sha256") != cand.get("prompt_sha256"):
            raise _invalid(
                f"example {index} has different prompts in the reference and the candidate "
                "file: they answer different golden sets; record both from the same file",
                step,
            )
        row: dict[str, Any] = {
            "index": index,
            "prompt": _prompt_text(ref.get("prompt")),
            "expected": ref.get("expected"),
            "reference": ref["answer"],
            "candidate": cand["answer"],
        }
        for name, score in SCORES.items():
            row[name] = round(score(ref["answer"], cand["answer"]), 4)
        examples.append(row)
    if not examples:
        raise _invalid(
            "the reference and the candidate file answer no example in common; record both "
            "models' answers on the same golden set first",
            step,
        )
    summary: dict[str, Any] = {
        "examples": len(examples),
        "missing_in_candidate": sorted(reference.keys() - candidate.keys()),
        "missing_in_reference": sorted(candidate.keys() - reference.keys()),
    }
    for name in SCORES:
        summary[name] = round(sum(e[name] for e in examples) / len(examples), 4)
    context.log.info(
        f"{len(examples)} example(s): exact match {summary['exact_match']:.0%}, "
        f"token F1 {summary['token_f1']:.3f}, similarity {summary['similarity']:.3f}"
    )
    return {
        "reference_model": _model(reference),
        "candidate_model": _model(candidate),
        "summary": summary,
        "examples": examples,
    }


def _invalid(message: str, step: str) -> StepError:
    return StepError(message, type="invalid_config", code="invalid_answers", step=step)


COMPARE_ANSWERS = StepType(
    type="eval.compare_answers",
    title="Compare recorded answers",
    version="1.0.0",
    run=_run,
    effect="none",
    description=(
        "Scores a candidate's recorded answers against reference answers: exact match, "
        "token-level F1 and difflib similarity, per example and on average."
    ),
)

STEP_TYPES: list[StepType] = [COMPARE_ANSWERS]

__all__ = ["COMPARE_ANSWERS", "SCORES", "STEP_TYPES", "read_answers"]
