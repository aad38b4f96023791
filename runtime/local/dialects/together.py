"""``/together/v1``: Together AI's own fine-tuning API over the backend's ``/v1`` jobs.

``POST /fine-tunes`` takes Together's flat settings (``n_epochs``, ``batch_size``, an
absolute ``learning_rate``, ``training_type`` Lora or Full, ``training_method`` sft or
dpo) and creates the job through ``/v1/fine_tuning/jobs``; jobs, events and checkpoints
come back in Together's shapes and words (statuses pending ... completed, ISO dates).
Files go to ``/files/upload``; chat and completions are OpenAI's and pass through.

The embedded trainers take a learning-rate multiplier: Together's ``learning_rate`` is
passed as ``learning_rate / 1e-5`` (Together's default rate), and echoed back as given.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from .. import catalog
from ..context import Context
from .asgi import Reply, answer, call, json_body, read_body, replay
from .together_sdk import PRICE, UPLOAD_PATH, Uploads, limits, multipart

PREFIX = "/together/v1"
DEFAULT_LEARNING_RATE = 1e-5
STATUSES = {
    "validating_files": "pending",
    "queued": "queued",
    "running": "running",
    "paused": "queued",
    "succeeded": "completed",
    "failed": "error",
    "cancelled": "cancelled",
}
# Together's event types for the backend's events, by a word of their message.
_EVENT_TYPES = (
    ("Created", "job_pending"),
    ("alidat", "training_data_download_complete"),
    ("started", "job_start"),
    ("Checkpoint", "checkpoint_save"),
    ("New fine-tuned model", "model_upload_complete"),
    ("Evaluating", "model_uploading"),
    ("completed", "job_complete"),
    ("cancelled", "job_stopped"),
)
_JOB = re.compile(r"^/fine-tunes/(?P<id>[^/]+)(?P<action>/cancel|/events|/checkpoints)?$")
_PREPROCESS = re.compile(r"^/files/(?P<id>[^/]+)/preprocess$")
_FILE = re.compile(r"^/files/(?P<id>[^/]+)(?P<content>/content)?$")


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def iso(epoch: Any) -> str | None:
    if not isinstance(epoch, int | float):
        return None
    return datetime.fromtimestamp(epoch, UTC).isoformat().replace("+00:00", "Z")


def error(status: int, message: str, param: str | None = None) -> tuple[int, dict[str, Any]]:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return status, {"error": {"message": message, "type": kind, "param": param, "code": None}}


def openai_body(body: dict[str, Any]) -> dict[str, Any]:
    """The ``/v1`` create body for Together's."""
    fields = ("model", "training_file", "validation_file", "suffix")
    out: dict[str, Any] = {k: body[k] for k in fields if k in body}
    hyper: dict[str, Any] = {}
    if isinstance(body.get("n_epochs"), int):
        hyper["n_epochs"] = body["n_epochs"]
    if isinstance(body.get("batch_size"), int):
        hyper["batch_size"] = body["batch_size"]
    if isinstance(body.get("learning_rate"), int | float):
        hyper["learning_rate_multiplier"] = body["learning_rate"] / DEFAULT_LEARNING_RATE
    method = _mapping(body.get("training_method"))
    kind = "dpo" if method.get("method") == "dpo" else "supervised"
    out["method"] = {"type": kind, kind: {"hyperparameters": hyper}} if hyper else {"type": kind}
    if isinstance(body.get("random_seed"), int):
        out["seed"] = body["random_seed"]
    return out


class TogetherDialect:
    def __init__(self, app: ASGIApp, ctx: Context) -> None:
        self.app = app
        self.ctx = ctx
        # What Together's create said that the /v1 job does not keep, by job id.
        self.settings: dict[str, dict[str, Any]] = {}
        self.uploads = Uploads()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not path.startswith(PREFIX + "/"):
            await self.app(scope, receive, send)
            return
        sub, method = path[len(PREFIX) :], scope["method"]
        if method == "POST" and sub in ("/chat/completions", "/completions"):
            # OpenAI's shapes: straight through, streams included.
            inner = {**scope, "path": "/v1" + sub, "raw_path": ("/v1" + sub).encode()}
            await self.app(inner, receive, send)
            return
        body = await read_body(receive)
        reply = await self.handle(scope, method, sub, body)
        if isinstance(reply, Reply):
            headers = {k: v for k, v in reply.headers.items() if k != "content-length"}
            headers.setdefault("content-type", "application/json")
            raw = [(k.encode(), v.encode("latin-1")) for k, v in headers.items()]
            raw.append((b"content-length", str(len(reply.body)).encode()))
            await send({"type": "http.response.start", "status": reply.status, "headers": raw})
            await send({"type": "http.response.body", "body": reply.body})
        else:
            status, content, request_id = reply
            await answer(send, status, content, {"x-request-id": request_id} if request_id else {})

    async def handle(
        self, scope: Scope, method: str, sub: str, body: bytes
    ) -> Reply | tuple[int, Any, str | None]:
        async def inner(verb: str, path: str, query: str = "", data: bytes = b"") -> Reply:
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-length"]
            headers.append((b"content-length", str(len(data)).encode()))
            return await call(self.app, scope, verb, path, query=query, body=data, headers=headers)

        def passed(reply: Reply, content: Any) -> tuple[int, Any, str | None]:
            return reply.status, content, reply.headers.get("x-request-id")

        sdk = await self.sdk(scope, inner, method, sub, body)
        if sdk is not None:
            return sdk
        job = _JOB.match(sub)
        found = _FILE.match(sub)
        if method == "POST" and sub == "/files/upload":
            reply = await inner("POST", "/v1/files", data=body)
            return passed(reply, file(reply.json()) if reply.status == 200 else reply.json())
        if method == "GET" and sub == "/files":
            reply = await inner("GET", "/v1/files")
            if reply.status != 200:
                return passed(reply, reply.json())
            return passed(reply, {"data": [file(f) for f in reply.json()["data"]]})
        if found is not None and found["content"]:
            return await inner("GET", f"/v1/files/{found['id']}/content")
        if found is not None and method in ("GET", "DELETE"):
            reply = await inner(method, f"/v1/files/{found['id']}")
            content = reply.json()
            if reply.status == 200 and method == "GET":
                content = file(content)
            elif reply.status == 200:
                content = {"id": content.get("id"), "deleted": bool(content.get("deleted"))}
            return passed(reply, content)
        if method == "POST" and sub == "/fine-tunes":
            return await self.create(inner, body)
        if method == "GET" and sub == "/fine-tunes":
            reply = await inner("GET", "/v1/fine_tuning/jobs", "limit=100")
            if reply.status != 200:
                return passed(reply, reply.json())
            return passed(reply, {"data": [self.job(j) for j in reply.json()["data"]]})
        if job is not None:
            job_id, action = job["id"], job["action"]
            if action is None and method == "GET":
                reply = await inner("GET", f"/v1/fine_tuning/jobs/{job_id}")
                if reply.status != 200:
                    return passed(reply, reply.json())
                events = await inner("GET", f"/v1/fine_tuning/jobs/{job_id}/events", "limit=100")
                listed = events.json()["data"] if events.status == 200 else []
                return passed(reply, self.job(reply.json(), listed))
            if action == "/cancel" and method == "POST":
                reply = await inner("POST", f"/v1/fine_tuning/jobs/{job_id}/cancel")
                return passed(
                    reply, self.job(reply.json()) if reply.status == 200 else reply.json()
                )
            if action == "/events" and method == "GET":
                reply = await inner("GET", f"/v1/fine_tuning/jobs/{job_id}/events", "limit=100")
                if reply.status != 200:
                    return passed(reply, reply.json())
                return passed(reply, {"data": [event(e) for e in reply.json()["data"][::-1]]})
            if action == "/checkpoints" and method == "GET":
                reply = await inner(
                    "GET", f"/v1/fine_tuning/jobs/{job_id}/checkpoints", "limit=100"
                )
                if reply.status != 200:
                    return passed(reply, reply.json())
                points = [checkpoint(c) for c in reply.json()["data"]]
                return passed(reply, {"data": points})
        status, content = error(404, f"Invalid URL ({method} {PREFIX}{sub})")
        return status, content, None

    async def sdk(
        self, scope: Scope, inner: Any, method: str, sub: str, body: bytes
    ) -> Reply | tuple[int, Any, str | None] | None:
        """What Together's SDK asks besides the published API (:mod:`.together_sdk`)."""
        if method == "POST" and sub == "/files":
            request = Request({**scope, "path": scope["path"]}, receive=replay(body))
            async with request.form() as form:
                purpose, name = form.get("purpose"), form.get("file_name")
            if not isinstance(purpose, str) or not isinstance(name, str):
                status, content = error(400, "purpose and file_name are required")
                return status, content, None
            token = self.uploads.announce(purpose, name)
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1")
            location = f"{scope.get('scheme', 'http')}://{host}{PREFIX}{UPLOAD_PATH}{token}"
            found = {"location": location, "x-together-file-id": token}
            return Reply(302, {**found, "content-type": "application/json"}, b"{}")
        if method == "PUT" and sub.startswith(UPLOAD_PATH):
            if self.uploads.receive(sub[len(UPLOAD_PATH) :], body):
                return 200, {}, None
            status, content = error(404, "no upload is waiting at this URL")
            return status, content, None
        preprocess = _PREPROCESS.match(sub)
        if method == "POST" and preprocess is not None:
            upload = self.uploads.complete(preprocess["id"])
            if upload is None:
                status, content = error(404, f"no uploaded file {preprocess['id']}")
                return status, content, None
            data, kind = multipart(upload)
            headers = [
                (k, v) for k, v in scope["headers"] if k not in (b"content-length", b"content-type")
            ]
            headers += [
                (b"content-type", kind.encode()),
                (b"content-length", str(len(data)).encode()),
            ]
            reply = await call(self.app, scope, "POST", "/v1/files", body=data, headers=headers)
            created = reply.json()
            content = file(created) if reply.status == 200 else created
            return reply.status, content, reply.headers.get("x-request-id")
        if method == "GET" and sub == "/fine-tunes/models/limits":
            query = dict(parse_qsl(scope["query_string"].decode("latin-1")))
            model = query.get("model_name", "")
            base = catalog.resolve(model)
            if base is None or base.tunable != "current":
                message = f"The model {model!r} is not available for fine-tuning here."
                return 404, {"message": message}, None
            return 200, limits(model), None
        if method == "POST" and sub == "/fine-tunes/estimate-price":
            return 200, PRICE, None
        return None

    async def create(self, inner: Any, body: bytes) -> tuple[int, Any, str | None]:
        data = json_body(body)
        if not isinstance(data, dict):
            status, content = error(400, "the request body must be a JSON object")
            return status, content, None
        for required in ("training_file", "model"):
            if not isinstance(data.get(required), str):
                status, content = error(400, f"{required} is required", required)
                return status, content, None
        training_type = data.get("training_type")
        if training_type is not None and (
            not isinstance(training_type, dict) or training_type.get("type") not in ("Lora", "Full")
        ):
            status, content = error(400, "training_type.type must be Lora or Full", "training_type")
            return status, content, None
        reply = await inner(
            "POST", "/v1/fine_tuning/jobs", data=json.dumps(openai_body(data)).encode()
        )
        created = reply.json()
        if reply.status != 200:
            return reply.status, created, reply.headers.get("x-request-id")
        self.settings[created["id"]] = {
            "learning_rate": data.get("learning_rate", DEFAULT_LEARNING_RATE),
            # LoRA unless told otherwise, as Together trains.
            "training_type": training_type or {"type": "Lora", "lora_r": 8, "lora_alpha": 16},
            "training_method": data.get("training_method")
            or {"method": "sft", "train_on_inputs": "auto"},
            "n_checkpoints": data.get("n_checkpoints", 1),
        }
        return 200, self.job(created), reply.headers.get("x-request-id")

    def job(self, job: dict[str, Any], events: list[Any] | None = None) -> dict[str, Any]:
        """Together's job object for a ``/v1`` job."""
        hyper = job.get("hyperparameters") or {}
        kind = (job.get("method") or {}).get("type") or "supervised"
        hyper = {
            **hyper,
            **(((job.get("method") or {}).get(kind) or {}).get("hyperparameters") or {}),
        }
        settings = self.settings.get(str(job.get("id")), {})
        out: dict[str, Any] = {
            "id": job.get("id"),
            "status": STATUSES.get(str(job.get("status")), str(job.get("status"))),
            "created_at": iso(job.get("created_at")),
            "updated_at": iso(job.get("finished_at") or job.get("created_at")),
            "model": job.get("model"),
            "training_file": job.get("training_file"),
            "validation_file": job.get("validation_file") or "",
            "suffix": job.get("suffix") or "",
            "n_epochs": hyper.get("n_epochs") if isinstance(hyper.get("n_epochs"), int) else 1,
            "learning_rate": settings.get("learning_rate", DEFAULT_LEARNING_RATE),
            "n_checkpoints": settings.get("n_checkpoints", 1),
            "training_type": settings.get(
                "training_type", {"type": "Lora", "lora_r": 8, "lora_alpha": 16}
            ),
            "training_method": settings.get(
                "training_method", {"method": "sft", "train_on_inputs": "auto"}
            ),
            "token_count": job.get("trained_tokens") or 0,
            "user_id": job.get("organization_id") or "",
            "events": [event(e) for e in (events or [])[::-1]],
        }
        if isinstance(hyper.get("batch_size"), int):
            out["batch_size"] = hyper["batch_size"]  # Together's "max" stands for "not chosen"
        if job.get("fine_tuned_model"):
            out["model_output_name"] = job["fine_tuned_model"]
        if job.get("status") == "failed" and isinstance(job.get("error"), dict):
            out["events"].append(
                {
                    **event(
                        {
                            "created_at": job.get("finished_at"),
                            "message": job["error"].get("message"),
                            "level": "error",
                        }
                    )
                }
            )
        return out


def event(item: dict[str, Any]) -> dict[str, Any]:
    message = str(item.get("message") or "")
    level = item.get("level") or "info"
    kind = (
        "job_error"
        if level == "error"
        else "training_start"
        if item.get("type") == "metrics"
        else None
    )
    if kind is None:
        kind = next((t for word, t in _EVENT_TYPES if word in message), "job_pending")
    data = _mapping(item.get("data"))
    return {
        "object": "fine-tune-event",
        "created_at": iso(item.get("created_at")) or "",
        "level": {"warn": "warning"}.get(level, level),
        "message": message,
        "type": kind,
        "param_count": 0,
        "token_count": 0,
        "total_steps": int(data.get("total_steps") or 0),
        "wandb_url": "",
        "step": int(data.get("step") or 0),
        "checkpoint_path": "",
        "model_path": "",
        "training_offset": 0,
        "hash": str(item.get("id") or ""),
    }


def checkpoint(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "step": item.get("step_number"),
        "path": item.get("fine_tuned_model_checkpoint"),
        "created_at": iso(item.get("created_at")),
        "checkpoint_type": "Intermediate",
    }


def file(item: dict[str, Any]) -> dict[str, Any]:
    """Together's file object for OpenAI's."""
    name = str(item.get("filename") or "")
    return {
        "id": item.get("id"),
        "object": "file",
        "created_at": item.get("created_at"),
        "filename": name,
        "bytes": item.get("bytes"),
        "purpose": item.get("purpose"),
        "Processed": item.get("status") in (None, "processed"),
        "FileType": name.rsplit(".", 1)[-1] if name.endswith((".csv", ".parquet")) else "jsonl",
    }


__all__ = ["PREFIX", "STATUSES", "TogetherDialect"]
