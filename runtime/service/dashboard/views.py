"""The dashboard's pages and actions, server-rendered under ``/ui``.

/ui/login                  the token, once; then a session cookie
/ui/                       runs, filterable by status and flow; live
/ui/runs/{id}              a run: inputs, its steps as a timeline, reports, log lines,
                           merge fields (redacted); resume and cancel
/ui/runs/{id}/jobs/{job}   a fine-tuning job: live loss and accuracy curves, checkpoints,
                           the ETA; cancel
/ui/steps, /ui/steps/{t}   the step catalog: each step's settings as a form
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)

from ...charts import loss_figure, metrics_points, plotly_js
from ...durations import format_duration
from ...errors import SteprunError
from ..events import sse
from ..runs import FINISHED, RunNotFound
from .forms import example, fields
from .session import Session, Sessions

if TYPE_CHECKING:
    from ...authorizations import Authorization
    from ..app import Service

STATIC = Path(__file__).parent / "static"
# Scripts only from this service; no inline script, no eval, no framing, no plugins.
# Inline style attributes are allowed because plotly.js positions its SVG with them.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; font-src 'self' data:; object-src 'none'; "
    "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {"content-security-policy": CSP, "x-frame-options": "DENY"}
# queued and waiting: runs in the workers' queue (steprun worker)
STATUSES = ("queued", "running", "waiting", "succeeded", "failed", "cancelled", "interrupted")
JOB_TERMINAL = ("succeeded", "failed", "cancelled")

Handler = Callable[[Request, "Service", Session], Awaitable[Response]]


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def _sessions(request: Request) -> Sessions:
    sessions: Sessions = request.app.state.sessions
    return sessions


def page(handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """A page that needs a session: without one, to the login form and back."""

    async def wrapped(request: Request) -> Response:
        session = _sessions(request).of(request)
        if session is None:
            if request.url.path.endswith(("/data", "/table", "/events", "/body")):
                return JSONResponse({"error": "log in again"}, status_code=401, headers=HEADERS)
            target = quote(
                request.url.path + (f"?{request.url.query}" if request.url.query else "")
            )
            return RedirectResponse(f"/ui/login?next={target}", status_code=303, headers=HEADERS)
        if request.method == "POST":
            form = await request.form()
            if not Sessions.csrf_ok(session, form.get("csrf")):
                return _html(
                    request,
                    "error.html",
                    status=403,
                    message="The form has expired; reload the page.",
                )
        return await handler(request, _service(request), session)

    return wrapped


def _html(request: Request, template: str, *, status: int = 200, **values: Any) -> HTMLResponse:
    templates = request.app.state.templates
    body = templates.get_template(template).render(**values)
    return HTMLResponse(body, status_code=status, headers=HEADERS)


def _ago(seconds: float | None) -> str:
    if not seconds:
        return ""
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def _took(run: dict[str, Any]) -> str:
    if not run.get("started"):
        return ""
    end = run.get("updated") if run.get("status") in FINISHED else time.time()
    return format_duration(max(0.0, float(end or 0) - float(run["started"])))


# -- login ---------------------------------------------------------------------------


def _next(raw: str | None) -> str:
    # Only a path of this dashboard: never an open redirect to another site.
    return raw if raw and raw.startswith("/ui/") and "//" not in raw else "/ui/"


async def login(request: Request) -> Response:
    if request.method == "GET":
        return _html(
            request, "login.html", next=_next(request.query_params.get("next")), failed=False
        )
    form = await request.form()
    target = _next(str(form.get("next") or ""))
    session = _sessions(request).login(str(form.get("token") or ""))
    if session is None:
        return _html(request, "login.html", next=target, failed=True)  # the form again
    response = RedirectResponse(target, status_code=303, headers=HEADERS)
    Sessions.set_cookie(response, session)
    return response


async def _logout(request: Request, service: Service, session: Session) -> Response:
    _sessions(request).logout(request)
    response = RedirectResponse("/ui/login", status_code=303, headers=HEADERS)
    response.delete_cookie("steprun_session", path="/ui")
    return response


# -- runs ----------------------------------------------------------------------------


def _runs(service: Service, request: Request) -> list[dict[str, Any]]:
    status = request.query_params.get("status") or ""
    flow = (request.query_params.get("flow") or "").strip().lower()
    rows = service.runs.list(500)
    shown = [
        {**r, "took": _took(r), "started_at": _ago(r.get("started"))}
        for r in rows
        if (not status or r["status"] == status) and (not flow or flow in r["flow"].lower())
    ]
    return shown[:200]


async def _runs_page(request: Request, service: Service, session: Session) -> Response:
    return _html(
        request,
        "runs.html",
        session=session,
        runs=_runs(service, request),
        statuses=STATUSES,
        selected=request.query_params.get("status") or "",
        flow=request.query_params.get("flow") or "",
    )


async def _runs_table(request: Request, service: Service, session: Session) -> Response:
    selected = request.query_params.get("status") or ""
    flow = request.query_params.get("flow") or ""
    return _html(
        request, "runs_rows.html", runs=_runs(service, request), selected=selected, flow=flow
    )


async def _changes(request: Request, service: Service, session: Session) -> Response:
    """SSE: the id of every run that moves (the runs page refreshes its rows)."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    service.hub.watchers.add(queue)

    async def stream() -> AsyncIterator[bytes]:
        try:
            yield b": connected\n\n"
            while True:
                try:
                    run_id = await asyncio.wait_for(queue.get(), 15)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                yield sse("changed", run_id)
        finally:
            service.hub.watchers.discard(queue)

    return StreamingResponse(stream(), media_type="text/event-stream", headers=HEADERS)


def _run_view(service: Service, run_id: str) -> dict[str, Any]:
    run = service.runs.describe(run_id)
    steps = run.get("steps", [])
    longest = max([(s["ended"] or time.time()) - s["started"] for s in steps] or [0.0]) or 1.0
    for step in steps:
        took = (step["ended"] or time.time()) - step["started"]
        step["took"] = format_duration(took) if step["ended"] else f"{format_duration(took)}…"
        step["share"] = round(took / longest, 4)
        step["report_json"] = json.dumps(step.get("report"), indent=2, default=str)
        step["logs"] = (step.get("report") or {}).get("logs") or []
    jobs: dict[str, dict[str, Any]] = {}  # by id: the wait's copy replaces the create's
    for name, value in run.get("merge_fields", {}).items():
        if isinstance(value, dict) and value.get("object") == "fine_tuning.job" and "id" in value:
            jobs[value["id"]] = {"field": name, "id": value["id"], "status": value.get("status")}
    row = service.store.run(run_id)
    return {
        "run": {**run, "took": _took(run), "started_at": _ago(run.get("started"))},
        "steps": steps,
        "jobs": list(jobs.values()),
        "inputs": json.dumps(row.inputs, indent=2, default=str),
        "fields": {
            k: json.dumps(v, indent=2, default=str) for k, v in run.get("merge_fields", {}).items()
        },
    }


async def _run_page(request: Request, service: Service, session: Session) -> Response:
    try:
        view = _run_view(service, request.path_params["run_id"])
    except (RunNotFound, SteprunError):
        return _html(request, "error.html", status=404, message="No such run.")
    return _html(request, "run.html", session=session, **view)


async def _run_steps(request: Request, service: Service, session: Session) -> Response:
    try:
        view = _run_view(service, request.path_params["run_id"])
    except (RunNotFound, SteprunError):
        return JSONResponse({"error": "no such run"}, status_code=404, headers=HEADERS)
    return _html(request, "run_body.html", session=session, **view)


async def _cancel_run(request: Request, service: Service, session: Session) -> Response:
    run_id = request.path_params["run_id"]
    form = await request.form()
    from ... import durable

    try:
        await durable.cancel(
            service.runtime,
            service.store,
            run_id,
            cancel_jobs=form.get("cancel_jobs") == "on",
            authorizations=service.authorizations,
            wait_seconds=10,
        )
    except SteprunError as exc:
        return _html(request, "error.html", status=409, message=str(exc))
    return RedirectResponse(f"/ui/runs/{run_id}", status_code=303, headers=HEADERS)


async def _resume_run(request: Request, service: Service, session: Session) -> Response:
    run_id = request.path_params["run_id"]
    try:
        service.runs.resume(run_id)
    except SteprunError as exc:
        return _html(request, "error.html", status=409, message=str(exc))
    return RedirectResponse(f"/ui/runs/{run_id}", status_code=303, headers=HEADERS)


# -- fine-tuning jobs ----------------------------------------------------------------


def _authorization(service: Service, run_id: str, field: str) -> Authorization | None:
    """The authorization the step that wrote ``field`` used, resolved like the run did."""
    row = service.store.run(run_id)
    flow = service.runtime.load_text(
        row.flow_text,
        file=row.flow_file,
        base_dir=Path(row.base_dir),
        authorizations=service.authorizations,
    )
    name = flow.authorization
    for attempt in service.store.attempts(run_id):
        report = attempt.report or {}
        if report.get("merge_field") == field and report.get("authorization"):
            name = report["authorization"]
    resolved = service.runtime.prepare(flow)
    return resolved.get(name) if name else None


async def _step(service: Service, step_type: str, config: dict[str, Any], auth: Any) -> Any:
    result = await service.runtime.run_step(step_type, config, authorization=auth)
    if result.status != "succeeded":
        raise SteprunError((result.error or {}).get("message", f"{step_type} failed"))
    return result.merge_fields["result"]


async def _job_data(service: Service, request: Request) -> dict[str, Any]:
    run_id, job_id = request.path_params["run_id"], request.path_params["job_id"]
    auth = _authorization(service, run_id, request.query_params.get("field", "job"))
    job, events, checkpoints = await asyncio.gather(
        _step(service, "openai.retrieve_fine_tuning_job", {"job_id": job_id}, auth),
        _step(service, "openai.list_fine_tuning_events", {"job_id": job_id, "all": True}, auth),
        _step(
            service, "openai.list_fine_tuning_checkpoints", {"job_id": job_id, "all": True}, auth
        ),
    )
    points = metrics_points(events.get("data", []))
    steps = [c["step_number"] for c in checkpoints.get("data", []) if "step_number" in c]
    try:
        figure: dict[str, Any] | None = loss_figure(points, steps)
    except ImportError:
        figure = None
    finish = job.get("estimated_finish")
    return {
        "job": job,
        "status": job.get("status"),
        "terminal": job.get("status") in JOB_TERMINAL,
        "eta": format_duration(max(0, finish - time.time())) if finish else None,
        "points": len(points),
        "checkpoints": steps,
        "figure": figure,
    }


async def _job_page(request: Request, service: Service, session: Session) -> Response:
    try:
        data = await _job_data(service, request)
    except (SteprunError, RunNotFound) as exc:
        return _html(request, "error.html", status=404, message=str(exc))
    return _html(
        request,
        "job.html",
        session=session,
        run_id=request.path_params["run_id"],
        field=request.query_params.get("field", "job"),
        data=data,
        data_json=json.dumps(data, default=str),
        charts=plotly_js() is not None,
    )


async def _job_json(request: Request, service: Service, session: Session) -> Response:
    try:
        return JSONResponse(await _job_data(service, request), headers=HEADERS)
    except (SteprunError, RunNotFound) as exc:
        return JSONResponse({"error": str(exc)}, status_code=404, headers=HEADERS)


async def _cancel_job(request: Request, service: Service, session: Session) -> Response:
    run_id, job_id = request.path_params["run_id"], request.path_params["job_id"]
    field = request.query_params.get("field", "job")
    try:
        auth = _authorization(service, run_id, field)
        await _step(service, "openai.cancel_fine_tuning_job", {"job_id": job_id}, auth)
    except SteprunError as exc:
        return _html(request, "error.html", status=409, message=str(exc))
    return RedirectResponse(
        f"/ui/runs/{run_id}/jobs/{job_id}?field={quote(field)}", status_code=303, headers=HEADERS
    )


# -- the step catalog ----------------------------------------------------------------


async def _catalog(request: Request, service: Service, session: Session) -> Response:
    steps = [
        {"type": name, "title": t.title, "version": t.version}
        for name, t in sorted(service.runtime.step_types.items())
    ]
    return _html(request, "steps.html", session=session, steps=steps)


async def _step_page(request: Request, service: Service, session: Session) -> Response:
    name = request.path_params["step_type"]
    step_type = service.runtime.step_types.get(name)
    if step_type is None:
        return _html(request, "error.html", status=404, message=f"No step type {name!r}.")
    document = service.openapi()
    components = document["components"]["schemas"]
    operation = document["paths"][f"/v1/steps/{name}"]["post"]
    body = operation["requestBody"]["content"]["application/json"]["schema"]
    config = body["properties"]["config"]
    return _html(
        request,
        "step.html",
        session=session,
        step=step_type,
        description=operation.get("description", ""),
        fields=fields(config, components),
        example=json.dumps(example(config, components), indent=2),
    )


# -- static files --------------------------------------------------------------------


async def static(request: Request) -> Response:
    name = request.path_params["name"]
    if name == "plotly.min.js":
        path = plotly_js()
        if path is None:
            return Response("plotly is not installed: pip install 'steprun[dashboard]'", 404)
        return FileResponse(
            path, media_type="text/javascript", headers={"cache-control": "max-age=86400"}
        )
    if name not in ("app.js", "app.css"):
        return Response(status_code=404)
    kind = "text/javascript" if name.endswith(".js") else "text/css"
    return FileResponse(STATIC / name, media_type=kind, headers={"cache-control": "no-cache"})


runs_page = page(_runs_page)
runs_table = page(_runs_table)
changes = page(_changes)
run_page = page(_run_page)
run_steps = page(_run_steps)
cancel_run = page(_cancel_run)
resume_run = page(_resume_run)
job_page = page(_job_page)
job_json = page(_job_json)
cancel_job = page(_cancel_job)
catalog = page(_catalog)
step_page = page(_step_page)
logout = page(_logout)

__all__ = [
    "CSP",
    "cancel_job",
    "cancel_run",
    "catalog",
    "changes",
    "job_json",
    "job_page",
    "login",
    "logout",
    "resume_run",
    "run_page",
    "run_steps",
    "runs_page",
    "runs_table",
    "static",
    "step_page",
]
