"""``/v1/fine_tuning/checkpoints/{checkpoint}/permissions``: share a fine-tuned model (or
one of its checkpoints) with projects: create, list, delete.

Permissions live with the job that made the checkpoint (in its ``extra``), so they are
kept, and dropped, with it.
"""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import ids
from .context import Context, json_body, page, query_int
from .errors import APIError, invalid
from .params import STRING, Param, check, check_value
from .records import JobRecord

_PROJECT = re.compile(r"^proj_[A-Za-z0-9]+$")
_KEY = "checkpoint_permissions"


def _job_of(ctx: Context, checkpoint: str) -> JobRecord:
    record = ctx.fine_tuned(checkpoint)
    job = ctx.store.jobs.get(record.job_id) if record is not None else None
    if job is None or job.api != "fine_tuning":
        raise APIError(
            404,
            f"Fine-tuned model checkpoint {checkpoint} does not exist or you do not have "
            "access to it.",
            param="fine_tuned_model_checkpoint",
            code="model_not_found",
        )
    return job


def _view(permission: dict[str, Any]) -> dict[str, Any]:
    return {"object": "checkpoint.permission", **permission}


def _listing(items: list[dict[str, Any]], more: bool) -> dict[str, Any]:
    data = [_view(p) for p in items]
    return {
        "object": "list",
        "data": data,
        "has_more": more,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }


def routes(ctx: Context) -> list[Route]:
    def stored(job: JobRecord, checkpoint: str) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = job.extra.setdefault(_KEY, {}).setdefault(checkpoint, [])
        return found

    async def create(request: Request) -> Response:
        checkpoint = request.path_params["checkpoint"]
        job = _job_of(ctx, checkpoint)
        body = await json_body(request)
        projects = Param(("array",), min_length=1, items=Param(("string",), nullable=False))
        check(body, {"project_ids": projects}, required=("project_ids",))
        for index, project in enumerate(body["project_ids"]):
            if not _PROJECT.match(project):
                raise invalid(
                    f"Invalid 'project_ids[{index}]': '{project}' is not a project id (proj_...).",
                    param=f"project_ids[{index}]",
                    code="invalid_value",
                )
        permissions = stored(job, checkpoint)
        created = []
        for project in body["project_ids"]:
            existing = [p for p in permissions if p["project_id"] == project]
            if existing:
                created.append(existing[0])
                continue
            permission = {
                "id": ids.new_id("cp_", 24),
                "created_at": int(ctx.now()),
                "project_id": project,
            }
            permissions.append(permission)
            created.append(permission)
        ctx.store.save(job)
        return JSONResponse(_listing(created, False))

    async def listing(request: Request) -> Response:
        checkpoint = request.path_params["checkpoint"]
        job = _job_of(ctx, checkpoint)
        limit = query_int(request, "limit", 10, maximum=100)
        order = request.query_params.get("order", "descending")
        check_value("order", order, Param(("string",), enum=("ascending", "descending")))
        project = request.query_params.get("project_id")
        check_value("project_id", project, STRING)
        found = [
            p for p in stored(job, checkpoint) if project is None or p["project_id"] == project
        ]
        if order == "descending":
            found.reverse()
        chunk, more = page(found, after=request.query_params.get("after"), limit=limit,
                           key=lambda p: str(p["id"]))  # fmt: skip
        return JSONResponse(_listing(chunk, more))

    async def delete(request: Request) -> Response:
        checkpoint = request.path_params["checkpoint"]
        permission_id = request.path_params["permission_id"]
        job = _job_of(ctx, checkpoint)
        permissions = stored(job, checkpoint)
        kept = [p for p in permissions if p["id"] != permission_id]
        if len(kept) == len(permissions):
            raise APIError(
                404,
                f"No checkpoint permission found with id {permission_id}.",
                param="permission_id",
            )
        job.extra[_KEY][checkpoint] = kept
        ctx.store.save(job)
        return JSONResponse(
            {"object": "checkpoint.permission", "id": permission_id, "deleted": True}
        )

    base = "/v1/fine_tuning/checkpoints/{checkpoint:path}/permissions"
    return [
        Route(base, create, methods=["POST"]),
        Route(base, listing, methods=["GET"]),
        Route(base + "/{permission_id}", delete, methods=["DELETE"]),
    ]


__all__ = ["routes"]
