"""The ASGI application: OpenAI's routes under ``/v1``, the control API, the middleware.

Outermost first: response headers (``middleware.ResponseHeaders``), the API key check,
the ledger and admission (``middleware.Accounting``), fault injection, then Starlette's
router, whose exception handlers answer every error in OpenAI's shape.
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp

from . import chat, completions, control, files, fine_tunes, fine_tuning, graders, permissions
from .catalog import BASE_MODELS, BaseModel, shutdown_date
from .context import Context
from .dialects import with_dialects
from .errors import APIError, invalid_url, model_not_found, server_error
from .faults import FaultMiddleware
from .middleware import MAX_IN_FLIGHT, Accounting, ApiKeyCheck, ResponseHeaders
from .records import ModelRecord


def _base_view(model: BaseModel) -> dict[str, Any]:
    return {
        "id": model.id,
        "object": "model",
        "created": model.created,
        "owned_by": model.owned_by,
        "shutdown_date": shutdown_date(model.id),
    }


def _with_shutdown(view: dict[str, Any], record: ModelRecord) -> dict[str, Any]:
    # A fine-tuned model (and each checkpoint) shuts down with its base (OpenAI's
    # deprecations page).
    return {**view, "shutdown_date": shutdown_date(record.root)}


def _tuned_view(record: ModelRecord) -> dict[str, Any]:
    return _with_shutdown(record.view(), record)


def _model_routes(ctx: Context) -> list[Route]:
    async def listing(request: Request) -> Response:
        data = [_base_view(m) for m in BASE_MODELS.values()]
        for record in ctx.store.models.values():
            if not record.deleted:
                checkpoints = fine_tuning.checkpoint_models(ctx, record)
                data += [_tuned_view(record), *(_with_shutdown(m, record) for m in checkpoints)]
        return JSONResponse({"object": "list", "data": data})

    async def retrieve(request: Request) -> Response:
        model_id = request.path_params["model"]
        record = ctx.fine_tuned(model_id)
        if record is not None:
            if record.id == model_id:
                return JSONResponse(_tuned_view(record))
            # A checkpoint of the model (fine_tuned resolved its name).
            found = [m for m in fine_tuning.checkpoint_models(ctx, record) if m["id"] == model_id]
            return JSONResponse(_with_shutdown(found[0], record))
        base = BASE_MODELS.get(model_id)
        if base is None:
            raise model_not_found(model_id)
        return JSONResponse(_base_view(base))

    async def delete(request: Request) -> Response:
        model_id = request.path_params["model"]
        record = ctx.fine_tuned(model_id)
        if record is None or record.id != model_id:
            if model_id in BASE_MODELS:
                raise APIError(
                    403,
                    f"You have insufficient permissions to delete the model {model_id}: only "
                    "fine-tuned models your organization created can be deleted.",
                    param="model",
                )
            raise model_not_found(model_id)
        record.deleted = True
        ctx.forget_model(record.id)
        ctx.store.save(record)
        return JSONResponse({"id": record.id, "object": "model", "deleted": True})

    return [
        Route("/v1/models", listing, methods=["GET"]),
        Route("/v1/models/{model}", retrieve, methods=["GET"]),
        Route("/v1/models/{model}", delete, methods=["DELETE"]),
    ]


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code in (404, 405):
        # No route, or a method the route does not take: the API answers both so.
        error = invalid_url(request.method, request.url.path)
    else:  # what Starlette refuses itself, such as a malformed multipart body
        error = APIError(exc.status_code, f"Could not parse the request body: {exc.detail}")
    return JSONResponse(error.body(), status_code=error.status)


async def _unexpected(request: Request, exc: Exception) -> Response:
    error = server_error()
    return JSONResponse(error.body(), status_code=error.status)


def build_app(ctx: Context) -> ASGIApp:
    router = Starlette(
        routes=[
            *files.routes(ctx),
            *fine_tuning.routes(ctx),
            *fine_tunes.routes(ctx),
            *completions.routes(ctx),
            *chat.routes(ctx),
            *graders.routes(ctx),
            *permissions.routes(ctx),
            *_model_routes(ctx),
            *control.routes(ctx),
        ],
        exception_handlers={
            APIError: _api_error,
            HTTPException: _http_error,
            Exception: _unexpected,
        },
    )
    app: ASGIApp = FaultMiddleware(router, ctx.faults, ctx.organization_name)
    app = Accounting(app, ctx, control.CREATE_PATHS, MAX_IN_FLIGHT)
    app = ApiKeyCheck(app, ctx.api_key)
    return with_dialects(ResponseHeaders(app, ctx), ctx)


__all__ = ["build_app"]
