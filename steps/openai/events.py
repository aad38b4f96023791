"""What a fine-tuning job reports while it runs: its events and its checkpoints."""

from __future__ import annotations

from typing import Any

from steprun.runtime.errors import StepError
from steprun.runtime.step import StepContext, StepType

from .client import OpenAIClient
from .finetuning import current_only, infer_api, job_path, list_items, result_format


async def list_fine_tuning_events(config: dict[str, Any], context: StepContext) -> Any:
    job_id = config["job_id"]
    api = infer_api(config, job_id, context)
    client = OpenAIClient(context)
    if api == "legacy":
        paging = [key for key in ("after", "limit") if key in config]
        if paging:
            # GET /fine-tunes/{id}/events has no paging: it returns every event, oldest
            # first. Silently ignoring `after`/`limit` would hand back something else than
            # what was asked for.
            raise StepError(
                f"{' and '.join(paging)} cannot be used with a legacy job ({job_id}): the "
                "legacy events endpoint always returns every event; remove them",
                type="invalid_config",
                code="unsupported_by_legacy_api",
                param=paging[0],
                step=context.step_id,
            )
        response = await client.request("GET", job_path(api, job_id, "events"))
    else:
        response = await list_items(
            client,
            job_path(api, job_id, "events"),
            {"after": config.get("after"), "limit": config.get("limit")},
            all_pages=bool(config.get("all", False)),
        )
    count = len(response.object().get("data") or [])
    context.log.info(f"listed {count} event(s) of fine-tuning job {job_id}")
    return response.result(result_format(config))


async def list_fine_tuning_checkpoints(config: dict[str, Any], context: StepContext) -> Any:
    job_id = config["job_id"]
    api = infer_api(config, job_id, context)
    current_only(api, "checkpoints of a fine-tuning job", context.step_id)
    response = await list_items(
        OpenAIClient(context),
        job_path(api, job_id, "checkpoints"),
        {"after": config.get("after"), "limit": config.get("limit")},
        all_pages=bool(config.get("all", False)),
    )
    count = len(response.object().get("data") or [])
    context.log.info(f"listed {count} checkpoint(s) of fine-tuning job {job_id}")
    return response.result(result_format(config))


STEP_TYPES: list[StepType] = [
    StepType(
        type="openai.list_fine_tuning_events",
        title="List fine-tuning events",
        version="1.0.0",
        run=list_fine_tuning_events,
        effect="none",
        description="Status messages and metrics of a fine-tuning job (either API), paged.",
    ),
    StepType(
        type="openai.list_fine_tuning_checkpoints",
        title="List fine-tuning checkpoints",
        version="1.0.0",
        run=list_fine_tuning_checkpoints,
        effect="none",
        description="The checkpoints (usable models) a fine-tuning job saved, paged.",
    ),
]

__all__ = ["STEP_TYPES", "list_fine_tuning_checkpoints", "list_fine_tuning_events"]
