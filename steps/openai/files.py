"""``openai.upload_file``: ``POST /files`` (multipart), streamed from disk, never twice.

A fine-tuning file is checked first (:func:`check_training_data`) unless ``check: false``:
uploading a file the fine-tuning job will reject only wastes the upload and the wait.

The upload has an effect, so it is sent once per execution. The file goes up under the
user's name with the execution's tag in it (``train.steprun-<tag>.jsonl``), recorded
(``context.checkpoint``) before sending. When the outcome is unknown (the connection
dropped after the file went out, a timeout, a 5xx answer) and when a run resumes an
interrupted attempt, the step looks for a file of that very name, size and purpose over a
settle window (:mod:`.reconcile`) and adopts it; a file of another run never matches.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path
from typing import Any

from steprun.runtime.errors import StepError
from steprun.runtime.step import StepContext, StepType
from steprun.steps.openai.client import ApiResponse, OpenAIClient, path_segment
from steprun.steps.openai.reconcile import Settler
from steprun.steps.openai.training_data import (
    DEFAULT_MIN_EXAMPLES,
    check_training_data,
    invalid_training_data,
)

# Every purpose CreateFileRequest lists in the current spec.
PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
# The server stamps created_at with its own clock; ours may be a little ahead. The listing
# is paged back to the attempt's start less this margin.
CLOCK_SKEW = 60
# Uploaded names carry the execution's tag after this prefix (see tagged_filename).
TAG_PREFIX = "steprun-"
TAG_KEY = "upload_tag"
# Files the API no longer serves (the legacy `status` values), never adopted.
_DEAD_STATUSES = ("error", "deleting", "deleted")
_PAGE_LIMIT = 100
_MAX_PAGES = 50


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


def form_fields(config: dict[str, Any]) -> dict[str, str]:
    """The multipart fields besides the file; nested ``expires_after`` is written the way
    the SDK writes nested form data (``expires_after[anchor]``), as multipart is flat."""
    fields = {"purpose": str(config["purpose"])}
    expires = config.get("expires_after")
    if expires:
        fields["expires_after[anchor]"] = str(expires.get("anchor", "created_at"))
        fields["expires_after[seconds]"] = str(expires["seconds"])
    return fields


async def find_upload(
    client: OpenAIClient,
    *,
    filename: str,
    size: int,
    purpose: str,
    since: int,
) -> list[dict[str, Any]]:
    """This execution's uploads: files with its tagged name, size and purpose, oldest
    first; the listing (newest first) is paged back to ``since`` less the clock margin."""
    found: list[dict[str, Any]] = []
    threshold = since - CLOCK_SKEW
    after: str | None = None
    for _ in range(_MAX_PAGES):
        params: dict[str, Any] = {"purpose": purpose, "order": "desc", "limit": _PAGE_LIMIT}
        if after:
            params["after"] = after
        page = (await client.request("GET", "/files", params=params)).object()
        data = page.get("data") or []
        for item in data:
            if (
                isinstance(item, dict)
                and item.get("filename") == filename
                and item.get("bytes") == size
                and item.get("purpose") == purpose
                and item.get("status") not in _DEAD_STATUSES
            ):
                found.append(item)
        created = [i.get("created_at") for i in data if isinstance(i, dict)]
        older = any(isinstance(c, int) and c < threshold for c in created)
        # Newest first: once a page reaches files older than the attempt, stop paging.
        # A server that ignores `order` (the legacy API has no paging) ends at has_more.
        if not page.get("has_more") or older or not data:
            break
        after = data[-1].get("id") if isinstance(data[-1], dict) else None
        if not after:
            break
    return sorted(found, key=lambda item: (_created(item), str(item.get("id"))))


def _created(item: dict[str, Any]) -> int:
    created = item.get("created_at")
    return created if isinstance(created, int) else 0


def tagged_filename(filename: str, tag: str) -> str:
    """The name a file is uploaded under: the user's name, then this execution's tag, then
    the extension (the fine-tuning API wants ``.jsonl``): ``train.steprun-<tag>.jsonl``.

    The files API has no metadata and no content hash, so the tag in the name is what
    proves an upload is this execution's own and not another run's same-sized file.
    """
    stem, dot, extension = filename.rpartition(".")
    if not dot or not stem:
        return f"{filename}.{TAG_PREFIX}{tag}"
    return f"{stem}.{TAG_PREFIX}{tag}.{extension}"


async def _adopt(
    client: OpenAIClient,
    context: StepContext,
    found: list[dict[str, Any]],
) -> ApiResponse:
    first = found[0]
    context.log.info(
        f"adopting {first.get('id')} ({first.get('filename')}, {human_size(first['bytes'])}): "
        "this execution uploaded it although no answer said so; not uploading it again"
    )
    if len(found) > 1:
        extra = ", ".join(str(item.get("id")) for item in found[1:])
        context.log.warn(
            f"more copies of this upload exist ({extra}); delete them if they are unwanted"
        )
    # Fetched again so that a raw result is this file's real answer.
    return await client.request("GET", "/files/" + path_segment(str(first["id"])))


def _file_size(path: Path, shown: str) -> int:
    try:
        stat = path.stat()
    except FileNotFoundError:
        raise StepError(
            f"file {shown} does not exist; check the path (a relative path is read from the "
            "flow file's folder)",
            type="invalid_request_error",
            code="file_not_found",
            param="file",
        ) from None
    except OSError as exc:
        raise StepError(
            f"file {shown} cannot be read ({exc.strerror or type(exc).__name__})",
            type="invalid_request_error",
            code="file_unreadable",
            param="file",
        ) from None
    if not path.is_file():
        raise StepError(
            f"file {shown} is not a regular file; give the path of the file to upload",
            type="invalid_request_error",
            code="file_unreadable",
            param="file",
        )
    return stat.st_size


async def _run(config: dict[str, Any], context: StepContext) -> Any:
    shown: str = config["file"]
    path = context.path(shown)
    purpose: str = config["purpose"]
    result_format: str = config.get("result_format", "parsed")
    filename: str = config.get("filename") or path.name
    size = _file_size(path, shown)

    if purpose == "fine-tune" and config.get("check", True):
        if not filename.endswith(".jsonl"):
            # The API refuses it after the whole upload: "Invalid file format for
            # Fine-Tuning API. Must be .jsonl".
            raise StepError(
                f"a fine-tune file must be named *.jsonl, and {filename!r} is not; rename it "
                "or set filename, e.g. filename: train.jsonl",
                type="invalid_training_data",
                code="invalid_file_name",
                param="filename" if config.get("filename") else "file",
                step=context.step_id,
            )
        report = await asyncio.to_thread(
            check_training_data,
            path,
            min_examples=config.get("min_examples", DEFAULT_MIN_EXAMPLES),
            display_name=shown,
        )
        if not report.ok:
            error = invalid_training_data(report, step=context.step_id)
            error.info.message += " (not uploaded; set check: false to upload it anyway)"
            error.args = (error.info.message,)
            raise error
        context.log.info(
            f"{shown}: {report.examples} {report.format} examples checked, no problems"
        )

    client = OpenAIClient(context)
    tag = context.saved.get(TAG_KEY) if context.resumed else None
    resuming = isinstance(tag, str)
    if not resuming:
        tag = secrets.token_hex(8)
    sent_name = tagged_filename(filename, str(tag))
    saved_start = context.saved.get("started_at")
    # A resumed attempt keeps the earliest start: the listing is paged back to it.
    started_at = saved_start if resuming and isinstance(saved_start, int) else int(time.time())
    settler = Settler(
        context,
        client.read_timeout,
        f"a {purpose} file named {sent_name} ({size} bytes)",
        {"filename": sent_name, "bytes": size, "purpose": purpose},
    )

    async def find() -> ApiResponse | None:
        found = await find_upload(
            client, filename=sent_name, size=size, purpose=purpose, since=started_at
        )
        return await _adopt(client, context, found) if found else None

    if resuming:
        adopted = await settler.find_interrupted(find)
        if adopted is not None:
            return adopted.result(result_format)

    context.log.info(f"uploading {filename} as {sent_name} ({human_size(size)}) for {purpose}")
    fields = form_fields(config)
    sent = time.monotonic()

    async def send() -> ApiResponse:
        # A file object, not bytes: httpx streams it in 64 KB chunks.
        with path.open("rb") as handle:
            response = await client.request(
                "POST",
                "/files",
                files={"file": (sent_name, handle)},
                data=fields,
                retry_unsafe=False,
            )
        context.log.info(
            f"uploaded {filename} as {response.object().get('id')} ({human_size(size)}) "
            f"in {time.monotonic() - sent:.1f}s"
        )
        return response

    response = await settler.send_once(
        send,
        find,
        **{TAG_KEY: tag, "started_at": started_at, "filename": sent_name},
        bytes=size,
        purpose=purpose,
    )
    return response.result(result_format)


UPLOAD_FILE = StepType(
    type="openai.upload_file",
    title="Upload file",
    version="1.0.0",
    run=_run,
    effect="reconcile",
    description=(
        "POST /files: uploads a file from disk (streamed), checking fine-tuning data first; "
        "adopts its own earlier upload instead of uploading twice."
    ),
)

STEP_TYPES: list[StepType] = [UPLOAD_FILE]

__all__ = [
    "CLOCK_SKEW",
    "PURPOSES",
    "STEP_TYPES",
    "UPLOAD_FILE",
    "find_upload",
    "form_fields",
    "tagged_filename",
]
