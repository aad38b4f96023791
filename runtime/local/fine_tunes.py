"""``/v1/fine-tunes``: the 2023 fine-tuning API (create, list, retrieve, cancel, events).

Legacy fine-tunes train ``ada``, ``babbage``, ``curie`` or ``davinci`` (or continue a
model they trained) on prompt/completion data; their models are named
``{base}:ft-{org}:{suffix}-{YYYY-MM-DD-HH-MM-SS}``. Events are returned oldest first,
inside the job object too, and ``GET .../events?stream=true`` streams them as
server-sent events until the job ends.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import catalog, ids, jobs
from .context import Context, json_body
from .errors import invalid, job_not_found
from .job_checks import check_count, check_format, check_suffix, checked_data
from .params import BOOLEAN, STRING, Param, check
from .records import JobRecord
from .sse import EventStream

CREATE_PATH = "/v1/fine-tunes"

_NUMBER = Param(("number",))
CREATE_PARAMS = {
    "training_file": STRING,
    "validation_file": STRING,
    "model": STRING,
    "n_epochs": Param(("integer",), minimum=1, maximum=50),
    "batch_size": Param(("integer",), minimum=1, maximum=256),
    "learning_rate_multiplier": Param(("number",), minimum=0, exclusive_minimum=True),
    "prompt_loss_weight": Param(("number",), minimum=0),
    "compute_classification_metrics": BOOLEAN,
    "classification_n_classes": Param(("integer",), minimum=1),
    "classification_positive_class": STRING,
    "classification_betas": Param(("array",), items=_NUMBER),
    "suffix": Param(("string",), min_length=1, max_length=40),
}
_CLASSIFICATION = (
    "compute_classification_metrics",
    "classification_n_classes",
    "classification_positive_class",
    "classification_betas",
)


def _batch_size(n_examples: int) -> int:
    # The 2023 default: about 0.2% of the examples, capped at 256.
    return max(1, min(256, round(n_examples * 0.002)))


def _learning_rate(batch_size: int) -> float:
    # The 2023 default: 0.05, 0.1 or 0.2, larger for larger batches.
    return 0.2 if batch_size >= 32 else 0.1 if batch_size >= 8 else 0.05


def _base(ctx: Context, model: str) -> tuple[str, list[str]]:
    """(root base model, files learned from) of a model a legacy fine-tune may train."""
    if model in catalog.LEGACY_BASES:
        return model, []
    record = ctx.fine_tuned(model)
    job = ctx.store.jobs.get(record.job_id) if record is not None else None
    if record is None or job is None or job.api != "fine-tunes" or record.id != model:
        raise invalid(
            f"Invalid base model: {model} (model must be one of "
            f"{', '.join(catalog.LEGACY_BASES)}) or a fine-tuned model created by your "
            f"organization: {ctx.organization}",
            param="model",
        )
    return record.root, record.learns_from


def create_fine_tune(ctx: Context, body: dict[str, Any], request_id: str | None) -> JobRecord:
    check(body, CREATE_PARAMS, required=("training_file",))
    check_suffix(body.get("suffix"))
    if body.get("compute_classification_metrics") and not body.get("validation_file"):
        # The 2023 spec: "In order to compute classification metrics, you must provide a
        # validation_file."
        raise invalid(
            "In order to compute classification metrics, you must provide a validation_file.",
            param="validation_file",
        )
    model = body.get("model") or "curie"
    root, inherited = _base(ctx, model)
    training_file = body["training_file"]
    data = checked_data(ctx, training_file, "training_file")
    validation_file = body.get("validation_file")
    validation = checked_data(ctx, validation_file, "validation_file") if validation_file else None
    check_count(data, training_file)
    check_format(data, training_file, model, "training_file", "completion")
    if validation is not None and validation_file is not None:
        check_format(validation, validation_file, model, "validation_file", "completion")
    now = ctx.now()
    suffix = body.get("suffix")
    finish = time.gmtime(now + ctx.job_seconds)
    named = f"{root}:ft-{ctx.organization_name}" + (f":{suffix}" if suffix else "")
    batch_size = body.get("batch_size") or _batch_size(data.n_examples)
    failure = ctx.faults.take_job_failure(CREATE_PATH)
    job = JobRecord(
        id=ids.new_id("ft-"),
        api="fine-tunes",
        created_at=now,
        duration=ctx.job_seconds,
        model=model,
        root=root,
        kind="completion",
        training_file=training_file,
        validation_file=validation_file,
        suffix=suffix,
        seed=secrets.randbelow(2**31),
        organization_id=ctx.organization,
        fine_tuned_name=f"{named}-{time.strftime('%Y-%m-%d-%H-%M-%S', finish)}",
        method="supervised",
        n_epochs=body.get("n_epochs") or 4,
        batch_size=batch_size,
        learning_rate_multiplier=float(
            body.get("learning_rate_multiplier") or _learning_rate(batch_size)
        ),
        requested={},
        n_examples=data.n_examples,
        tokens_per_epoch=data.tokens,
        learns_from=[*inherited, training_file],
        failure=failure.failure_plan() if failure is not None else None,
        request_id=request_id,
    )
    job.extra = {
        "prompt_loss_weight": float(body.get("prompt_loss_weight") or 0.01),
        "price": catalog.LEGACY_PRICES[root],
        "result_file": ids.new_id("file-"),
        "training_files": [ctx.store.files[training_file].view()],
        "validation_files": (
            [ctx.store.files[validation_file].view()] if validation_file is not None else []
        ),
        **{name: body[name] for name in _CLASSIFICATION if body.get(name) is not None},
    }
    ctx.store.save(job)
    return job


def event_view(event: jobs.Event) -> dict[str, Any]:
    return {
        "object": "fine-tune-event",
        "created_at": int(event.created_at),
        "level": event.level,
        "message": event.message,
    }


def view(ctx: Context, job: JobRecord, *, with_events: bool = True) -> dict[str, Any]:
    """The ``fine-tune`` object as of now (``events`` left out of list entries)."""
    now = ctx.now()
    status = jobs.status(job, now)
    happened = jobs.events(job, now)
    result = ctx.store.files.get(job.result_file) if job.result_file else None
    hyperparams: dict[str, Any] = {
        "n_epochs": job.n_epochs,
        "batch_size": job.batch_size,
        "prompt_loss_weight": job.extra["prompt_loss_weight"],
        "learning_rate_multiplier": job.learning_rate_multiplier,
    }
    hyperparams |= {name: job.extra[name] for name in _CLASSIFICATION if name in job.extra}
    data: dict[str, Any] = {
        "id": job.id,
        "object": "fine-tune",
        "model": job.model,
        "created_at": int(job.created_at),
        "updated_at": int(happened[-1].created_at if happened else job.created_at),
        "fine_tuned_model": job.fine_tuned_model if status == "succeeded" else None,
        "organization_id": job.organization_id,
        "status": status,
        "hyperparams": hyperparams,
        "training_files": job.extra["training_files"],
        "validation_files": job.extra["validation_files"],
        "result_files": [result.view()] if result is not None and status == "succeeded" else [],
    }
    if with_events:
        data["events"] = [event_view(event) for event in happened]
    return data


def routes(ctx: Context) -> list[Route]:
    def _job(request: Request) -> JobRecord:
        job_id = request.path_params["fine_tune_id"]
        job = ctx.store.jobs.get(job_id)
        if job is None or job.api != "fine-tunes":
            raise job_not_found(job_id)
        return job

    async def create(request: Request) -> Response:
        body = await json_body(request)
        job = create_fine_tune(ctx, body, getattr(request.state, "request_id", None))
        return JSONResponse(view(ctx, job))

    async def listing(request: Request) -> Response:
        found = sorted(
            (job for job in ctx.store.jobs.values() if job.api == "fine-tunes"),
            key=lambda job: job.created_at,
        )
        return JSONResponse(
            {"object": "list", "data": [view(ctx, job, with_events=False) for job in found]}
        )

    async def retrieve(request: Request) -> Response:
        return JSONResponse(view(ctx, _job(request)))

    async def cancel(request: Request) -> Response:
        job = _job(request)
        if job.status in jobs.TERMINAL:
            word = "been cancelled" if job.status == "cancelled" else "completed"
            raise invalid(f"Job has already {word}: {job.id}", param="fine_tune_id")
        jobs.cancel(ctx.store, job, ctx.now())
        return JSONResponse(view(ctx, job))

    async def events(request: Request) -> Response:
        job = _job(request)
        stream = request.query_params.get("stream", "false").lower()
        if stream not in ("true", "false"):
            raise invalid(
                f"Invalid value for 'stream': expected a boolean, but got '{stream}' instead.",
                param="stream",
            )
        if stream == "true":
            return EventStream(_follow(ctx, job))
        happened = jobs.events(job, ctx.now())
        return JSONResponse({"object": "list", "data": [event_view(e) for e in happened]})

    base = CREATE_PATH
    return [
        Route(base, create, methods=["POST"]),
        Route(base, listing, methods=["GET"]),
        Route(base + "/{fine_tune_id}", retrieve, methods=["GET"]),
        Route(base + "/{fine_tune_id}/cancel", cancel, methods=["POST"]),
        Route(base + "/{fine_tune_id}/events", events, methods=["GET"]),
    ]


async def _follow(ctx: Context, job: JobRecord) -> AsyncIterator[dict[str, Any]]:
    """Every event so far, then each new one as it happens, until the job ends."""
    sent = 0
    # Poll often enough to show each step of a short job, rarely enough to cost nothing.
    interval = min(0.25, max(0.02, job.duration / 100))
    while True:
        ctx.settle()
        happened = jobs.events(job, ctx.now())
        for event in happened[sent:]:
            yield event_view(event)
        sent = len(happened)
        if job.status is not None:
            return
        await asyncio.sleep(interval)


__all__ = ["CREATE_PARAMS", "CREATE_PATH", "create_fine_tune", "event_view", "routes", "view"]
