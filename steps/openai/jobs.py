"""Fine-tuning job steps: create, retrieve, list, cancel, pause, resume.

Creating a job costs money and is not idempotent, so the create step sends its request
once per execution: every job it creates is tagged with metadata naming the run, the step
and this execution, and after any failure that leaves the outcome unknown (or when a
crashed earlier attempt is resumed) it looks for that job over a settle window
(:mod:`.reconcile`) instead of sending the request again.
"""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from steprun.runtime.errors import StepError
from steprun.runtime.step import StepContext, StepType

from .client import ApiResponse, OpenAIClient
from .finetuning import (
    LEGACY_SHUTDOWN_NOTE,
    TERMINAL,
    Api,
    current_only,
    infer_api,
    job_path,
    job_summary,
    list_items,
    refuse_legacy_on_openai,
    result_format,
)
from .reconcile import Settler, describe
from .shutdown import DEFAULT_MIN_DAYS_LEFT, preflight_create

# Metadata keys the create step adds; users may not set keys with this prefix.
RUN_KEY = "steprun_run_id"
STEP_KEY = "steprun_step_id"
# One execution of the step: a flow that comes back to the same create step in the same
# run (an error exit looping back) must create a new job, not adopt the previous one.
EXECUTION_KEY = "steprun_execution"
_METADATA_VALUE_MAX = 512  # OpenAI: at most 16 keys, values of at most 512 characters

_CURRENT_FIELDS = (
    "model",
    "training_file",
    "validation_file",
    "suffix",
    "seed",
    "method",
    "hyperparameters",
    "integrations",
    # Settings of other providers, translated (or refused) by their adapters.
    "lora",
    "training_type",
)
_LEGACY_FIELDS = (
    "training_file",
    "validation_file",
    "model",
    "n_epochs",
    "batch_size",
    "learning_rate_multiplier",
    "prompt_loss_weight",
    "compute_classification_metrics",
    "classification_n_classes",
    "classification_positive_class",
    "classification_betas",
    "suffix",
)
# The legacy job object echoes these settings in `hyperparams`.
_LEGACY_HYPERPARAMS = ("n_epochs", "batch_size", "learning_rate_multiplier", "prompt_loss_weight")
# Legacy jobs are matched on created_at >= the attempt's start; the server's clock may be
# behind ours by this much.
LEGACY_CLOCK_SKEW = 120


# -- request bodies -------------------------------------------------------------------------


def _tag_value(value: str) -> str:
    if len(value) <= _METADATA_VALUE_MAX:
        return value
    return "sha256:" + hashlib.sha256(value.encode()).hexdigest()


def job_tags(context: StepContext, execution: str) -> dict[str, str]:
    return {
        RUN_KEY: _tag_value(context.run_id),
        STEP_KEY: _tag_value(context.step_id),
        EXECUTION_KEY: execution,
    }


def current_body(config: Mapping[str, Any], tags: Mapping[str, str]) -> dict[str, Any]:
    """The ``CreateFineTuningJobRequest`` for a config: its fields, metadata merged with tags."""
    # A null setting (a template that rendered nothing) means the API's default: leave it out.
    body = {key: config[key] for key in _CURRENT_FIELDS if config.get(key) is not None}
    body["metadata"] = {**(config.get("metadata") or {}), **tags}
    return body


def legacy_body(config: Mapping[str, Any]) -> dict[str, Any]:
    """The legacy ``CreateFineTuneRequest``: it has no metadata to tag a job with."""
    return {key: config[key] for key in _LEGACY_FIELDS if config.get(key) is not None}


# -- finding a job an earlier attempt created ------------------------------------------------


async def _find_current(
    client: OpenAIClient, context: StepContext, tags: Mapping[str, str]
) -> ApiResponse | None:
    listing = await client.request(
        "GET", "/fine_tuning/jobs", params={"metadata": dict(tags), "limit": 100}
    )
    for job in listing.object().get("data") or []:
        metadata = job.get("metadata") if isinstance(job, dict) else None
        # Checked here too: a compatible server that ignores the filter must not make us
        # adopt somebody else's job.
        if isinstance(metadata, dict) and all(metadata.get(k) == v for k, v in tags.items()):
            context.log.info(
                f"found the job an earlier attempt created: {job_summary(job)}; using it "
                "instead of creating another"
            )
            return await client.request("GET", job_path("current", str(job["id"])))
    return None


def _legacy_match(job: Any, config: Mapping[str, Any], started_at: float) -> bool:
    if not isinstance(job, dict):
        return False

    def file_ids(key: str) -> list[Any]:
        return [f.get("id") for f in job.get(key) or [] if isinstance(f, dict)]

    if config["training_file"] not in file_ids("training_files"):
        return False
    validation = config.get("validation_file")
    if (validation is not None and validation not in file_ids("validation_files")) or (
        validation is None and file_ids("validation_files")
    ):
        return False
    if config.get("model") is not None and job.get("model") != config["model"]:
        return False
    created = job.get("created_at")
    if not isinstance(created, int | float) or created < started_at - LEGACY_CLOCK_SKEW:
        return False
    hyperparams = job.get("hyperparams") or {}
    for key in _LEGACY_HYPERPARAMS:
        wanted, actual = config.get(key), hyperparams.get(key)
        if wanted is not None and not (
            isinstance(actual, int | float) and math.isclose(actual, wanted, rel_tol=1e-9)
        ):
            return False
    # The suffix shows only in the model name, which exists once the job has succeeded.
    name, suffix = job.get("fine_tuned_model"), config.get("suffix")
    return not (suffix and isinstance(name, str) and f":{suffix}-" not in name)


async def _find_legacy(
    client: OpenAIClient, context: StepContext, config: Mapping[str, Any], started_at: float
) -> ApiResponse | None:
    # The legacy API takes no metadata, so a job cannot be tagged. What identifies ours is
    # what we sent: same training and validation files, model and hyperparameters, created
    # no earlier than this attempt started (less clock skew). A job somebody else created
    # with the very same settings in the same minute would match too; that risk is the
    # price of an API without metadata, and it is smaller than paying for a duplicate job.
    listing = await client.request("GET", "/fine-tunes")
    found = [j for j in listing.object().get("data") or [] if _legacy_match(j, config, started_at)]
    if not found:
        return None
    found.sort(key=lambda j: j.get("created_at") or 0)
    if len(found) > 1:
        context.log.warn(
            f"{len(found)} legacy jobs match what this step sent "
            f"({', '.join(str(j.get('id')) for j in found)}); using the earliest"
        )
    context.log.info(
        f"found the job an earlier attempt created: {job_summary(found[0])}; using it instead "
        "of creating another"
    )
    return await client.request("GET", job_path("legacy", str(found[0]["id"])))


# -- create ------------------------------------------------------------------------------


async def create_fine_tuning_job(config: dict[str, Any], context: StepContext) -> Any:
    client = OpenAIClient(context)
    api: Api = "legacy" if config.get("api") == "legacy" else "current"
    if api == "current":
        execution = context.saved.get(EXECUTION_KEY) if context.resumed else None
        fresh = not isinstance(execution, str)
        if fresh:
            execution = uuid.uuid4().hex
        tags = job_tags(context, str(execution))
        settler = Settler(
            context,
            client.read_timeout,
            f"a fine-tuning job with metadata {describe(tags)}",
            {"metadata": tags},
        )

        def find() -> Awaitable[ApiResponse | None]:
            return _find_current(client, context, tags)

        if not fresh:
            found = await settler.find_interrupted(find)
            if found is not None:
                return found.result(result_format(config))
        if config.get("model"):
            days = config.get("min_days_left", DEFAULT_MIN_DAYS_LEFT)
            await preflight_create(client, context, config["model"], days)
        body = current_body(config, tags)
        # The tag is recorded before the request: a crash after it leaves it to look for.
        response = await settler.send_once(
            lambda: client.request("POST", "/fine_tuning/jobs", json=body, retry_unsafe=False),
            find,
            **{EXECUTION_KEY: execution},
        )
    else:
        refuse_legacy_on_openai(client.base_url, context.step_id)
        saved = context.saved.get("legacy_started_at") if context.resumed else None
        resuming = isinstance(saved, int | float)
        # A resumed attempt keeps the earliest start: a late job of the first still matches.
        started = float(saved) if isinstance(saved, int | float) else time.time()
        settler = Settler(
            context,
            client.read_timeout,
            f"a legacy job on {config['training_file']} created since {started:.0f} "
            "(epoch seconds) with this step's settings",
            {"legacy_job": {"training_file": config["training_file"], "created_since": started}},
        )

        def find_legacy() -> Awaitable[ApiResponse | None]:
            return _find_legacy(client, context, config, started)

        if resuming:
            found = await settler.find_interrupted(find_legacy)
            if found is not None:
                return found.result(result_format(config))
        body = legacy_body(config)
        response = await settler.send_once(
            lambda: client.request("POST", "/fine-tunes", json=body, retry_unsafe=False),
            find_legacy,
            legacy_started_at=started,
        )
    job = response.object()
    context.log.info(f"created fine-tuning job {job_summary(job)}")
    return response.result(result_format(config))


# -- retrieve and list ------------------------------------------------------------------------


async def retrieve_fine_tuning_job(config: dict[str, Any], context: StepContext) -> Any:
    job_id = config["job_id"]
    response = await OpenAIClient(context).request(
        "GET", job_path(infer_api(config, job_id, context), job_id)
    )
    context.log.info(f"fine-tuning job {job_summary(response.object())}")
    return response.result(result_format(config))


async def list_fine_tuning_jobs(config: dict[str, Any], context: StepContext) -> Any:
    client = OpenAIClient(context)
    if config.get("api") == "legacy":
        # The legacy list has no paging and no filter: it always returns every job.
        response = await client.request("GET", "/fine-tunes")
    else:
        params: dict[str, Any] = {"limit": config.get("limit"), "after": config.get("after")}
        if "metadata" in config:
            # `metadata=null` asks for jobs without metadata (the spec's own syntax).
            metadata = config["metadata"]
            params["metadata"] = "null" if metadata is None else metadata
        response = await list_items(
            client, "/fine_tuning/jobs", params, all_pages=bool(config.get("all", False))
        )
    count = len(response.object().get("data") or [])
    context.log.info(f"listed {count} fine-tuning job(s)")
    return response.result(result_format(config))


# -- cancel, pause, resume ----------------------------------------------------------------


async def _change_state(
    config: dict[str, Any],
    context: StepContext,
    action: str,
    done: Callable[[str], bool],
    finished_ok: bool = False,
) -> Any:
    """POST ``action`` to the job; when the API refuses it, see whether it is done already.

    These requests are idempotent in effect, so the client may retry them; a retry after a
    lost answer then meets a job already in the wanted state, which the API refuses with a
    4xx. Looking at the job turns that into the success it is.
    """
    job_id = config["job_id"]
    api = infer_api(config, job_id, context)
    if action != "cancel":
        current_only(api, f"{action} of a fine-tuning job", context.step_id)
    client = OpenAIClient(context)
    try:
        response = await client.request("POST", job_path(api, job_id, action))
    except StepError as exc:
        if exc.status not in (400, 409, 422):
            raise
        refusal: StepError = exc
    else:
        context.log.info(f"{action}: fine-tuning job {job_summary(response.object())}")
        return response.result(result_format(config))
    try:
        current = await client.request("GET", job_path(api, job_id))
        job = current.object()
    except StepError:
        current = None
    if current is None:
        raise refusal  # the API's own answer says more than a failed look at the job
    status = str(job.get("status"))
    if done(status):
        context.log.info(f"{action}: fine-tuning job {job_id} is already {status}")
        return current.result(result_format(config))
    if status in TERMINAL and finished_ok:
        context.log.warn(
            f"{action}: fine-tuning job {job_id} had already finished ({status}); "
            "nothing was changed"
        )
        return current.result(result_format(config))
    if status in TERMINAL:
        hint = " Set `if_finished: succeed` to accept a finished job." if action == "cancel" else ""
        raise StepError(
            f"cannot {action} fine-tuning job {job_id}: it has already finished with status "
            f"{status!r}.{hint}",
            type=refusal.type,
            code="job_already_finished",
            param=refusal.info.param,
            status=refusal.status,
            request_id=refusal.request_id,
            step=context.step_id,
            extra={"job": job},
        )
    raise refusal


async def cancel_fine_tuning_job(config: dict[str, Any], context: StepContext) -> Any:
    return await _change_state(
        config,
        context,
        "cancel",
        lambda status: status == "cancelled",
        finished_ok=config.get("if_finished", "error") == "succeed",
    )


async def pause_fine_tuning_job(config: dict[str, Any], context: StepContext) -> Any:
    return await _change_state(config, context, "pause", lambda status: status == "paused")


async def resume_fine_tuning_job(config: dict[str, Any], context: StepContext) -> Any:
    # A job that is queued or running is what resuming asks for: nothing left to do.
    return await _change_state(
        config,
        context,
        "resume",
        lambda status: status not in TERMINAL and status != "paused",
    )


STEP_TYPES: list[StepType] = [
    StepType(
        type="openai.create_fine_tuning_job",
        title="Create fine-tuning job (api: legacy = /fine-tunes, shut down by OpenAI 2024-01-04)",
        version="1.0.0",
        run=create_fine_tuning_job,
        effect="reconcile",
        description=(
            "Start a fine-tuning job (today's API, or the legacy /fine-tunes with api: legacy, "
            f"{LEGACY_SHUTDOWN_NOTE}); never creates a duplicate when a request's outcome is "
            "unknown."
        ),
    ),
    StepType(
        type="openai.retrieve_fine_tuning_job",
        title="Retrieve fine-tuning job",
        version="1.0.0",
        run=retrieve_fine_tuning_job,
        effect="none",
        description="Get a fine-tuning job by id, from either API.",
    ),
    StepType(
        type="openai.list_fine_tuning_jobs",
        title="List fine-tuning jobs",
        version="1.0.0",
        run=list_fine_tuning_jobs,
        effect="none",
        description="List fine-tuning jobs, one page or all, optionally filtered by metadata.",
    ),
    StepType(
        type="openai.cancel_fine_tuning_job",
        title="Cancel fine-tuning job",
        version="1.0.0",
        run=cancel_fine_tuning_job,
        effect="idempotent",
        description="Cancel a fine-tuning job; a job already cancelled counts as success.",
    ),
    StepType(
        type="openai.pause_fine_tuning_job",
        title="Pause fine-tuning job",
        version="1.0.0",
        run=pause_fine_tuning_job,
        effect="idempotent",
        description="Pause a running fine-tuning job; a job already paused counts as success.",
    ),
    StepType(
        type="openai.resume_fine_tuning_job",
        title="Resume fine-tuning job",
        version="1.0.0",
        run=resume_fine_tuning_job,
        effect="idempotent",
        description="Resume a paused fine-tuning job; a job not paused counts as success.",
    ),
]

__all__ = [
    "EXECUTION_KEY",
    "RUN_KEY",
    "STEP_KEY",
    "STEP_TYPES",
    "cancel_fine_tuning_job",
    "create_fine_tuning_job",
    "current_body",
    "job_tags",
    "legacy_body",
    "list_fine_tuning_jobs",
    "pause_fine_tuning_job",
    "resume_fine_tuning_job",
    "retrieve_fine_tuning_job",
]
