"""The HTTP step service as a Starlette app: ``build_app(ServiceSettings(...))``.

GET  /openapi.json                 the OpenAPI 3.1 document of this catalog
POST /v1/steps/{type}              run one step: {config, authorization, inputs}
POST /v1/runs                      start a durable run: {flow, inputs, callback_url}
GET  /v1/runs | /v1/runs/{id}      runs; one run with its steps and merge fields
POST /v1/runs/{id}/cancel          stop a run
GET  /v1/runs/{id}/events          server-sent events: log lines and reports, live
GET  /health                       no token needed; says nothing but "ok"
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from ..errors import InvalidInput, SteprunError
from .callbacks import DEFAULT_ATTEMPTS, DEFAULT_FIRST_DELAY, Callbacks
from .events import EventHub, sse
from .onestep import invalid, pick_authorization, run_one
from .openapi import build_openapi
from .records import Records
from .runs import RunManager, RunNotFound
from .security import BodyTooLarge, TokenGuard, error_response, read_json

MAX_BODY_BYTES = 2 * 1024 * 1024  # a flow file may be 1 MB; JSON escaping can double it
DEFAULT_STEP_TIMEOUT = 300.0
KEEPALIVE_SECONDS = 15.0


@dataclass(frozen=True)
class ServiceSettings:
    token: str
    # The run store (a file, or a PostgreSQL URL); the service's own records sit in its
    # folder (store.folder).
    state_path: Path | str
    webhook_secret: str
    authorizations_file: Path | None = None
    base_dir: Path = Path(".")  # relative file paths in configs and flows start here
    step_timeout: float = DEFAULT_STEP_TIMEOUT
    max_body_bytes: int = MAX_BODY_BYTES
    callback_attempts: int = DEFAULT_ATTEMPTS
    callback_first_delay: float = DEFAULT_FIRST_DELAY
    server_url: str | None = None
    # Posted runs go to the workers' queue (`steprun worker`) instead of being driven here;
    # the store must be PostgreSQL.
    submit: bool = False


class Service:
    """What the routes share; opened when the app starts, closed when it stops."""

    def __init__(self, settings: ServiceSettings) -> None:
        from ..authorizations import read_authorizations_file
        from ..runtime import Runtime
        from ..store import open_store

        self.settings = settings
        self.hub = EventHub()
        self.runtime = Runtime(plugins=[self.hub])
        self.authorizations: dict[str, Any] | None = (
            read_authorizations_file(settings.authorizations_file, self.runtime.schemas)
            if settings.authorizations_file
            else None
        )
        self.store = open_store(settings.state_path)
        # `provider: local` keeps its files and jobs beside the run store, in the folder the
        # CLI uses (cli/common.py LOCAL_STATE): a service restarted mid-run, or a
        # `steprun resume` of its run, finds the same job.
        self.runtime.local_state = self.store.folder / "local-backend"
        self.records = Records(self.store.folder / "service.db")
        self.callbacks = Callbacks(
            self.records,
            settings.webhook_secret,
            attempts=settings.callback_attempts,
            first_delay=settings.callback_first_delay,
        )
        self.runs = RunManager(
            self.runtime,
            self.store,
            self.records,
            self.hub,
            self.callbacks,
            authorizations=self.authorizations,
            authorizations_file=settings.authorizations_file,
            base_dir=settings.base_dir.resolve(),
            queue=_queue(settings.state_path) if settings.submit else None,
        )
        self._openapi: dict[str, Any] | None = None

    def openapi(self) -> dict[str, Any]:
        if self._openapi is None:
            self._openapi = build_openapi(self.runtime, server_url=self.settings.server_url)
        return self._openapi

    async def aclose(self) -> None:
        await self.runs.aclose()
        if self.runs.queue is not None:
            await self.runs.queue.aclose()
        await self.callbacks.aclose()
        await self.runtime.aclose()
        self.store.close()
        self.records.close()


def _queue(state: Path | str) -> Any:
    """The workers' queue in the run store's PostgreSQL (`serve --submit`)."""
    from ..workers.queue import Queue

    return Queue(str(state))


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


async def _body(request: Request) -> dict[str, Any] | Response:
    try:
        body = await read_json(request, _service(request).settings.max_body_bytes)
    except BodyTooLarge:
        limit = _service(request).settings.max_body_bytes
        return error_response(413, "request_too_large", f"the body is over {limit} bytes")
    except ValueError as exc:
        return error_response(400, "invalid_request", str(exc))
    if not isinstance(body, dict):
        return error_response(400, "invalid_request", "the body must be a JSON object")
    return body


def _unknown_keys(body: Mapping[str, Any], allowed: set[str]) -> Response | None:
    extra = sorted(set(body) - allowed)
    if extra:
        return error_response(
            400,
            "invalid_request",
            f"unknown field {extra[0]!r}; the body takes {', '.join(sorted(allowed))}",
        )
    return None


def _object(body: Mapping[str, Any], key: str) -> dict[str, Any] | Response:
    value = body.get(key, {})
    if not isinstance(value, dict):
        return error_response(400, "invalid_request", f"{key!r} must be a JSON object")
    return value


async def openapi(request: Request) -> Response:
    return JSONResponse(_service(request).openapi())


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def run_step(request: Request) -> Response:
    service = _service(request)
    step_type = request.path_params["step_type"]
    body = await _body(request)
    if isinstance(body, Response):
        return body
    problem = _unknown_keys(body, {"config", "authorization", "inputs"})
    if problem is not None:
        return problem
    config, inputs = _object(body, "config"), _object(body, "inputs")
    if isinstance(config, Response):
        return config
    if isinstance(inputs, Response):
        return inputs
    name = body.get("authorization")
    if name is not None and not isinstance(name, str):
        return error_response(400, "invalid_request", "'authorization' is the name of one")
    try:
        spec = pick_authorization(name, service.authorizations, where="on this service")
    except InvalidInput as exc:
        return JSONResponse(invalid(exc), status_code=400)
    try:
        async with asyncio.timeout(service.settings.step_timeout):
            result = await run_one(
                service.runtime,
                step_type,
                config,
                authorization=spec,
                inputs=inputs,
                base_dir=service.settings.base_dir.resolve(),
            )
    except TimeoutError:  # said in the document as a 504
        return error_response(
            504,
            "step_timeout",
            f"the step did not finish within {service.settings.step_timeout:g}s; a step that "
            "creates something may have done so: look it up before trying again",
        )
    return JSONResponse(result, status_code=400 if result["status"] == "invalid" else 200)


async def start_run(request: Request) -> Response:
    service = _service(request)
    body = await _body(request)
    if isinstance(body, Response):
        return body
    problem = _unknown_keys(body, {"flow", "inputs", "callback_url"})
    if problem is not None:
        return problem
    flow, inputs = body.get("flow"), _object(body, "inputs")
    if isinstance(inputs, Response):
        return inputs
    if not isinstance(flow, str | dict):
        return error_response(400, "invalid_request", "'flow' is YAML text or a JSON object")
    callback_url = body.get("callback_url")
    if callback_url is not None and (
        not isinstance(callback_url, str) or not callback_url.startswith(("http://", "https://"))
    ):
        return error_response(
            400, "invalid_request", "'callback_url' must be an http:// or https:// URL"
        )
    try:
        loaded = service.runs.load(flow, inputs)
    except InvalidInput as exc:
        return JSONResponse({"error": invalid(exc)["error"]}, status_code=400)
    run_id = service.runs.start(loaded, inputs, callback_url)
    return JSONResponse(
        {"id": run_id, "status": "queued", "flow": loaded.name, "callback_url": callback_url},
        status_code=202,
        headers={"location": f"/v1/runs/{run_id}"},
    )


async def list_runs(request: Request) -> Response:
    raw = request.query_params.get("limit", "50")
    if not raw.isdigit() or not 1 <= int(raw) <= 1000:
        return error_response(400, "invalid_request", "'limit' is a whole number from 1 to 1000")
    return JSONResponse({"data": _service(request).runs.list(int(raw))})


async def get_run(request: Request) -> Response:
    try:
        return JSONResponse(_service(request).runs.describe(request.path_params["run_id"]))
    except RunNotFound as exc:
        return error_response(404, "not_found", str(exc))


async def cancel_run(request: Request) -> Response:
    service = _service(request)
    run_id = request.path_params["run_id"]
    try:
        return JSONResponse(await service.runs.cancel(run_id))
    except RunNotFound as exc:
        return error_response(404, "not_found", str(exc))
    except SteprunError as exc:
        return error_response(409, "conflict", str(exc))


async def run_events(request: Request) -> Response:
    service = _service(request)
    run_id = request.path_params["run_id"]
    try:
        run = service.runs.describe(run_id)
    except RunNotFound as exc:
        return error_response(404, "not_found", str(exc))
    events = service.hub.runs.get(run_id)

    async def stream() -> AsyncIterator[bytes]:
        if events is None:  # a run this process did not drive: its outcome, then the end
            import json

            yield sse("end", json.dumps({"status": run["status"]}))
            return
        queue: asyncio.Queue[tuple[str, str] | None] = asyncio.Queue()
        history = list(events.history)
        ended = events.ended
        if not ended:
            events.listeners.add(queue)
        try:
            for event, data in history:
                yield sse(event, data)
            while not ended:
                try:
                    item = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                if item is None:
                    break
                yield sse(*item)
        finally:
            events.listeners.discard(queue)

    return StreamingResponse(stream(), media_type="text/event-stream")


def build_app(settings: ServiceSettings) -> TokenGuard:
    """The service as an ASGI app; its store and runs open when the app starts."""

    from .dashboard import Sessions, templates
    from .dashboard import routes as dashboard_routes

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        service = Service(settings)
        app.state.service = service
        app.state.sessions = Sessions(settings.token)
        app.state.templates = templates()
        try:
            await service.runs.resume_unfinished()
            yield
        finally:
            await service.aclose()

    app = Starlette(
        routes=[
            Route("/health", health),
            Route("/openapi.json", openapi),
            Route("/v1/steps/{step_type}", run_step, methods=["POST"]),
            Route("/v1/runs", start_run, methods=["POST"]),
            Route("/v1/runs", list_runs, methods=["GET"]),
            Route("/v1/runs/{run_id}", get_run, methods=["GET"]),
            Route("/v1/runs/{run_id}/cancel", cancel_run, methods=["POST"]),
            Route("/v1/runs/{run_id}/events", run_events, methods=["GET"]),
            Route("/", lambda request: RedirectResponse("/ui/", status_code=303)),
            Route("/favicon.ico", lambda request: Response(status_code=204)),
            *dashboard_routes(),
        ],
        lifespan=lifespan,
        exception_handlers={
            404: lambda request, exc: error_response(404, "not_found", "no such route"),
            405: lambda request, exc: error_response(
                405, "method_not_allowed", "method not allowed"
            ),
            500: lambda request, exc: error_response(
                500, "internal_error", "the service failed; its log says why"
            ),
        },
    )
    return TokenGuard(app, settings.token)


__all__ = ["MAX_BODY_BYTES", "ServiceSettings", "build_app"]
