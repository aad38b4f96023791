"""``/v1/fine_tuning/jobs``: create (with OpenAI's checks), list, retrieve, cancel, pause,
resume, events, checkpoints."""

from __future__ import annotations

import secrets
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import catalog, ids, jobs
from .context import Context, json_body, page, query_int
from .errors import invalid, job_not_found
from .graders import validate_grader
from .job_checks import (
    CREATE_PARAMS,
    auto_batch_size,
    auto_epochs,
    check_count,
    check_format,
    check_metadata,
    check_suffix,
    checked_data,
)
from .params import check
from .records import JobRecord, ModelRecord

CREATE_PATH = "/v1/fine_tuning/jobs"


def _base(ctx: Context, model: str, method: str) -> tuple[str, str, catalog.Kind, list[str]]:
    """(model as reported, root of the name, kind, files learned from) for a model to tune."""
    unavailable = invalid(
        f"Model {model} is not available for fine-tuning or does not exist.",
        param="model",
        code="model_not_available",
    )
    if ctx.trainer is not None:
        if ctx.trainer.base(model) is None or method == "reinforcement":
            raise ctx.trainer.unavailable(model, method)
        return model, model, "chat", []
    record = ctx.fine_tuned(model)
    if record is not None:
        job = ctx.store.jobs.get(record.job_id)
        if job is None or job.api != "fine_tuning" or model != record.id:
            raise unavailable
        reported, root, kind, inherited = record.id, record.root, record.kind, record.learns_from
    else:
        base = catalog.resolve(model)
        if base is None or base.tunable != "current":
            raise unavailable
        reported, root, kind, inherited = base.id, base.id, base.kind, []
    # Reinforcement fine-tunes only the reasoning models that offer it, and those only so.
    reinforced = catalog.resolve(root)
    offers_rft = reinforced is not None and reinforced.id in catalog.REINFORCEMENT
    if (method == "reinforcement") != offers_rft or (method == "dpo" and kind != "chat"):
        raise invalid(
            f"Model {model} is not available for {method} fine-tuning.",
            param="method.type",
            code="model_not_available",
        )
    return reported, root, kind, inherited


def create_job(ctx: Context, body: dict[str, Any], request_id: str | None) -> JobRecord:
    check(body, CREATE_PARAMS, required=("model", "training_file"))
    check_metadata(body.get("metadata"))
    check_suffix(body.get("suffix"))
    method = body.get("method") or {"type": "supervised"}
    kind_of_method = method["type"]
    in_method = (method.get(kind_of_method) or {}).get("hyperparameters")
    if body.get("hyperparameters") is not None and in_method is not None:
        # The spec deprecates `hyperparameters` in favour of `method`; given both, the
        # backend does not pick one silently.
        raise invalid(
            f"Specify hyperparameters in 'method.{kind_of_method}.hyperparameters' only: the "
            "top-level 'hyperparameters' is deprecated and cannot be combined with them.",
            param="hyperparameters",
            code="invalid_parameter_combination",
        )
    reported, root, kind, inherited = _base(ctx, body["model"], kind_of_method)
    if kind_of_method == "reinforcement":
        validate_grader(method["reinforcement"]["grader"], "method.reinforcement.grader")
    training_file = body["training_file"]
    data = checked_data(ctx, training_file, "training_file")
    validation_file = body.get("validation_file")
    validation = checked_data(ctx, validation_file, "validation_file") if validation_file else None
    check_count(data, training_file)
    if ctx.trainer is not None and kind_of_method == "supervised" and data.format == "completion":
        kind = "completion"  # a real model learns either format; it is served as it learned
    expected = "completion" if kind == "completion" else "chat"
    if kind_of_method == "dpo":
        expected = "preference"
    check_format(data, training_file, reported, "training_file", expected)
    if validation is not None and validation_file is not None:
        check_format(validation, validation_file, reported, "validation_file", expected)

    requested = dict(
        (method.get(kind_of_method) or {}).get("hyperparameters")
        or body.get("hyperparameters")
        or {}
    )
    for name in ("batch_size", "learning_rate_multiplier", "n_epochs"):
        requested.setdefault(name, "auto")
    if kind_of_method == "dpo":
        requested.setdefault("beta", "auto")
    if kind_of_method == "reinforcement":
        for name in ("compute_multiplier", "eval_interval", "eval_samples"):
            requested.setdefault(name, "auto")
        requested.setdefault("reasoning_effort", "default")
    n_epochs = requested["n_epochs"]
    batch_size = requested["batch_size"]
    rate = requested["learning_rate_multiplier"]
    job_id = ids.new_id("ftjob-")
    suffix = body.get("suffix")
    failure = ctx.faults.take_job_failure(CREATE_PATH)
    job = JobRecord(
        id=job_id,
        api="fine_tuning",
        created_at=ctx.now(),
        duration=ctx.job_seconds,
        model=reported,
        root=root,
        kind=kind,
        training_file=training_file,
        validation_file=validation_file,
        suffix=suffix,
        seed=body["seed"] if body.get("seed") is not None else secrets.randbelow(2**31),
        organization_id=ctx.organization,
        fine_tuned_name=(f"ft:{root}:{ctx.organization_name}:{suffix or ''}:{ids.new_id('', 8)}"),
        method=kind_of_method,
        n_epochs=auto_epochs(data.n_examples) if n_epochs == "auto" else n_epochs,
        batch_size=auto_batch_size(data.n_examples) if batch_size == "auto" else batch_size,
        learning_rate_multiplier=1.8 if rate == "auto" else float(rate),
        requested=requested,
        n_examples=data.n_examples,
        tokens_per_epoch=data.tokens,
        learns_from=[*inherited, training_file],
        metadata=body.get("metadata"),
        integrations=body.get("integrations"),
        failure=failure.failure_plan() if failure is not None else None,
        request_id=request_id,
    )
    if kind_of_method == "dpo":
        job.extra["beta"] = 0.1 if requested["beta"] == "auto" else float(requested["beta"])
    if kind_of_method == "reinforcement":
        job.extra["grader"] = method["reinforcement"]["grader"]
    if ctx.trainer is not None:
        ctx.trainer.start(
            job,
            data_format=expected,
            training=ctx.store.content(training_file),
            validation=ctx.store.content(validation_file) if validation_file else None,
            now=job.created_at,
        )
    ctx.store.save(job)
    return job


def _hyperparameters(job: JobRecord, resolved: bool) -> dict[str, Any]:
    if not resolved:
        return dict(job.requested)
    values: dict[str, Any] = {
        "batch_size": job.batch_size,
        "learning_rate_multiplier": job.learning_rate_multiplier,
        "n_epochs": job.n_epochs,
    }
    if job.method == "dpo":
        values["beta"] = job.extra["beta"]
    if job.method == "reinforcement":
        # What the simulation does not resolve is reported as requested.
        values |= {
            key: job.requested[key]
            for key in ("compute_multiplier", "eval_interval", "eval_samples", "reasoning_effort")
        }
    return values


def view(job: JobRecord, now: float) -> dict[str, Any]:
    """The ``fine_tuning.job`` object as of ``now``."""
    status = jobs.status(job, now)
    # Before training starts the API shows the hyperparameters as requested ("auto").
    resolved = status not in ("validating_files", "queued")
    hyper = _hyperparameters(job, resolved)
    succeeded = status == "succeeded"
    plain = {
        k: v
        for k, v in hyper.items()
        if k in ("batch_size", "learning_rate_multiplier", "n_epochs")
    }
    method: dict[str, Any] = {"hyperparameters": hyper}
    if job.method == "reinforcement":
        method["grader"] = job.extra["grader"]
    return {
        "object": "fine_tuning.job",
        "id": job.id,
        "model": job.model,
        "created_at": int(job.created_at),
        "finished_at": int(job.finished_at) if job.finished_at is not None else None,
        "fine_tuned_model": job.fine_tuned_model if succeeded else None,
        "organization_id": job.organization_id,
        "result_files": [job.result_file] if succeeded and job.result_file else [],
        "status": status,
        "validation_file": job.validation_file,
        "training_file": job.training_file,
        "hyperparameters": plain,
        "trained_tokens": job.tokens_per_epoch * job.n_epochs if succeeded else None,
        "error": job.error if status == "failed" else None,
        "seed": job.seed,
        # The spec: null unless the job is running.
        "estimated_finish": (jobs.estimated_finish(job, now) if status == "running" else None),
        "integrations": job.integrations or [],
        "metadata": job.metadata,
        "user_provided_suffix": job.suffix,
        "method": {"type": job.method, job.method: method},
    }


def event_view(event: jobs.Event) -> dict[str, Any]:
    return {
        "object": "fine_tuning.job.event",
        "id": event.id,
        "created_at": int(event.created_at),
        "level": event.level,
        "message": event.message,
        "data": event.data or {},
        "type": event.type,
    }


def checkpoint_view(job: JobRecord, checkpoint: jobs.Checkpoint) -> dict[str, Any]:
    return {
        "object": "fine_tuning.job.checkpoint",
        "id": checkpoint.id,
        "created_at": int(checkpoint.created_at),
        "fine_tuned_model_checkpoint": checkpoint.model,
        "fine_tuning_job_id": job.id,
        "metrics": checkpoint.metrics,
        "step_number": checkpoint.step,
    }


def checkpoint_models(ctx: Context, record: ModelRecord) -> list[dict[str, Any]]:
    """The ``model`` objects of a fine-tuned model's earlier checkpoints (each can be
    requested, retrieved and listed like the model; the last checkpoint is the model)."""
    job = ctx.store.jobs.get(record.job_id)
    if job is None or job.api != "fine_tuning":
        return []
    return [
        {
            "id": checkpoint.model,
            "object": "model",
            "created": int(checkpoint.created_at),
            "owned_by": record.owned_by,
        }
        for checkpoint in jobs.checkpoints(job, ctx.now())
        if checkpoint.model != record.id
    ]


def _metadata_filter(request: Request) -> dict[str, str] | None:
    """``metadata[k]=v`` pairs to match, or None for ``metadata=null``: jobs without any."""
    if request.query_params.get("metadata") == "null":
        return None
    wanted = {}
    for key, value in request.query_params.multi_items():
        if key.startswith("metadata[") and key.endswith("]"):
            wanted[key[len("metadata[") : -1]] = value
    return wanted


def _matches(job: JobRecord, wanted: dict[str, str] | None) -> bool:
    if wanted is None:
        return not job.metadata
    return all((job.metadata or {}).get(k) == v for k, v in wanted.items())


def routes(ctx: Context) -> list[Route]:
    def _job(request: Request) -> JobRecord:
        job_id = request.path_params["job_id"]
        job = ctx.store.jobs.get(job_id)
        if job is None or job.api != "fine_tuning":
            raise job_not_found(job_id)
        return job

    async def create(request: Request) -> Response:
        body = await json_body(request)
        job = create_job(ctx, body, getattr(request.state, "request_id", None))
        return JSONResponse(view(job, ctx.now()))

    async def listing(request: Request) -> Response:
        limit = query_int(request, "limit", 20, maximum=100)
        wanted = _metadata_filter(request)
        found = [
            job
            for job in ctx.store.jobs.values()
            if job.api == "fine_tuning" and _matches(job, wanted)
        ]
        found.sort(key=lambda job: job.created_at, reverse=True)
        chunk, more = page(
            found, after=request.query_params.get("after"), limit=limit, key=lambda j: j.id
        )
        now = ctx.now()
        return JSONResponse(
            {"object": "list", "data": [view(job, now) for job in chunk], "has_more": more}
        )

    async def retrieve(request: Request) -> Response:
        return JSONResponse(view(_job(request), ctx.now()))

    async def cancel(request: Request) -> Response:
        job = _job(request)
        if job.status in jobs.TERMINAL:
            word = "been cancelled" if job.status == "cancelled" else "completed"
            raise invalid(f"Job has already {word}: {job.id}", param="fine_tuning_job_id")
        jobs.cancel(ctx.store, job, ctx.now())
        return JSONResponse(view(job, ctx.now()))

    async def pause(request: Request) -> Response:
        job = _job(request)
        now = ctx.now()
        status = jobs.status(job, now)
        if status != "running":
            raise invalid(
                f"Job {job.id} cannot be paused: only a running job can be, and it is {status}.",
                param="fine_tuning_job_id",
            )
        jobs.pause(ctx.store, job, now)
        return JSONResponse(view(job, now))

    async def resume(request: Request) -> Response:
        job = _job(request)
        now = ctx.now()
        if not jobs.is_paused(job):
            raise invalid(
                f"Job {job.id} cannot be resumed: it is {jobs.status(job, now)}, not paused.",
                param="fine_tuning_job_id",
            )
        jobs.resume(ctx.store, job, now)
        return JSONResponse(view(job, now))

    async def events(request: Request) -> Response:
        job = _job(request)
        limit = query_int(request, "limit", 20, maximum=100)
        newest_first = list(reversed(jobs.events(job, ctx.now())))
        chunk, more = page(
            newest_first, after=request.query_params.get("after"), limit=limit, key=lambda e: e.id
        )
        return JSONResponse(
            {"object": "list", "data": [event_view(e) for e in chunk], "has_more": more}
        )

    async def checkpoints(request: Request) -> Response:
        job = _job(request)
        limit = query_int(request, "limit", 10, maximum=100)
        newest_first = list(reversed(jobs.checkpoints(job, ctx.now())))
        chunk, more = page(
            newest_first, after=request.query_params.get("after"), limit=limit, key=lambda c: c.id
        )
        data = [checkpoint_view(job, c) for c in chunk]
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": more,
            }
        )

    base = CREATE_PATH
    return [
        Route(base, create, methods=["POST"]),
        Route(base, listing, methods=["GET"]),
        Route(base + "/{job_id}", retrieve, methods=["GET"]),
        Route(base + "/{job_id}/cancel", cancel, methods=["POST"]),
        Route(base + "/{job_id}/pause", pause, methods=["POST"]),
        Route(base + "/{job_id}/resume", resume, methods=["POST"]),
        Route(base + "/{job_id}/events", events, methods=["GET"]),
        Route(base + "/{job_id}/checkpoints", checkpoints, methods=["GET"]),
    ]


__all__ = [
    "CREATE_PATH",
    "checkpoint_models",
    "create_job",
    "event_view",
    "routes",
    "view",
]
