"""A real fine-tuning job as the API shows it, read from its folder (see ``jobdir``).

The backend's ``jobs`` module hands every job that ``trainer: transformers`` runs to the
functions here. They read what the training process wrote; :func:`settle` also starts
that process again when it died without finishing (a restart, a crash), so the job
continues from its last checkpoint. Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .. import ids
from ..records import FileRecord, JobRecord, ModelRecord
from ..state import Store
from .jobdir import FINAL, JobDir, State, write_json

TRAINER = "transformers"
_SPAWNED = "_training_spawned"  # when this backend last started the job's process
_STATE = "_training_state"  # (mtime, State): state.json read once per change


def is_real(job: JobRecord) -> bool:
    return job.extra.get("trainer") == TRAINER


def folder(job: JobRecord) -> JobDir:
    return JobDir(Path(job.extra["training_dir"]))


# Started through a short-lived launcher, so the training process is not our child: it
# outlives us without a zombie or an unreaped Popen, whoever ends first.
_LAUNCHER = (
    "import subprocess, sys; subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL, "
    "stdout=sys.stdout, stderr=sys.stderr, start_new_session=True)"
)
# A process just started takes its job's lock within this time; none other starts meanwhile.
_STARTING_SECONDS = 10.0


def spawn(job: JobRecord) -> None:
    """Start the training process for ``job`` (it exits at once if one is running)."""
    where = folder(job)
    command = [
        sys.executable, "-c", _LAUNCHER, sys.executable, "-m",
        "steprun.runtime.local.trainer.worker", str(where.path), str(os.getpid()),
    ]  # fmt: skip
    with where.log_path.open("ab") as log:
        subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            env={**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1"},
            check=False,
            timeout=60,
        )
    job.__dict__[_SPAWNED] = time.monotonic()


def _running(job: JobRecord) -> bool:
    spawned = job.__dict__.get(_SPAWNED)
    if spawned is not None and time.monotonic() - spawned < _STARTING_SECONDS:
        return True
    return folder(job).holder() is not None


def state(job: JobRecord) -> State:
    where = folder(job)
    try:
        stamp = where.state_path.stat().st_mtime_ns
    except FileNotFoundError:
        return State()
    cached = job.__dict__.get(_STATE)
    if cached is not None and cached[0] == stamp:
        return cached[1]  # type: ignore[no-any-return]
    found = where.state()
    job.__dict__[_STATE] = (stamp, found)
    return found


def status(job: JobRecord) -> str:
    if job.status is not None:
        return job.status
    current = state(job)
    if folder(job).control() == "pause":
        return "paused"
    if current.phase == "paused":
        # Resumed: its process is on the way back to training.
        return "running" if _running(job) else "paused"
    return "running" if current.phase in FINAL else current.phase


def events(job: JobRecord, now: float) -> list[tuple[str, dict[str, Any]]]:
    """(event id, event) pairs, oldest first; a key written twice (a restarted step) counts
    once, at its latest."""
    latest: dict[str, dict[str, Any]] = {}
    for item in folder(job).events():
        latest.pop(item["key"], None)
        latest[item["key"]] = item
    if job.status == "cancelled":
        latest["cancelled"] = {
            "created_at": job.finished_at or now,
            "level": "info",
            "message": "Fine-tuning job cancelled",
            "type": "message",
            "data": None,
        }
    ordered = sorted(latest.items(), key=lambda pair: pair[1]["created_at"])
    return [(ids.derived_id("ftevent-", job.id, key), item) for key, item in ordered]


def checkpoints(job: JobRecord) -> list[dict[str, Any]]:
    """Published checkpoints, oldest first, each with its model name; the last epoch's is
    the fine-tuned model itself, and exists once the job succeeded."""
    found = []
    for checkpoint in state(job).checkpoints:
        final = checkpoint["step"] == state(job).total_steps
        if final and job.status != "succeeded":
            continue
        name = (
            job.fine_tuned_name
            if final
            else f"{job.fine_tuned_name}:ckpt-step-{checkpoint['step']}"
        )
        found.append({**checkpoint, "model": name})
    return found


def model_folder(job: JobRecord, model_id: str) -> Path | None:
    """The folder a fine-tuned model or checkpoint of ``job`` is served from."""
    where = folder(job)
    if model_id == job.fine_tuned_name:
        return where.model if job.status == "succeeded" else None
    for checkpoint in checkpoints(job):
        if checkpoint["model"] == model_id:
            return where.path / str(checkpoint["path"])
    return None


def estimated_finish(job: JobRecord, now: float) -> int | None:
    current = state(job)
    if current.step_rate is None or not current.total_steps:
        return None
    return int(now + (current.total_steps - current.step) / current.step_rate)


def settle(store: Store, job: JobRecord, now: float) -> bool:
    """Record a finished training on the job; start it again if its process died."""
    if job.status is not None:
        return False
    current = state(job)
    if current.tokens_per_epoch is not None and job.extra.get("tokens_counted") is None:
        job.tokens_per_epoch = current.tokens_per_epoch
        job.extra["tokens_counted"] = True
        store.save(job)
    if current.phase == "failed":
        job.status = "failed"
        job.error = current.error
        job.finished_at = current.finished_at or now
        store.save(job)
        return True
    if current.phase == "succeeded":
        _succeed(store, job, current)
        return True
    paused = current.phase == "paused" or folder(job).control() == "pause"
    if not paused and not _running(job):
        spawn(job)  # interrupted (a restart, a crash): carry on from the last checkpoint
    return False


def _succeed(store: Store, job: JobRecord, current: State) -> None:
    job.status = "succeeded"
    job.finished_at = current.finished_at
    job.fine_tuned_model = job.fine_tuned_name
    content = folder(job).result_path.read_bytes()
    result = FileRecord(
        # Derived, so that two processes settling the same job make the same file.
        id=ids.derived_id("file-", job.id, "result"),
        filename="step_metrics.csv",
        purpose="fine-tune-results",
        bytes=len(content),
        created_at=int(current.finished_at or time.time()),
    )
    job.result_file = result.id
    model = ModelRecord(
        id=job.fine_tuned_name,
        created=result.created_at,
        owned_by=job.organization_id,
        kind=job.kind,
        root=job.root,
        job_id=job.id,
        learns_from=[],  # answers come from the weights, never from the data
    )
    store.add_file(result, content, model, job)


def start(
    job: JobRecord,
    *,
    path: Path,
    spec: dict[str, Any],
    training: bytes,
    validation: bytes | None,
    now: float,
) -> None:
    """Lay out the job's folder at ``path`` and start its training process."""
    where = JobDir(path)
    (where.path / "train.jsonl").write_bytes(training)
    if validation is not None:
        (where.path / "valid.jsonl").write_bytes(validation)
    write_json(where.spec_path, {**spec, "job_id": job.id})
    job.extra["trainer"] = TRAINER
    job.extra["training_dir"] = str(where.path)
    validating = f"Validating training file: {job.training_file}"
    if job.validation_file:
        validating += f" and validation file: {job.validation_file}"
    for key, message in (
        ("created", f"Created fine-tuning job: {job.id}"),
        ("validating", validating),
    ):
        where.add_event(
            {
                "key": key,
                "created_at": now,
                "level": "info",
                "message": message,
                "type": "message",
                "data": None,
            }
        )
    spawn(job)


def pause(job: JobRecord) -> None:
    folder(job).set_control("pause")


def resume(job: JobRecord) -> None:
    folder(job).set_control(None)
    spawn(job)


def cancel(job: JobRecord, now: float) -> None:
    """Stop the training process now (its device is free the moment it dies)."""
    where = folder(job)
    where.set_control("cancel")
    pid = where.holder()
    if pid is not None and pid > 0:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, signal.SIGKILL)
        deadline = time.monotonic() + 5
        while where.holder() is not None and time.monotonic() < deadline:
            time.sleep(0.05)
    job.status = "cancelled"
    job.finished_at = now


__all__ = [
    "TRAINER",
    "cancel",
    "checkpoints",
    "estimated_finish",
    "events",
    "folder",
    "is_real",
    "model_folder",
    "pause",
    "resume",
    "settle",
    "spawn",
    "start",
    "state",
    "status",
]
