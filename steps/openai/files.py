"""``openai.upload_file``: ``POST /files`` (multipart), streamed from disk, never twice.

A fine-tuning file is checked first (:func:`check_training_data`) unless ``check: false``:
uploading a file the fine-tuning job will reject only wastes the upload and the wait.

The upload has an effect, so it is never re-sent blindly. Before sending, the step
records when it started (``context.checkpoint``). When the outcome is unknown (the
connection dropped after the file went out, a 5xx answer) and when a run resumes an
interrupted attempt, it lists the files and adopts its own earlier upload (same file name,
size and purpose, created since that start) instead of uploading a second copy.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from steprun.runtime.errors import StepError
from steprun.runtime.step import StepContext, StepType
from steprun.steps.openai.client import (
    ApiResponse,
    OpenAIClient,
    OutcomeUnknown,
    path_segment,
    retry_delay,
)
from steprun.steps.openai.training_data import (
    DEFAULT_MIN_EXAMPLES,
    check_training_data,
    invalid_training_data,
)

# Every purpose CreateFileRequest lists in the current spec.
PURPOSES = ("assistants", "batch", "fine-tune", "vision", "user_data", "evals")
# The server stamps created_at with its own clock; ours may be a little ahead. A match
# also needs the same name, size and purpose, so the margin cannot adopt a stranger's file.
CLOCK_SKEW = 60
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
    """This step's earlier uploads: files with the same name, size and purpose created at
    or after ``since`` (minus the clock margin), oldest first."""
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
                and isinstance(item.get("created_at"), int)
                and item["created_at"] >= threshold
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
    return sorted(found, key=lambda item: (item["created_at"], str(item.get("id"))))


async def _adopt(
    client: OpenAIClient,
    context: StepContext,
    found: list[dict[str, Any]],
    why: str,
) -> ApiResponse:
    first = found[0]
    context.log.info(
        f"adopting {first.get('id')} ({first.get('filename')}, {human_size(first['bytes'])}): "
        f"{why}; not uploading it again"
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

    async def earlier_uploads(since: int) -> list[dict[str, Any]]:
        return await find_upload(client, filename=filename, size=size, purpose=purpose, since=since)

    if context.resumed and isinstance(context.saved.get("started_at"), int):
        since = context.saved["started_at"]
        found = await earlier_uploads(since)
        if found:
            adopted = await _adopt(client, context, found, "uploaded by the interrupted attempt")
            return adopted.result(result_format)
        started_at = since  # keep the earliest start: a late upload of it still matches
    else:
        started_at = int(time.time())
    await context.checkpoint(started_at=started_at, filename=filename, bytes=size, purpose=purpose)

    fields = form_fields(config)
    resends = 0
    while True:
        context.log.info(f"uploading {filename} ({human_size(size)}) for {purpose}")
        sent = time.monotonic()
        try:
            # A file object, not bytes: httpx streams it in 64 KB chunks.
            with path.open("rb") as handle:
                response = await client.request(
                    "POST",
                    "/files",
                    files={"file": (filename, handle)},
                    data=fields,
                    retry_unsafe=False,
                )
        except OutcomeUnknown as exc:
            found = await earlier_uploads(started_at)
            if found:
                adopted = await _adopt(
                    client, context, found, "the upload arrived although its answer was lost"
                )
                return adopted.result(result_format)
            if resends >= client.max_retries:
                raise
            delay = retry_delay(resends)
            resends += 1
            context.log.warn(
                f"{exc.message}; the file is not on the server, uploading again in "
                f"{delay:.1f}s ({resends} of {client.max_retries})"
            )
            await context.sleep(delay)
            continue
        uploaded = response.object()
        context.log.info(
            f"uploaded {filename} as {uploaded.get('id')} ({human_size(size)}) "
            f"in {time.monotonic() - sent:.1f}s"
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

__all__ = ["CLOCK_SKEW", "PURPOSES", "STEP_TYPES", "UPLOAD_FILE", "find_upload", "form_fields"]
