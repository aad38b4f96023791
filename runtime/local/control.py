"""The control API of the local backend, under ``/_steprun`` (never an OpenAI path).

With ``--api-key`` it needs the same ``Authorization: Bearer`` header as the API.

``POST /_steprun/faults``
    Arm one fault (a JSON object, see ``faults``) or several (``{"faults": [...]}``).
    Example: the next create gets a 429 with ``Retry-After: 1``::

        {"path": "/v1/fine_tuning/jobs", "method": "POST", "times": 1,
         "kind": "status", "status": 429, "retry_after": 1}

    Answers ``{"object": "list", "data": [<armed fault>...]}`` with the faults it added.
``GET /_steprun/faults``
    The faults still armed, with how often each has struck (``hits``) and how many
    more times it will (``times``).
``DELETE /_steprun/faults``
    Disarm every fault.
``GET /_steprun/ledger``
    Every fine-tuning job ever created here, either API, oldest first, with what it
    was created with and the ``x-request-id`` of the request that created it, and how
    many create requests each create path received (answered or not)::

        {"object": "steprun.ledger",
         "create_requests": {"/v1/fine_tuning/jobs": 2, "/v1/fine-tunes": 0},
         "jobs": [{"id": "ftjob-…", "api": "fine_tuning", "created_at": 1700000000,
                   "model": "gpt-4o-mini-2024-07-18", "training_file": "file-…",
                   "validation_file": null, "suffix": "support-bot", "metadata": {…},
                   "status": "running", "request_id": "req_…"}]}

    A durable run proves it never created a job twice by comparing ``jobs`` with the
    jobs it meant to create, while ``create_requests`` shows the retries it made.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import fine_tunes, fine_tuning, jobs
from .context import Context, json_body
from .errors import invalid
from .faults import parse_fault

PREFIX = "/_steprun"
CREATE_PATHS = (fine_tuning.CREATE_PATH, fine_tunes.CREATE_PATH)


def ledger(ctx: Context) -> dict[str, Any]:
    ctx.settle()
    now = ctx.now()
    created = sorted(ctx.store.jobs.values(), key=lambda job: job.created_at)
    return {
        "object": "steprun.ledger",
        "create_requests": {path: ctx.store.create_requests.get(path, 0) for path in CREATE_PATHS},
        "jobs": [
            {
                "id": job.id,
                "api": job.api,
                "created_at": int(job.created_at),
                "model": job.model,
                "training_file": job.training_file,
                "validation_file": job.validation_file,
                "suffix": job.suffix,
                "metadata": job.metadata,
                "status": jobs.status(job, now),
                "request_id": job.request_id,
            }
            for job in created
        ],
    }


def routes(ctx: Context) -> list[Route]:
    async def add_faults(request: Request) -> Response:
        body: Any = await json_body(request)
        specs = body.get("faults", [body])
        if not isinstance(specs, list):
            raise invalid("'faults' must be a list of fault objects.", param="faults")
        parsed = [parse_fault(spec) for spec in specs]  # all valid, or none armed
        added = [ctx.faults.add(fault).view() for fault in parsed]
        return JSONResponse({"object": "list", "data": added})

    async def list_faults(request: Request) -> Response:
        return JSONResponse({"object": "list", "data": ctx.faults.views()})

    async def clear_faults(request: Request) -> Response:
        ctx.faults.clear()
        return JSONResponse({"object": "list", "data": []})

    async def show_ledger(request: Request) -> Response:
        return JSONResponse(ledger(ctx))

    return [
        Route(PREFIX + "/faults", add_faults, methods=["POST"]),
        Route(PREFIX + "/faults", list_faults, methods=["GET"]),
        Route(PREFIX + "/faults", clear_faults, methods=["DELETE"]),
        Route(PREFIX + "/ledger", show_ledger, methods=["GET"]),
    ]


__all__ = ["CREATE_PATHS", "PREFIX", "ledger", "routes"]
