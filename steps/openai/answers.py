"""What a request gives back: the answer, the unknown outcome, and their small helpers."""

from __future__ import annotations

import platform
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any
from urllib.parse import quote

import httpx

from steprun.runtime.errors import StepError


class OutcomeUnknown(StepError):
    """The request may have reached the server and taken effect, but no usable answer came.

    Raised for a connection that dropped or timed out after the request was sent, for a
    5xx answer, and for a 2xx answer whose body cannot be read. A step whose request has an
    effect (creating a job, uploading a file) catches it and looks for that effect before
    sending the request again.
    """


@cache
def user_agent() -> str:
    from importlib import metadata

    try:
        version = metadata.version("steprun")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return f"steprun/{version} httpx/{httpx.__version__} python/{platform.python_version()}"


def path_segment(value: str) -> str:
    """``value`` percent-encoded as one URL path segment (a job id, a model name).

    Like the SDK's ``path_template``: ``/`` is encoded so an id cannot add segments, and
    ``.``/``..`` are refused because URL normalisation would turn them into a parent path.
    """
    encoded = quote(str(value), safe="!$&'()*+,;=:@")
    if encoded in ("", ".", ".."):
        raise StepError(
            f"{value!r} cannot be used as an id in a URL path; expected an id such as "
            "'ftjob-abc123'",
            type="invalid_config",
            code="invalid_id",
        )
    return encoded


@dataclass(frozen=True)
class ApiResponse:
    """A successful answer: status, lower-case headers, the parsed body and the request id."""

    status: int
    headers: dict[str, str]
    body: Any
    request_id: str | None

    def result(self, result_format: str = "parsed") -> Any:
        """The step output: ``parsed`` is the API object, ``raw`` is status, headers and body."""
        if result_format == "raw":
            return {"status": self.status, "headers": dict(self.headers), "body": self.body}
        if result_format == "parsed":
            return self.body
        raise StepError(
            f"result_format {result_format!r} is unknown; use 'parsed' or 'raw'",
            type="invalid_config",
            param="result_format",
        )

    def object(self) -> dict[str, Any]:
        """The body as a JSON object; a StepError when the server sent anything else."""
        if isinstance(self.body, dict):
            return self.body
        raise StepError(
            f"expected a JSON object in the response, found {json_kind(self.body)}; "
            "the server is not answering like the OpenAI API (check base_url)",
            type="invalid_response",
            code="unexpected_body",
            status=self.status,
            request_id=self.request_id,
        )


QueryItem = tuple[str, str | int | float | bool | None]


def query_items(params: Mapping[str, Any] | None) -> list[QueryItem] | None:
    if not params:
        return None
    items: list[QueryItem] = []

    def add(name: str, value: Any) -> None:
        if value is None:
            return
        if isinstance(value, Mapping):
            # OpenAPI style: deepObject, explode: true (the `metadata` filter of list jobs).
            for key, item in value.items():
                add(f"{name}[{key}]", item)
        elif isinstance(value, bool):
            items.append((name, "true" if value else "false"))
        elif isinstance(value, Sequence) and not isinstance(value, str):
            for item in value:
                add(name, item)
        else:
            items.append((name, value if isinstance(value, int | float) else str(value)))

    for name, value in params.items():
        add(name, value)
    return items


def opt_str(value: Any, scrub: Callable[[str], str]) -> str | None:
    return None if value is None else scrub(str(value))


def mime(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def json_kind(value: Any) -> str:
    if value is None:
        return "no body"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "a JSON array"
    return f"a JSON {type(value).__name__}"


__all__ = [
    "ApiResponse",
    "OutcomeUnknown",
    "QueryItem",
    "json_kind",
    "mime",
    "opt_str",
    "path_segment",
    "query_items",
    "user_agent",
]
