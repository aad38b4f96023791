"""Wait for a fine-tuning job to finish, reporting its progress on the way."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from steprun.runtime.durations import format_duration, parse_duration
from steprun.runtime.errors import StepError
from steprun.runtime.step import StepContext, StepType

from .client import ApiResponse, OpenAIClient, OutcomeUnknown
from .finetuning import Api, infer_api, job_path, result_format

DEFAULT_MAX_WAIT = "24h"
DEFAULT_POLL_INTERVAL = "15s"
DEFAULT_MAX_POLL_INTERVAL = "2m"
# A wait is never silent for longer than this: between polls (which may be minutes apart)
# a line says how long it has waited, the status, the latest metrics and the ETA.
DEFAULT_HEARTBEAT = "30s"
# The embedded backend's jobs take seconds, not hours: poll it accordingly.
LOCAL_POLL_INTERVAL = "1s"
LOCAL_MAX_POLL_INTERVAL = "5s"
# Each poll that finds the job unfinished waits this much longer than the last one, up to
# max_poll_interval: quick feedback for short jobs, few requests for long ones.
BACKOFF = 1.5
# A wait can last hours; a network blip must not end it. This many failed polls in a row
# (each already retried by the client) do.
MAX_FAILED_POLLS = 5
_METRICS = (
    "train_loss",
    "train_mean_token_accuracy",
    "valid_loss",
    "valid_mean_token_accuracy",
    "full_valid_loss",
    "full_valid_mean_token_accuracy",
)


def _transient(error: StepError) -> bool:
    return (
        isinstance(error, OutcomeUnknown)
        or error.status == 429
        or error.type in ("connection_error", "timeout")
    )


def _metrics_text(data: Mapping[str, Any]) -> str:
    parts = []
    step, total = data.get("step"), data.get("total_steps")
    if step is not None:
        parts.append(f"step {step}/{total}" if total is not None else f"step {step}")
    parts += [
        f"{key} {value:.4g}"
        for key in _METRICS
        if isinstance(value := data.get(key), int | float) and not isinstance(value, bool)
    ]
    return ", ".join(parts)


async def _latest_event(client: OpenAIClient, api: Api, job: Mapping[str, Any]) -> str:
    """The newest metrics of a running job, else its newest message; "" when none."""
    if api == "legacy":
        # A legacy job carries its events, oldest first; they are all messages.
        events = [e for e in job.get("events") or [] if isinstance(e, dict)]
        return str(events[-1].get("message", "")) if events else ""
    if job.get("status") != "running":
        return ""
    page = await client.request(
        "GET", job_path(api, str(job["id"]), "events"), params={"limit": 20}
    )
    events = [e for e in page.object().get("data") or [] if isinstance(e, dict)]
    for event in events:  # newest first
        if event.get("type") == "metrics" and isinstance(event.get("data"), dict):
            text = _metrics_text(event["data"])
            if text:
                return text
    return str(events[0].get("message", "")) if events else ""


def _progress(job: Mapping[str, Any], latest: str) -> str:
    parts = [f"{job.get('id')}: {job.get('status')}"]
    if isinstance(job.get("trained_tokens"), int):
        parts.append(f"{job['trained_tokens']:,} trained tokens")
    if latest:
        parts.append(latest)
    return " · ".join(parts)


def _eta(job: Mapping[str, Any], now: float) -> str:
    """`` · ETA 14:05:10 (in 3m 20s)`` from the job's estimated_finish, when it has one."""
    finish = job.get("estimated_finish")
    if not isinstance(finish, int | float) or isinstance(finish, bool) or finish <= 0:
        return ""
    clock = time.strftime("%H:%M:%S", time.localtime(finish))
    left = finish - now
    return f" · ETA {clock} (in {format_duration(left)})" if left > 0 else f" · ETA {clock}"


def _reached(status: Any, until: str) -> bool:
    """Whether the wait is over: a finished job, or a job already running with until: running."""
    if status == "succeeded":
        return True
    return until == "running" and status == "running"


def _failure(job: dict[str, Any], api: Api, response: ApiResponse, step: str) -> StepError:
    job_id = job.get("id")
    if job.get("status") == "cancelled":
        return StepError(
            f"fine-tuning job {job_id} was cancelled before it finished",
            type="fine_tuning_job_cancelled",
            code="cancelled",
            request_id=response.request_id,
            step=step,
            extra={"job": job},
        )
    found = job.get("error")
    error: dict[str, Any] = found if isinstance(found, dict) else {}
    message = error.get("message")
    if not message and api == "legacy":
        # Legacy jobs have no `error`; the reason is in their last error event.
        events = [e for e in job.get("events") or [] if isinstance(e, dict)]
        errors = [e for e in events if e.get("level") == "error"] or events[-1:]
        message = errors[-1].get("message") if errors else None
    return StepError(
        f"fine-tuning job {job_id} failed: {message or 'the API gave no reason'}",
        type="fine_tuning_job_failed",
        code=str(error["code"]) if error.get("code") else None,
        param=str(error["param"]) if error.get("param") else None,
        request_id=response.request_id,
        step=step,
        extra={"job": job},
    )


async def wait_for_fine_tuning_job(config: dict[str, Any], context: StepContext) -> Any:
    job_id = config["job_id"]
    api = infer_api(config, job_id, context)
    max_wait = parse_duration(config.get("max_wait", DEFAULT_MAX_WAIT))
    local = context.authorization is not None and context.authorization.is_local
    interval = parse_duration(
        config.get("poll_interval", LOCAL_POLL_INTERVAL if local else DEFAULT_POLL_INTERVAL)
    )
    longest = config.get(
        "max_poll_interval", LOCAL_MAX_POLL_INTERVAL if local else DEFAULT_MAX_POLL_INTERVAL
    )
    max_interval = max(interval, parse_duration(longest))
    # A wall-clock deadline, recorded once: a resumed run keeps the original one instead of
    # granting a fresh max_wait.
    deadline = context.saved.get("wait_deadline")
    if not isinstance(deadline, int | float):
        deadline = time.time() + max_wait
        await context.checkpoint(wait_deadline=deadline)
    client = OpenAIClient(context)
    heartbeat = parse_duration(config.get("heartbeat", DEFAULT_HEARTBEAT))
    until = config.get("until", "terminal")
    started = time.time()
    last_line = ""
    said_at = started  # when the last info line went out
    job: dict[str, Any] | None = None
    line = ""
    failed_polls = 0

    def say(text: str, *, force: bool) -> None:
        """One progress line: at info when it says something new or the heartbeat is due
        (a terminal shows it as one updating line), else at debug."""
        nonlocal last_line, said_at
        now = time.time()
        elapsed = format_duration(max(now - started, 0.001))
        eta = _eta(job, now) if job else ""
        due = force or text != last_line or now - said_at >= heartbeat - 0.05
        if due:
            context.log.progress(f"{text} · {elapsed} waited{eta}")
            said_at = now
        else:
            context.log.debug(f"{text} · {elapsed} waited{eta}")
        last_line = text

    while True:
        try:
            response = await client.request("GET", job_path(api, job_id))
            job = response.object()
            latest = await _latest_event(client, api, job)
        except StepError as exc:
            if not _transient(exc) or failed_polls + 1 >= MAX_FAILED_POLLS:
                raise
            failed_polls += 1
            context.log.warn(
                f"could not check fine-tuning job {job_id} ({exc.message}); trying again at "
                f"the next poll ({failed_polls} of {MAX_FAILED_POLLS - 1} failed polls allowed)"
            )
        else:
            failed_polls = 0
            line = _progress(job, latest)
            status = job.get("status")
            say(line, force=False)
            if _reached(status, until):
                return response.result(result_format(config))
            if status in ("failed", "cancelled"):
                raise _failure(job, api, response, context.step_id)
        remaining = deadline - time.time()
        if remaining <= 0:
            status = job.get("status") if job else "unknown"
            raise StepError(
                f"fine-tuning job {job_id} did not finish within "
                f"{format_duration(max_wait)} (last status: {status}); it keeps running: "
                "wait for it again, or cancel it",
                type="timeout",
                code="max_wait_exceeded",
                step=context.step_id,
                extra={"job": job},
            )
        # Until the next poll, a heartbeat at least every `heartbeat` seconds: polls of a
        # queued OpenAI job are minutes apart, and a wait must never look hung.
        until_poll = min(interval, remaining)
        while until_poll > 0:
            chunk = min(until_poll, heartbeat)
            await context.sleep(chunk)
            until_poll -= chunk
            if line and until_poll > 0:
                say(line, force=True)
        interval = min(interval * BACKOFF, max_interval)


STEP_TYPES: list[StepType] = [
    StepType(
        type="openai.wait_for_fine_tuning_job",
        title="Wait for fine-tuning job",
        version="1.0.0",
        run=wait_for_fine_tuning_job,
        effect="none",
        description=(
            "Poll a fine-tuning job until it succeeds (or, with until: running, until it "
            "runs); the output is the job. A failed or cancelled job, or max_wait passing, "
            "takes the error exit. A progress line at least every heartbeat (30s)."
        ),
    ),
]

__all__ = ["STEP_TYPES", "wait_for_fine_tuning_job"]
