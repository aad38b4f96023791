"""What the fine-tuning job steps share: which API a job id belongs to, job paths, statuses,
result formats and list paging.

Two APIs serve fine-tuning jobs: today's ``/fine_tuning/jobs`` (ids ``ftjob-...``) and the
2023 ``/fine-tunes`` (ids ``ft-...``), which has no paging, no metadata, no pause/resume
and no checkpoints.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import httpx

from steprun.runtime.errors import StepError

from .client import ApiResponse, OpenAIClient, path_segment

if TYPE_CHECKING:
    from steprun.runtime.step import StepContext

Api = Literal["current", "legacy"]
OPENAI_HOST = "api.openai.com"

CURRENT_PREFIX = "ftjob-"
LEGACY_PREFIX = "ft-"
# Terminal states are the same words in both APIs. Every other status (today's
# validating_files, queued, running, paused; legacy created, pending, running; and any
# status a newer API adds) means "not finished yet".
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
# The providers that still serve the legacy /fine-tunes API.
LEGACY_PROVIDERS = frozenset({"openai", "local"})


def infer_api(
    config: Mapping[str, Any], job_id: str | None = None, context: StepContext | None = None
) -> Api:
    """The API named in the config, else the one the job id belongs to (today's by default).

    ``ftjob-`` ids are today's, ``ft-`` ids legacy; ids of other shapes (an
    OpenAI-compatible server's) are sent to today's API. Only OpenAI (and the embedded
    backend) has the legacy API: another provider's ``ft-`` ids (Together's) are its jobs.
    """
    api = config.get("api")
    if api == "legacy":
        return "legacy"
    provider = context.authorization.provider if context and context.authorization else "openai"
    if api is None and job_id is not None and job_id.startswith(LEGACY_PREFIX):
        return "legacy" if provider in LEGACY_PROVIDERS else "current"
    return "current"


def job_path(api: Api, job_id: str, action: str | None = None) -> str:
    base = "/fine_tuning/jobs/" if api == "current" else "/fine-tunes/"
    path = base + path_segment(job_id)
    return f"{path}/{action}" if action else path


def current_only(api: Api, what: str, step: str) -> None:
    """Refuse an operation the legacy API does not have, before any request."""
    if api == "legacy":
        raise StepError(
            f"{what} exists only in today's fine-tuning API; the legacy /fine-tunes API has "
            "no such operation. Use a job created with today's API (an ftjob- id), or drop "
            "`api: legacy`",
            type="invalid_config",
            code="unsupported_by_legacy_api",
            param="api",
            step=step,
        )


LEGACY_SHUTDOWN_NOTE = (
    "which OpenAI shut down, with its ada, babbage, curie and davinci models, on 2024-01-04"
)


def refuse_legacy_on_openai(base_url: str, step: str | None) -> None:
    """The legacy API answers only a bare 404 at OpenAI since its shutdown: say why instead.

    The legacy steps stay for OpenAI-compatible servers that still speak that API.
    """
    if httpx.URL(base_url).host == OPENAI_HOST:
        raise StepError(
            f"the legacy /v1/fine-tunes API ({LEGACY_SHUTDOWN_NOTE}) no longer exists at "
            f"{OPENAI_HOST}: drop `api: legacy` to use today's /v1/fine_tuning/jobs (babbage-002 "
            "and davinci-002 replace the legacy completion models); api: legacy is kept for "
            "servers that still speak the 2023 API",
            type="invalid_config",
            code="legacy_api_shut_down",
            param="api",
            step=step,
        )


def result_format(config: Mapping[str, Any]) -> str:
    return str(config.get("result_format", "parsed"))


async def list_items(
    client: OpenAIClient,
    path: str,
    params: Mapping[str, Any],
    *,
    all_pages: bool,
) -> ApiResponse:
    """One page of a list endpoint, or with ``all_pages`` every page joined into one list.

    The next page starts ``after`` the previous page's ``last_id`` (checkpoints have one)
    or its last item's id. The joined answer keeps the first page's status and headers,
    holds every item in ``data`` and says ``has_more: false``.
    """
    first = await client.request("GET", path, params=params)
    page = first.object()
    if not all_pages:
        return first
    items: list[Any] = list(page.get("data") or [])
    seen: set[str] = set()
    while page.get("has_more"):
        data = page.get("data") or []
        after = page.get("last_id") or (
            data[-1].get("id") if data and isinstance(data[-1], dict) else None
        )
        if not isinstance(after, str) or after in seen:
            # A server that says has_more but gives no new cursor would loop forever.
            raise StepError(
                f"GET {path} says more items follow but gives no new cursor to fetch them "
                f"(after {after!r}); the server's paging is broken",
                type="invalid_response",
                code="broken_paging",
                request_id=first.request_id,
            )
        seen.add(after)
        page = (await client.request("GET", path, params={**params, "after": after})).object()
        items.extend(page.get("data") or [])
    body = {**first.object(), "data": items, "has_more": False}
    if "last_id" in body:
        body["last_id"] = items[-1].get("id") if items and isinstance(items[-1], dict) else None
    return ApiResponse(
        status=first.status, headers=first.headers, body=body, request_id=first.request_id
    )


def job_summary(job: Mapping[str, Any]) -> str:
    """``ftjob-abc (running, model gpt-4o-mini)``: how logs name a job."""
    return f"{job.get('id')} ({job.get('status')}, model {job.get('model')})"


__all__ = [
    "CURRENT_PREFIX",
    "LEGACY_PREFIX",
    "LEGACY_SHUTDOWN_NOTE",
    "OPENAI_HOST",
    "TERMINAL",
    "Api",
    "current_only",
    "infer_api",
    "job_path",
    "job_summary",
    "list_items",
    "refuse_legacy_on_openai",
    "result_format",
]
