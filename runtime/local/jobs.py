"""The life of a fine-tuning job, derived from the clock.

Nothing runs in the background. A job is planned when it is created (how long it takes,
how many steps and epochs, whether it will fail) and every read computes where it is
*now*: its status, the events emitted so far, the checkpoints reached. This behaves the
same under uvicorn and in-process under httpx's ASGITransport (which runs the app only
while a request is being answered), and a job that was running when the server stopped
carries on after a restart with no extra code.

Progress is measured in *work seconds*: wall-clock time since creation minus the time
spent paused. The plan places each moment of a job at a work offset, as a fraction of
its duration (``job_seconds`` when it was created):

    0.00        created; validating files
    0.10        files validated; queued
    0.20        training starts; running
    0.20-0.90   a metrics event per step; a checkpoint at the end of each epoch
    0.92-0.98   model created; usage policy evaluation
    1.00        succeeded

:func:`settle` is called before every request: when a job's work reaches its end (or its
planned failure) it records the final state, writes the result file and registers the
fine-tuned model.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from . import ids
from .records import FileRecord, JobRecord, ModelRecord, Pause
from .results import metrics, result_file
from .state import Store
from .trainer import lifecycle as real

VALIDATED = 0.10
STARTED = 0.20
TRAINED = 0.90
# The metrics events of a long job are thinned to about this many; the result file
# still has every step.
MAX_METRICS_EVENTS = 200
TERMINAL = ("succeeded", "failed", "cancelled")
KEPT_CHECKPOINTS = 3


@dataclass(frozen=True, slots=True)
class Moment:
    """Something that happens to a job at a work offset: an event, maybe a new status."""

    work: float
    key: str  # unique within the job; event ids derive from it
    message: str
    level: str = "info"
    type: str = "message"
    data: dict[str, Any] | None = None
    status: str | None = None


@dataclass(frozen=True, slots=True)
class Event:
    id: str
    created_at: float
    level: str
    message: str
    type: str
    data: dict[str, Any] | None


# --- the clock -------------------------------------------------------------------------------


def work_done(job: JobRecord, now: float) -> float:
    """Work seconds a job has had by ``now`` (frozen once it ended)."""
    if job.ended_work is not None:
        return job.ended_work
    paused = sum(((p.until if p.until is not None else now) - p.since) for p in job.pauses)
    return max(0.0, now - job.created_at - paused)


def wall_time(job: JobRecord, work: float) -> float:
    """When (wall clock) a job reached a work offset, pauses before it included."""
    paused = sum(
        (p.until - p.since) for p in job.pauses if p.until is not None and p.work_at < work
    )
    return job.created_at + work + paused


def is_paused(job: JobRecord) -> bool:
    if real.is_real(job):
        return real.status(job) == "paused"
    return job.status is None and bool(job.pauses) and job.pauses[-1].until is None


def failure_work(job: JobRecord) -> float | None:
    if job.failure is None:
        return None
    return float(job.failure["at"]) * job.duration


def end_work(job: JobRecord) -> float:
    """The work offset at which the job ends as planned (success or planned failure)."""
    if real.is_real(job):
        return 0.0  # it ends when its training does: look at every settle
    failing = failure_work(job)
    return failing if failing is not None else job.duration


def step_work(job: JobRecord, step: int) -> float:
    return job.duration * (STARTED + (TRAINED - STARTED) * step / job.total_steps)


def reported_steps(job: JobRecord) -> Iterator[int]:
    stride = max(1, math.ceil(job.total_steps / MAX_METRICS_EVENTS))
    for step in range(1, job.total_steps + 1):
        if step % stride == 0 or step == 1 or step == job.total_steps:
            yield step


def epoch_steps(job: JobRecord) -> list[int]:
    """The step that ends each epoch."""
    return [
        min(job.total_steps, epoch * job.steps_per_epoch) for epoch in range(1, job.n_epochs + 1)
    ]


def checkpoint_steps(job: JobRecord) -> list[int]:
    """The epochs that leave a checkpoint: OpenAI keeps those of the last 3, the final one
    being the fine-tuned model itself."""
    return epoch_steps(job)[-KEPT_CHECKPOINTS:]


# --- the plans -------------------------------------------------------------------------------


def _current_plan(job: JobRecord) -> list[Moment]:
    duration = job.duration
    validating = f"Validating training file: {job.training_file}"
    if job.validation_file:
        validating += f" and validation file: {job.validation_file}"
    moments = [
        Moment(0.0, "created", f"Created fine-tuning job: {job.id}", status="validating_files"),
        Moment(0.0, "validating", validating),
        Moment(
            VALIDATED * duration,
            "validated",
            "Files validated, moving job to queued state",
            status="queued",
        ),
        Moment(STARTED * duration, "started", "Fine-tuning job started", status="running"),
    ]
    checkpoints = set(checkpoint_steps(job)[:-1])
    for step in reported_steps(job):
        values = metrics(job, step)
        message = f"Step {step}/{job.total_steps}: training loss={values['train_loss']:.2f}"
        if "valid_loss" in values:
            message += f", validation loss={values['valid_loss']:.2f}"
        data: dict[str, Any] = {**values, "step": step, "total_steps": job.total_steps}
        moments.append(
            Moment(step_work(job, step), f"step-{step}", message, type="metrics", data=data)
        )
    for step in sorted(checkpoints):
        moments.append(
            Moment(step_work(job, step), f"checkpoint-{step}", f"Checkpoint created at step {step}")
        )
    moments += [
        Moment(0.92 * duration, "model", "New fine-tuned model created"),
        Moment(0.94 * duration, "moderation", "Evaluating model against our usage policies"),
        Moment(
            0.98 * duration,
            "moderated",
            "Usage policy evaluations completed, model is now enabled for sampling",
        ),
        Moment(duration, "succeeded", "The job has successfully completed", status="succeeded"),
    ]
    return moments


def _legacy_plan(job: JobRecord) -> list[Moment]:
    duration = job.duration
    cost = job.tokens_per_epoch * job.n_epochs / 1000 * float(job.extra.get("price", 0.003))
    moments = [
        Moment(0.0, "created", f"Created fine-tune: {job.id}", status="pending"),
        Moment(0.05 * duration, "cost", f"Fine-tune costs ${cost:.2f}"),
        Moment(VALIDATED * duration, "enqueued", "Fine-tune enqueued. Queue number: 0"),
        Moment(STARTED * duration, "started", "Fine-tune started", status="running"),
    ]
    for epoch, step in enumerate(epoch_steps(job), 1):
        moments.append(
            Moment(
                step_work(job, step), f"epoch-{epoch}", f"Completed epoch {epoch}/{job.n_epochs}"
            )
        )
    moments += [
        Moment(duration, "model", f"Uploaded model: {job.fine_tuned_name}"),
        Moment(duration, "results", f"Uploaded result file: {job.extra['result_file']}"),
        Moment(duration, "succeeded", "Fine-tune succeeded", status="succeeded"),
    ]
    return moments


_PLAN = "_planned_moments"


def plan(job: JobRecord) -> list[Moment]:
    """Every moment of the job as planned, in order (a cancel or failure cuts it short).

    Made once per job and kept on the record, outside its dataclass fields (so never saved
    or compared): everything a plan depends on is fixed when the job is created, and
    building it (a metrics event per training step) was most of the cost of every retrieve
    and events request. Callers must not modify the list.
    """
    cached: list[Moment] | None = job.__dict__.get(_PLAN)
    if cached is None:
        moments = _current_plan(job) if job.api == "fine_tuning" else _legacy_plan(job)
        cached = job.__dict__[_PLAN] = sorted(moments, key=lambda m: m.work)
    return cached


def _ending_moments(job: JobRecord) -> list[Moment]:
    """The events of a job that failed or was cancelled, at the moment it ended."""
    work = job.ended_work or 0.0
    if job.status == "cancelled":
        message = "Fine-tuning job cancelled" if job.api == "fine_tuning" else "Fine-tune cancelled"
        return [Moment(work, "cancelled", message)]
    assert job.error is not None
    if job.api == "fine_tuning":
        return [Moment(work, "failed", job.error["message"], level="error")]
    return [
        Moment(work, "failure", job.error["message"], level="error"),
        Moment(work, "failed", "Fine-tune failed", level="error"),
    ]


def events(job: JobRecord, now: float) -> list[Event]:
    """Events emitted by ``now``, oldest first."""
    if real.is_real(job):
        return [
            Event(event_id, e["created_at"], e["level"], e["message"], e["type"], e["data"])
            for event_id, e in real.events(job, now)
        ]
    done = work_done(job, now)
    timeline: list[tuple[float, Moment]] = []
    for moment in plan(job):
        if moment.work > done:
            break
        timeline.append((wall_time(job, moment.work), moment))
    paused, resumed = (
        ("Fine-tuning job paused", "Fine-tuning job resumed")
        if job.api == "fine_tuning"
        else ("Fine-tune paused", "Fine-tune resumed")
    )
    for number, pause in enumerate(job.pauses):
        timeline.append((pause.since, Moment(pause.work_at, f"pause-{number}", paused)))
        if pause.until is not None:
            timeline.append((pause.until, Moment(pause.work_at, f"resume-{number}", resumed)))
    if job.status in ("failed", "cancelled"):
        ended = job.finished_at if job.finished_at is not None else now
        timeline += [(ended, moment) for moment in _ending_moments(job)]
    # A stable sort: moments at the same instant keep their planned order.
    timeline.sort(key=lambda item: item[0])
    return [
        Event(
            id=ids.derived_id("ftevent-", job.id, moment.key),
            created_at=when,
            level=moment.level,
            message=moment.message,
            type=moment.type,
            data=moment.data,
        )
        for when, moment in timeline
    ]


def status(job: JobRecord, now: float) -> str:
    if job.status is not None:
        return job.status
    if real.is_real(job):
        return real.status(job)
    if is_paused(job):
        return "paused"
    done = work_done(job, now)
    current = "validating_files" if job.api == "fine_tuning" else "pending"
    for moment in plan(job):
        if moment.work > done:
            break
        if moment.status is not None and moment.status != "succeeded":
            current = moment.status
    return current


@dataclass(frozen=True, slots=True)
class Checkpoint:
    id: str
    created_at: float
    step: int
    model: str
    metrics: dict[str, float]


def checkpoints(job: JobRecord, now: float) -> list[Checkpoint]:
    """One checkpoint per finished epoch of the last 3, oldest first; the last one is the
    model itself."""
    if real.is_real(job):
        return [
            Checkpoint(
                id=ids.derived_id("ftckpt_", job.id, c["step"]),
                created_at=c["created_at"],
                step=c["step"],
                model=c["model"],
                metrics=c["metrics"],
            )
            for c in real.checkpoints(job)
        ]
    done = work_done(job, now)
    found = []
    ends = checkpoint_steps(job)
    for step in ends:
        work = step_work(job, step)
        if work > done:
            break
        if step == ends[-1] and job.status != "succeeded":
            # The final checkpoint is the fine-tuned model, which exists only on success.
            break
        name = (
            job.fine_tuned_name if step == ends[-1] else f"{job.fine_tuned_name}:ckpt-step-{step}"
        )
        values = metrics(job, step)
        full = {
            "step": values["step"],
            "train_loss": values["train_loss"],
            "train_mean_token_accuracy": values["train_mean_token_accuracy"],
        }
        if "valid_loss" in values:
            full |= {
                "valid_loss": values["valid_loss"],
                "valid_mean_token_accuracy": values["valid_mean_token_accuracy"],
                "full_valid_loss": values["valid_loss"],
                "full_valid_mean_token_accuracy": values["valid_mean_token_accuracy"],
            }
        found.append(
            Checkpoint(
                id=ids.derived_id("ftckpt_", job.id, step),
                created_at=wall_time(job, work),
                step=step,
                model=name,
                metrics=full,
            )
        )
    return found


# --- changing state --------------------------------------------------------------------------


def settle(store: Store, job: JobRecord, now: float) -> bool:
    """Record the end of a job whose work is done; True when the job changed."""
    if real.is_real(job):
        return real.settle(store, job, now)
    if job.status is not None or is_paused(job):
        return False
    done = work_done(job, now)
    failing = failure_work(job)
    if failing is not None and done >= failing:
        assert job.failure is not None
        job.status = "failed"
        job.error = dict(job.failure["error"])
        job.ended_work = failing
        job.finished_at = wall_time(job, failing)
        store.save(job)
        return True
    if done < job.duration:
        return False
    job.status = "succeeded"
    job.ended_work = job.duration
    job.finished_at = wall_time(job, job.duration)
    job.fine_tuned_model = job.fine_tuned_name
    finished = int(job.finished_at)
    result = FileRecord(
        # Derived, so that two processes settling the same job make the same file.
        id=job.extra.get("result_file") or ids.derived_id("file-", job.id, "result"),
        filename="step_metrics.csv" if job.api == "fine_tuning" else "compiled_results.csv",
        purpose="fine-tune-results",
        bytes=0,
        created_at=finished,
    )
    content = result_file(job)
    result.bytes = len(content)
    job.result_file = result.id
    model = ModelRecord(
        id=job.fine_tuned_name,
        created=finished,
        owned_by=job.organization_id,
        kind=job.kind,
        root=job.root,
        job_id=job.id,
        learns_from=job.learns_from,
    )
    store.add_file(result, content, model, job)
    return True


def estimated_finish(job: JobRecord, now: float) -> int | None:
    """When an unfinished job should end (a real job: from its measured step rate)."""
    if real.is_real(job):
        return real.estimated_finish(job, now)
    return int(wall_time(job, end_work(job)))


def pause(store: Store, job: JobRecord, now: float) -> None:
    if real.is_real(job):
        real.pause(job)
        return
    job.pauses.append(Pause(work_at=work_done(job, now), since=now))
    store.save(job)


def resume(store: Store, job: JobRecord, now: float) -> None:
    if real.is_real(job):
        real.resume(job)
        return
    job.pauses[-1].until = now
    store.save(job)


def cancel(store: Store, job: JobRecord, now: float) -> None:
    if real.is_real(job):
        real.cancel(job, now)
        store.save(job)
        return
    job.status = "cancelled"
    # An open pause stays open: the work clock stopped there and the job never resumed.
    job.ended_work = work_done(job, now)
    job.finished_at = now
    store.save(job)


__all__ = [
    "KEPT_CHECKPOINTS",
    "TERMINAL",
    "Checkpoint",
    "Event",
    "Moment",
    "cancel",
    "checkpoint_steps",
    "checkpoints",
    "end_work",
    "estimated_finish",
    "events",
    "is_paused",
    "pause",
    "plan",
    "resume",
    "settle",
    "status",
    "wall_time",
    "work_done",
]
