"""The ``openai.validate_training_data`` step."""

from __future__ import annotations

import asyncio
from typing import Any

from steprun.runtime.errors import StepError
from steprun.runtime.step import StepContext, StepType

from .check import check_training_data
from .limits import DEFAULT_MAX_PROBLEMS, DEFAULT_MAX_TOKENS_PER_EXAMPLE, DEFAULT_MIN_EXAMPLES
from .report import TrainingDataReport


def invalid_training_data(report: TrainingDataReport, *, step: str | None = None) -> StepError:
    """The error a step raises for a file that fails the check (validate and upload)."""
    data = report.to_dict()
    return StepError(
        f"training data is not valid: {report.summary()}",
        type="invalid_training_data",
        code="invalid_training_data",
        param="file",
        step=step,
        extra={
            "file": data["file"],
            "format": data["format"],
            "counts": data["counts"],
            "problems": data["problems"],
            "problems_not_listed": data["problems_not_listed"],
        },
    )


def local_result(body: dict[str, Any], result_format: str) -> Any:
    """``result_format`` for a step that sends no request: raw has no status or headers."""
    if result_format == "raw":
        return {"status": None, "headers": {}, "body": body}
    return body


async def _run(config: dict[str, Any], context: StepContext) -> Any:
    path = context.path(config["file"])
    report = await asyncio.to_thread(
        check_training_data,
        path,
        format=config.get("format", "auto"),
        min_examples=config.get("min_examples", DEFAULT_MIN_EXAMPLES),
        max_problems=config.get("max_problems", DEFAULT_MAX_PROBLEMS),
        max_tokens_per_example=config.get("max_tokens_per_example", DEFAULT_MAX_TOKENS_PER_EXAMPLE),
        n_epochs=config.get("n_epochs"),
        display_name=config["file"],
    )
    stats = report.tokens
    context.log.info(
        f"{config['file']}: {report.examples} examples in {report.format or 'no known'} format, "
        f"{report.valid} valid, {report.problem_count} problems; "
        f"~{stats.total} tokens (estimate), ~{stats.billed * report.n_epochs} billed "
        f"over {report.n_epochs} epochs"
    )
    for problem in report.problems[:10]:
        context.log.warn(str(problem))
    if stats.over_limit:
        context.log.warn(
            f"{stats.over_limit} examples exceed {report.max_tokens_per_example} tokens "
            "(estimate) and will be truncated in training"
        )
    if not report.ok and config.get("fail_on_problems", True):
        raise invalid_training_data(report, step=context.step_id)
    return local_result(report.to_dict(), config.get("result_format", "parsed"))


VALIDATE_TRAINING_DATA = StepType(
    type="openai.validate_training_data",
    title="Validate training data",
    version="1.0.0",
    run=_run,
    effect="none",
    description=(
        "Checks a JSONL training file locally (chat, completion or preference/DPO format) "
        "and estimates its tokens and billed tokens; sends no request."
    ),
)

STEP_TYPES: list[StepType] = [VALIDATE_TRAINING_DATA]


__all__ = [
    "STEP_TYPES",
    "VALIDATE_TRAINING_DATA",
    "invalid_training_data",
    "local_result",
]
