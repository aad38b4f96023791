"""The training process: ``python -m steprun.runtime.local.trainer.worker JOB_DIR``.

One process per job, started by the backend (see ``supervisor``), never inside the
server's event loop. It takes the job's lock first (a second process for the same job
exits at once: a job never trains twice at the same time), then moves the job along
``validating_files → queued → running → succeeded | failed | paused``, writing each step
to the job folder (see ``jobdir``). Started again on a job that was interrupted, it
continues from the last checkpoint.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

from .data import BadData
from .jobdir import FINAL, JobDir, JobFailed, State, event, try_hold

# How often a queued job looks at its device's lock and its control file.
QUEUE_POLL_SECONDS = 0.5


class Stop(Exception):
    """The job was cancelled, or the backend that owned it went away."""


def check_alive(job: JobDir, spec: dict[str, Any], parent: int) -> None:
    """Raise Stop when the job is cancelled, or when the backend that started it kept no
    state on disk and is gone (nobody could ever read the result)."""
    if job.control() == "cancel":
        raise Stop
    if not spec.get("durable") and not _alive(parent):
        raise Stop


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def device_name(wanted: str) -> str:
    import torch

    if wanted != "auto":
        return wanted
    if torch.cuda.is_available():
        return "cuda"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def classify(exc: BaseException) -> tuple[str, str]:
    """OpenAI's error code and a message for what made training fail."""
    import torch

    text = str(exc)
    if isinstance(exc, JobFailed):
        return exc.code, text
    if isinstance(exc, BadData):
        return exc.code, f"The training file cannot train: {text}"
    if isinstance(exc, torch.OutOfMemoryError | MemoryError) or "can't allocate memory" in text:
        return (
            "out_of_memory",
            "Training ran out of memory; use a smaller batch_size, shorter examples or a "
            f"smaller model ({type(exc).__name__}: {text[:300]})",
        )
    return "training_error", f"Training failed: {type(exc).__name__}: {text[:500]}"


def _queue(job: JobDir, spec: dict[str, Any], state: State, root: Path, parent: int) -> object:
    """Wait for the device; the held lock (kept open until the process ends)."""
    lock = root / f"device-{device_name(spec['device']).replace(':', '-')}.lock"
    held = try_hold(lock)
    while held is None:
        check_alive(job, spec, parent)
        time.sleep(QUEUE_POLL_SECONDS)
        held = try_hold(lock)
    return held


def run(job: JobDir, parent: int) -> None:
    from . import train

    spec = job.spec()
    state = job.state()
    root = Path(spec["root"])
    if state.phase in FINAL or job.control() == "cancel":
        return
    if state.phase == "paused" and job.control() == "pause":
        return
    try:
        if state.n_examples is None:
            train.validate(job, spec, state)
            state.phase = "queued"
            job.save_state(state)
            event(job, "validated", "Files validated, moving job to queued state")
        device_lock = _queue(job, spec, state, root, parent)
        try:
            train.train(job, spec, state, lambda: check_alive(job, spec, parent))
        finally:
            device_lock.close()  # type: ignore[attr-defined]
    except Stop:
        return
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        code, message = classify(exc)
        state = job.state()
        state.phase = "failed"
        state.finished_at = time.time()
        state.error = {"code": code, "message": message, "param": None}
        job.save_state(state)
        event(job, "failed", message, level="error")


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    job = JobDir(Path(args[0]))
    parent = int(args[1]) if len(args) > 1 else os.getppid()  # the backend's process
    held = try_hold(job.lock_path)
    if held is None:
        return 0  # another process is training this job
    try:
        run(job, parent)
    finally:
        held.close()  # type: ignore[attr-defined]
    return 0


if __name__ == "__main__":
    sys.exit(main())
