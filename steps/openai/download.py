"""``openai.download_file``: ``GET /files/{id}/content``, as rows a flow can use or saved.

A job's ``step_metrics.csv`` (or the legacy ``compiled_results.csv``) becomes a list of
rows, one object per line, numbers as numbers, empty cells null; a JSONL file a list of its
objects; other text a string. ``save_to`` writes the bytes as they are (binary-safe) to a
path instead, through a temporary file renamed into place once the whole file arrived, so
a cut download never leaves half a file under that name. The content is streamed and
counted as it arrives: more than ``max_bytes`` ends the step, nothing kept.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import httpx

from steprun.runtime.errors import StepError
from steprun.runtime.step import StepContext, StepType

from .client import OpenAIClient, path_segment

# In memory a flow's merge field holds the rows; on disk OpenAI's own limit for a file.
MAX_PARSED_BYTES = 10 * 1024 * 1024
MAX_SAVED_BYTES = 512 * 1024 * 1024
_INTEGER = re.compile(r"-?\d+")
_DECIMAL = re.compile(r"-?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")
_TEXT_SUFFIXES = {".csv": "csv", ".jsonl": "jsonl", ".json": "json", ".txt": "text"}


class _Downloader(OpenAIClient):
    """The step pack's client, reading an answer as bytes as they arrive."""

    async def open(self, path: str) -> httpx.Response:
        # A GET has no effect: it may be retried like any read.
        return await self._send("GET", path, retry_unsafe=True, stream=True)


def _too_big(file_id: str, limit: int, step: str) -> StepError:
    return StepError(
        f"the content of {file_id} is larger than max_bytes ({limit} bytes) and was not kept; "
        "raise max_bytes, or give save_to to write it to a file",
        type="invalid_response",
        code="file_too_large",
        param="max_bytes",
        step=step,
    )


def _cell(value: str) -> Any:
    """A CSV cell as JSON: an integer or a (finite) number when it is one, null when empty."""
    if value == "":
        return None
    if _INTEGER.fullmatch(value):
        return int(value)
    if _DECIMAL.fullmatch(value):
        number = float(value)
        if math.isfinite(number):
            return number
    return value


def _format(config: dict[str, Any], filename: str | None, content_type: str) -> str:
    wanted = str(config.get("format", "auto"))
    if wanted != "auto":
        return wanted
    suffix = Path(filename or "").suffix.lower()
    if suffix in _TEXT_SUFFIXES:
        return _TEXT_SUFFIXES[suffix]
    if "csv" in content_type:
        return "csv"
    return "text" if content_type.startswith("text/") else "bytes"


def parse_content(content: bytes, kind: str, file_id: str, step: str) -> Any:
    """The rows (CSV, JSONL), document (JSON) or text of a downloaded file."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise StepError(
            f"the content of {file_id} is not UTF-8 text, so it cannot be read as {kind}; "
            "give save_to to write its bytes to a file",
            type="invalid_response",
            code="binary_content",
            param="format",
            step=step,
        ) from None
    if kind == "csv":
        return [
            {k: _cell(v or "") for k, v in row.items()} for row in csv.DictReader(io.StringIO(text))
        ]
    if kind == "jsonl":
        rows = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise StepError(
                    f"line {number} of {file_id} is not JSON ({exc.msg}); use format: text to "
                    "read it as it is",
                    type="invalid_response",
                    code="invalid_jsonl",
                    param="format",
                    step=step,
                ) from None
        return rows
    if kind == "json":
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise StepError(
                f"{file_id} is not JSON ({exc.msg} at line {exc.lineno}); use format: text",
                type="invalid_response",
                code="invalid_json",
                param="format",
                step=step,
            ) from None
    return text


async def _run(config: dict[str, Any], context: StepContext) -> Any:
    file_id = str(config["file_id"])
    step = context.step_id
    client = _Downloader(context)
    described = (await client.request("GET", f"/files/{path_segment(file_id)}")).object()
    filename = described.get("filename")
    save_to = config.get("save_to")
    limit = int(config.get("max_bytes") or (MAX_SAVED_BYTES if save_to else MAX_PARSED_BYTES))
    digest = hashlib.sha256()
    size = 0
    response = await client.open(f"/files/{path_segment(file_id)}/content")
    target = context.path(save_to) if save_to else None
    chunks: list[bytes] = []
    temporary: Path | None = None
    try:
        sink = None
        if target is not None:
            target.parent.mkdir(parents=True, exist_ok=True)
            handle, name = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
            temporary = Path(name)
            sink = os.fdopen(handle, "wb")
        try:
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > limit:
                    raise _too_big(file_id, limit, step)
                digest.update(chunk)
                if sink is not None:
                    sink.write(chunk)
                else:
                    chunks.append(chunk)
        finally:
            if sink is not None:
                sink.close()
        if target is not None and temporary is not None:
            temporary.replace(target)
            temporary = None
    except httpx.HTTPError as exc:
        raise StepError(
            f"the download of {file_id} broke off after {size} bytes ({type(exc).__name__}); "
            "nothing was kept, run the step again",
            type="connection_error",
            code="download_incomplete",
            step=step,
        ) from None
    finally:
        await response.aclose()
        if temporary is not None:
            temporary.unlink(missing_ok=True)
    output: dict[str, Any] = {
        "id": file_id,
        "filename": filename,
        "bytes": size,
        "sha256": digest.hexdigest(),
    }
    if target is not None:
        output["path"] = str(target)
        context.log.info(f"saved {file_id} ({size} bytes) to {target}")
        return output
    content = b"".join(chunks)
    kind = _format(config, filename, response.headers.get("content-type", ""))
    if kind == "bytes":
        raise StepError(
            f"{file_id} ({filename}) is not a text file this step can read; give save_to to "
            "write it to a file, or format: text",
            type="invalid_config",
            code="binary_content",
            param="save_to",
            step=step,
        )
    parsed = parse_content(content, kind, file_id, step)
    output["format"] = kind
    output["rows" if kind in ("csv", "jsonl") else "content"] = parsed
    context.log.info(f"downloaded {file_id} ({size} bytes, {kind})")
    return output


DOWNLOAD_FILE = StepType(
    type="openai.download_file",
    title="Download file",
    version="1.0.0",
    run=_run,
    effect="none",
    description=(
        "Read a file's content (GET /files/{id}/content): CSV and JSONL as rows, JSON as a "
        "document, text as text, or the bytes saved to a path; size-limited."
    ),
)

STEP_TYPES: list[StepType] = [DOWNLOAD_FILE]

__all__ = ["DOWNLOAD_FILE", "MAX_PARSED_BYTES", "MAX_SAVED_BYTES", "STEP_TYPES", "parse_content"]
