"""Shutdown awareness: base models that shut down, and providers whose fine-tuning closed.

OpenAI's ``GET /models/{model}`` reports a model's ``shutdown_date`` (``YYYY-MM-DD``, or
null when none is announced); a fine-tuned model shuts down with its base. No one can
create an OpenAI fine-tuning job from 2027-01-06 (its deprecations page, 2026-05-07).

"Today" is the provider's: the ``Date`` header of its answer (any HTTP server sends one),
so a machine whose clock is wrong cannot slip a job past a shutdown, and a test sets it
with the embedded backend's clock. Only when the answer has no readable ``Date`` is the
local clock used.

OpenAI's closing applies to OpenAI's API (``api.openai.com``, or a server answering with
its ``openai-version`` header), not to other servers a ``provider: openai`` points at.
``provider: local`` is exempt: the embedded backend reports OpenAI's dates for its models
but serves and trains them whatever the date, so offline flows (and their CI) never start
failing on a calendar date.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from steprun.runtime.errors import StepError
from steprun.runtime.step import StepContext

from .client import ApiResponse, OpenAIClient, path_segment

# The first day on which a provider creates no fine-tuning job any more.
FINE_TUNING_CLOSED: dict[str, date] = {"openai": date(2027, 1, 6)}
EXEMPT_PROVIDERS = frozenset({"local"})
DEFAULT_MIN_DAYS_LEFT = 30
# A job may take up to a day from creation to its end (queueing included): a base model
# that shuts down sooner than that could not finish the job, whatever min_days_left says.
JOB_DAYS = 1
WARN_DAYS = 30
WAYS_OUT = (
    "fine-tune on another provider (azure, nebius, together) or on the local trainer "
    "(provider: local)"
)
# What a request step learned about a model, per runtime HTTP client: a flow that asks a
# model many times looks its shutdown date up once an hour, not once per request.
_CACHE_SECONDS = 3600.0
_seen: weakref.WeakKeyDictionary[httpx.AsyncClient, dict[tuple[str, str], tuple[float, Life]]] = (
    weakref.WeakKeyDictionary()
)


@dataclass(frozen=True)
class Life:
    """A model's shutdown date as its provider reports it, and the provider's today."""

    model: str
    shutdown_date: date | None
    today: date
    # Whether the answer came from OpenAI's API (or a server that answers as it does, like
    # the embedded backend): only there does OpenAI's closing of fine-tuning apply, not on
    # the many OpenAI-compatible servers a `provider: openai` may point at.
    from_openai: bool = False

    @property
    def days_left(self) -> int | None:
        if self.shutdown_date is None:
            return None
        return (self.shutdown_date - self.today).days


def base_of(model: str) -> str | None:
    """The base of a fine-tuned model id (``ft:BASE:org:suffix:id``), or None."""
    parts = model.split(":")
    if len(parts) >= 2 and parts[0] == "ft" and parts[1]:
        return parts[1]
    return None


def provider_today(response: ApiResponse | None) -> date:
    """The provider's date from its ``Date`` header; the local UTC date without one."""
    header = response.headers.get("date") if response is not None else None
    if header:
        try:
            return parsedate_to_datetime(header).astimezone(UTC).date()
        except (TypeError, ValueError):
            pass
    return datetime.now(UTC).date()


def _parse_date(value: Any) -> date | None:
    if not isinstance(value, str):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


async def _lookup(client: OpenAIClient, model: str) -> tuple[date | None, ApiResponse | None]:
    try:
        response = await client.request("GET", "/models/" + path_segment(model))
    except StepError:
        return None, None
    body = response.body if isinstance(response.body, dict) else {}
    return _parse_date(body.get("shutdown_date")), response


async def model_life(client: OpenAIClient, model: str) -> Life:
    """Ask the provider when ``model`` shuts down (its base's date for a fine-tune).

    A provider that cannot say (no such endpoint, an error) gives a Life without a date:
    the request that follows meets the same error and reports it.
    """
    shutdown, response = await _lookup(client, model)
    base = base_of(model)
    if shutdown is None and base is not None:
        shutdown, base_response = await _lookup(client, base)
        response = response or base_response
    return Life(model, shutdown, provider_today(response), _from_openai(client, response))


def _from_openai(client: OpenAIClient, response: ApiResponse | None) -> bool:
    host = httpx.URL(client.base_url).host
    if host == "openai.com" or host.endswith(".openai.com"):
        return True
    # OpenAI's API dates every answer with its version; compatible servers do not.
    return response is not None and "openai-version" in response.headers


async def preflight_create(
    client: OpenAIClient, context: StepContext, model: str, min_days_left: int
) -> None:
    """Refuse, before the create request, a job that cannot or should not be paid for."""
    auth = context.authorization
    provider = auth.provider if auth is not None else "openai"
    if provider in EXEMPT_PROVIDERS:
        return
    life = await model_life(client, model)
    closed = FINE_TUNING_CLOSED.get(provider)
    if closed is not None and life.today >= closed and life.from_openai:
        raise StepError(
            f"{provider} creates no fine-tuning jobs since {closed.isoformat()} (today is "
            f"{life.today.isoformat()}), so no job was created; {WAYS_OUT}",
            type="invalid_request_error",
            code="fine_tuning_closed",
            param="model",
            step=context.step_id,
        )
    left = life.days_left
    if life.shutdown_date is None or left is None:
        return
    needed = max(min_days_left, JOB_DAYS)
    if left < needed:
        reason = (
            "before the job could finish"
            if left < JOB_DAYS
            else f"within min_days_left ({min_days_left})"
        )
        raise StepError(
            f"{model} shuts down on {life.shutdown_date.isoformat()}, {left} day(s) from "
            f"today ({life.today.isoformat()}), {reason}, so no job was created; "
            f"{WAYS_OUT}, or lower min_days_left",
            type="invalid_request_error",
            code="model_shutting_down",
            param="model",
            step=context.step_id,
        )
    context.log.info(
        f"{model} shuts down on {life.shutdown_date.isoformat()} ({left} days left); "
        "its fine-tunes go with it"
    )


async def warn_if_retiring(client: OpenAIClient, context: StepContext, model: str) -> None:
    """Log a warning when a fine-tuned model's base shuts down within 30 days."""
    auth = context.authorization
    if base_of(model) is None or auth is None or auth.provider in EXEMPT_PROVIDERS:
        return
    cache = _seen.setdefault(context.http, {})
    key = (client.base_url, model)
    now = time.monotonic()
    hit = cache.get(key)
    if hit is not None and now - hit[0] < _CACHE_SECONDS:
        life = hit[1]
    else:
        life = await model_life(client, model)
        cache[key] = (now, life)
    left = life.days_left
    if life.shutdown_date is not None and left is not None and left <= WARN_DAYS:
        when = f"{left} days left" if left >= 0 else f"{-left} days ago"
        context.log.warn(
            f"{model} shuts down with its base {base_of(model)} on "
            f"{life.shutdown_date.isoformat()} ({when}): record its answers and move off it "
            "(see examples/move_off_openai.yaml)"
        )


__all__ = [
    "DEFAULT_MIN_DAYS_LEFT",
    "EXEMPT_PROVIDERS",
    "FINE_TUNING_CLOSED",
    "JOB_DAYS",
    "WARN_DAYS",
    "Life",
    "base_of",
    "model_life",
    "preflight_create",
    "provider_today",
    "warn_if_retiring",
]
