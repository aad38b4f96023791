"""``openai.list_models``: the fine-tuned models, each with its shutdown date and days left.

``GET /models`` lists base and fine-tuned models alike, each with ``shutdown_date`` where
one is announced. A fine-tuned model shuts down with its base, so a fine-tune the listing
gives no date takes its base's from the same listing. Days are counted from the provider's
today (its ``Date`` header), like the create step's preflight.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from steprun.runtime.step import StepContext, StepType

from .client import OpenAIClient
from .shutdown import base_of, provider_today


def _is_fine_tuned(model: dict[str, Any]) -> bool:
    model_id = str(model.get("id", ""))
    # Today's fine-tunes are ft:BASE:org:suffix:id; the 2023 API's BASE:ft-org-date.
    return model_id.startswith("ft:") or ":ft-" in model_id


async def _run(config: dict[str, Any], context: StepContext) -> Any:
    fine_tuned_only: bool = config.get("fine_tuned_only", True)
    within_days: int | None = config.get("within_days")
    response = await OpenAIClient(context).request("GET", "/models")
    today = provider_today(response)
    listed = [m for m in response.object().get("data") or [] if isinstance(m, dict)]
    dates = {str(m.get("id")): m.get("shutdown_date") for m in listed}
    rows: list[dict[str, Any]] = []
    for model in listed:
        tuned = _is_fine_tuned(model)
        if fine_tuned_only and not tuned:
            continue
        model_id = str(model.get("id"))
        base = base_of(model_id) or (model_id.split(":", 1)[0] if tuned else None)
        shutdown = model.get("shutdown_date") or (dates.get(base) if base else None)
        days_left = _days_left(shutdown, today)
        if within_days is not None and (days_left is None or days_left > within_days):
            continue
        rows.append(
            {
                **model,
                "base_model": base,
                "shutdown_date": shutdown,
                "days_left": days_left,
            }
        )
    # Soonest shutdown first; models without a date last.
    rows.sort(key=lambda r: (r["days_left"] is None, r["days_left"] or 0, str(r.get("id"))))
    for row in rows:
        left = row["days_left"]
        when = "no shutdown date announced" if left is None else f"{left} days left"
        context.log.info(f"{row['id']}: shuts down {row['shutdown_date'] or '-'} ({when})")
    kind = "fine-tuned model(s)" if fine_tuned_only else "model(s)"
    context.log.info(f"{len(rows)} {kind} as of {today.isoformat()}")
    return {"object": "list", "today": today.isoformat(), "data": rows}


def _days_left(shutdown: Any, today: date) -> int | None:
    if not isinstance(shutdown, str):
        return None
    try:
        return (date.fromisoformat(shutdown) - today).days
    except ValueError:
        return None


LIST_MODELS = StepType(
    type="openai.list_models",
    title="List models with shutdown dates",
    version="1.0.0",
    run=_run,
    effect="none",
    description=(
        "GET /models: the fine-tuned models (or all models), each with its shutdown_date "
        "(its base's for a fine-tune) and the days left, soonest first."
    ),
)

STEP_TYPES: list[StepType] = [LIST_MODELS]

__all__ = ["LIST_MODELS", "STEP_TYPES"]
