"""``/v1/files``: upload (multipart), list, retrieve, content, delete."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.datastructures import UploadFile
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Route
from starlette.types import Message, Receive

from . import ids
from .context import Context, page, query_int
from .errors import APIError, file_not_found, invalid
from .params import Param, check_value
from .records import FileRecord
from .training import first_bad_of

UPLOAD_PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
# OpenAI's limit for one file (fine-tune files included): 512 MB. A LocalBackend can be
# given another (``max_upload_bytes``; ``serve-local --max-upload-mb``).
MAX_UPLOAD_BYTES = 512 * 2**20
# What a multipart body may hold besides the file: boundaries, headers, small fields.
FORM_OVERHEAD = 64 * 2**10
MAX_FORM_FIELDS = 1000  # as Starlette's default; more is a 400
CHUNK = 2**20
# Files of purpose batch expire after 30 days unless told otherwise (FileExpirationAfter).
_BATCH_EXPIRY = 30 * 24 * 3600


def routes(ctx: Context) -> list[Route]:
    async def upload(request: Request) -> Response:
        content_type = request.headers.get("content-type", "")
        if not content_type.startswith("multipart/form-data"):
            raise invalid(
                f"Invalid Content-Type header ({content_type or 'none'}), expected "
                "multipart/form-data. (HINT: If you're using curl, you can pass "
                "-H 'Content-Type: multipart/form-data')"
            )
        limit = ctx.max_upload_bytes
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit + FORM_OVERHEAD:
            raise too_large(limit)  # said before reading a byte of it
        # Starlette spools each file part to a temporary file past 1 MB; this bounds what
        # it spools when the client sends no (or a false) Content-Length.
        limited = Request(request.scope, _bounded(request.receive, limit + FORM_OVERHEAD, limit))
        async with limited.form(max_fields=MAX_FORM_FIELDS) as form:
            upload = form.get("file")
            purpose = form.get("purpose")
            anchor = form.get("expires_after[anchor]")
            seconds = form.get("expires_after[seconds]")
            if not isinstance(upload, UploadFile):
                raise invalid(
                    "Missing required parameter: 'file'.",
                    param="file",
                    code="missing_required_parameter",
                )
            if not isinstance(purpose, str):
                raise invalid(
                    "Missing required parameter: 'purpose'.",
                    param="purpose",
                    code="missing_required_parameter",
                )
            check_value("purpose", purpose, Param(("string",), enum=UPLOAD_PURPOSES))
            if upload.size is not None and upload.size > limit:
                raise too_large(limit)
            filename = upload.filename or "file"
            with ctx.store.incoming() as (path, stream):
                size = 0
                while chunk := await upload.read(CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise too_large(limit)
                    stream.write(chunk)
                stream.flush()
                if purpose == "fine-tune":
                    _check_fine_tune_file(filename, path)
                now = int(ctx.now())
                record = FileRecord(
                    id=ids.new_id("file-"),
                    filename=filename,
                    purpose=purpose,
                    bytes=size,
                    created_at=now,
                    expires_at=_expiry(now, purpose, anchor, seconds),
                )
                ctx.store.add_file(record, path)
        return JSONResponse(record.view())

    async def listing(request: Request) -> Response:
        purpose = request.query_params.get("purpose")
        order = request.query_params.get("order", "desc")
        check_value("order", order, Param(("string",), enum=("asc", "desc")))
        limit = query_int(request, "limit", 10_000, maximum=10_000)
        records = sorted(ctx.store.files.values(), key=lambda f: (f.created_at, f.id))
        if order == "desc":
            records.reverse()
        if purpose is not None:
            records = [f for f in records if f.purpose == purpose]
        chunk, more = page(records, after=request.query_params.get("after"), limit=limit, key=_id)
        data = [record.view() for record in chunk]
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "first_id": data[0]["id"] if data else None,
                "last_id": data[-1]["id"] if data else None,
                "has_more": more,
            }
        )

    def _record(request: Request) -> FileRecord:
        file_id = request.path_params["file_id"]
        record = ctx.store.files.get(file_id)
        if record is None:
            raise file_not_found(file_id)
        return record

    async def retrieve(request: Request) -> Response:
        return JSONResponse(_record(request).view())

    async def delete(request: Request) -> Response:
        record = _record(request)
        ctx.store.delete_file(record.id)
        ctx.forget_file(record.id)
        return JSONResponse({"id": record.id, "object": "file", "deleted": True})

    async def content(request: Request) -> Response:
        record = _record(request)
        # Streamed from disk: a 512 MB file is never held in memory.
        return FileResponse(ctx.store.file_path(record.id), media_type="application/octet-stream")

    return [
        Route("/v1/files", upload, methods=["POST"]),
        Route("/v1/files", listing, methods=["GET"]),
        Route("/v1/files/{file_id}", retrieve, methods=["GET"]),
        Route("/v1/files/{file_id}", delete, methods=["DELETE"]),
        Route("/v1/files/{file_id}/content", content, methods=["GET"]),
    ]


def _id(record: FileRecord) -> str:
    return record.id


def _bounded(receive: Receive, most: int, limit: int) -> Receive:
    """``receive`` that refuses a request body once it is over ``most`` bytes."""
    seen = 0

    async def bounded() -> Message:
        nonlocal seen
        message = await receive()
        seen += len(message.get("body", b""))
        if seen > most:
            raise too_large(limit)
        return message

    return bounded


def too_large(limit: int) -> APIError:
    return invalid(
        f"File is too large: the limit is {limit:,} bytes ({limit / 2**20:g} MB) per file.",
        param="file",
        code="file_too_large",
    )


def _check_fine_tune_file(filename: str, path: Path) -> None:
    if not filename.endswith(".jsonl"):
        raise invalid("Invalid file format for Fine-Tuning API. Must be .jsonl", param="file")
    with path.open(encoding="utf-8", errors="replace") as lines:
        bad = first_bad_of(lines)
    if bad is not None:
        raise invalid(
            f"Invalid file format for Fine-Tuning API. Must be .jsonl: line {bad} is not a "
            "JSON object.",
            param="file",
        )


def _expiry(now: int, purpose: str, anchor: Any, seconds: Any) -> int | None:
    if anchor is None and seconds is None:
        return now + _BATCH_EXPIRY if purpose == "batch" else None
    for name, value in (("anchor", anchor), ("seconds", seconds)):
        if value is None:
            raise invalid(
                f"Missing required parameter: 'expires_after.{name}'.",
                param=f"expires_after.{name}",
                code="missing_required_parameter",
            )
    check_value("expires_after.anchor", anchor, Param(("string",), enum=("created_at",)))
    try:
        value = int(seconds)
    except (TypeError, ValueError):
        raise invalid(
            "Invalid type for 'expires_after.seconds': expected an integer.",
            param="expires_after.seconds",
            code="invalid_type",
        ) from None
    check_value(
        "expires_after.seconds", value, Param(("integer",), minimum=3600, maximum=2_592_000)
    )
    return now + value


__all__ = ["MAX_UPLOAD_BYTES", "UPLOAD_PURPOSES", "routes", "too_large"]
