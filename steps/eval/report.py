"""``eval.write_report``: the comparison and the replacement's loss curve, as JSON and as
one self-contained HTML page (see :mod:`.page`)."""

from __future__ import annotations

import contextlib
import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from steprun.runtime.errors import StepError
from steprun.runtime.step import StepContext, StepType

from .page import EXTRA, loss_chart, render


def loss_curve(events: list[Any]) -> list[dict[str, Any]]:
    """The train (and validation) loss by step, from a job's ``metrics`` events."""
    points: dict[int, dict[str, Any]] = {}
    for event in events:
        if not isinstance(event, dict) or event.get("type") != "metrics":
            continue
        data = event.get("data") or {}
        step, train = data.get("step"), data.get("train_loss")
        if isinstance(step, int) and isinstance(train, int | float):
            valid = data.get("valid_loss")
            points[step] = {
                "step": step,
                "train_loss": train,
                "valid_loss": valid if isinstance(valid, int | float) else None,
            }
    # Events are listed newest first; the curve reads by step.
    return [points[step] for step in sorted(points)]


def _write(path: Path, text: str) -> None:
    # Written aside, then renamed: a kill never leaves half a report where a whole one was.
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            temporary.unlink()
        raise


async def _run(config: dict[str, Any], context: StepContext) -> Any:
    comparison = config["comparison"]
    summary, examples = comparison.get("summary"), comparison.get("examples")
    if not isinstance(summary, dict) or not isinstance(examples, list):
        raise StepError(
            "comparison must be the output of eval.compare_answers ({summary, examples, ...}), "
            f"found keys {', '.join(sorted(comparison)) or 'none'}; pass {{{{ compare }}}}",
            type="invalid_config",
            param="comparison",
            step=context.step_id,
        )
    title: str = config.get("title", "Moving off a fine-tuned model")
    curve = loss_curve(config.get("events") or [])
    report = {
        "title": title,
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "reference_model": comparison.get("reference_model"),
        "candidate_model": comparison.get("candidate_model"),
        "summary": summary,
        "examples": examples,
        "loss_curve": curve,
    }
    json_path, html_path = context.path(config["json"]), context.path(config["html"])
    _write(json_path, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    chart = loss_chart(curve, f"{report['candidate_model'] or 'replacement'}: loss by step")
    if curve and chart is None:
        context.log.warn(f"the HTML report has no loss chart: plotly is not installed ({EXTRA})")
    _write(html_path, render(report, chart))
    context.log.info(f"wrote {json_path} and {html_path}")
    return {
        "json": str(json_path),
        "html": str(html_path),
        "chart": "plotly" if chart else None,
        "loss_points": len(curve),
        "summary": summary,
    }


WRITE_REPORT = StepType(
    type="eval.write_report",
    title="Write the comparison report",
    version="1.0.0",
    run=_run,
    effect="idempotent",
    description=(
        "Writes eval.compare_answers' table and a job's loss curve as JSON and as one "
        "self-contained HTML page (the chart with plotly, optional extra steprun[report])."
    ),
)

STEP_TYPES: list[StepType] = [WRITE_REPORT]

__all__ = ["STEP_TYPES", "WRITE_REPORT", "loss_curve"]
