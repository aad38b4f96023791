"""A training job's folder: how the backend and the training process talk through disk.

The backend writes ``spec.json`` and the data once, and ``control`` to ask for a pause
or a cancel; the training process (``worker``) writes everything else. Nothing else is
shared, so either side can be restarted and pick up where the folder says it is::

    JOB/spec.json         what to train (base model, method, hyperparameters, device)
    JOB/train.jsonl       the training file; valid.jsonl, the validation file
    JOB/control           "pause" or "cancel", written by the backend
    JOB/lock              held (flock) by the one process training this job; its pid inside
    JOB/state.json        phase, step, checkpoints, token counts, error (written atomically)
    JOB/events.jsonl      one JSON object per event, appended
    JOB/output/           the trainer's checkpoint-N folders
    JOB/model/            the fine-tuned model (a PEFT adapter, or a whole model)
    JOB/step_metrics.csv  the result file
    JOB/worker.log        the training process's own output

``ROOT/device-NAME.lock`` is held by the job training on that device: one at a time.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PHASES = ("validating_files", "queued", "running", "paused", "succeeded", "failed", "cancelled")
FINAL = ("succeeded", "failed", "cancelled")


class JobFailed(Exception):
    def __init__(self, message: str, code: str) -> None:
        super().__init__(message)
        self.code = code


def event(job: JobDir, key: str, message: str, **extra: Any) -> None:
    job.add_event(
        {
            "key": key,
            "created_at": time.time(),
            "level": extra.pop("level", "info"),
            "message": message,
            "type": extra.pop("type", "message"),
            "data": extra.pop("data", None),
        }
    )


def write_json(path: Path, value: Any) -> None:
    """Replace ``path`` atomically: a reader sees the old content or the new, never half."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            json.dump(value, stream)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


@dataclass
class State:
    """What ``state.json`` holds."""

    phase: str = "validating_files"
    step: int = 0
    total_steps: int | None = None
    started_at: float | None = None  # when training (re)started, for the step rate
    started_step: int = 0
    step_rate: float | None = None  # steps per second, measured
    finished_at: float | None = None
    n_examples: int | None = None
    tokens_per_epoch: int | None = None
    trained_tokens: int | None = None
    checkpoints: list[dict[str, Any]] = field(default_factory=list)
    resume_from: str | None = None  # the checkpoint folder a restart continues from
    error: dict[str, Any] | None = None


class JobDir:
    def __init__(self, path: Path) -> None:
        self.path = path

    spec_path = property(lambda self: self.path / "spec.json")
    state_path = property(lambda self: self.path / "state.json")
    events_path = property(lambda self: self.path / "events.jsonl")
    control_path = property(lambda self: self.path / "control")
    lock_path = property(lambda self: self.path / "lock")
    output = property(lambda self: self.path / "output")
    model = property(lambda self: self.path / "model")
    result_path = property(lambda self: self.path / "step_metrics.csv")
    log_path = property(lambda self: self.path / "worker.log")

    def spec(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.spec_path.read_text(encoding="utf-8"))
        return value

    def state(self) -> State:
        try:
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return State()
        return State(**data)

    def save_state(self, state: State) -> None:
        write_json(self.state_path, state.__dict__)

    def control(self) -> str | None:
        try:
            return self.control_path.read_text(encoding="utf-8").strip() or None
        except FileNotFoundError:
            return None

    def set_control(self, value: str | None) -> None:
        if value is None:
            with contextlib.suppress(FileNotFoundError):
                self.control_path.unlink()
        else:
            self.control_path.write_text(value, encoding="utf-8")

    def events(self) -> list[dict[str, Any]]:
        try:
            text = self.events_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        # A line being appended may be cut short: only whole lines count.
        return [json.loads(line) for line in text.split("\n")[:-1] if line]

    def add_event(self, event: dict[str, Any]) -> None:
        with self.events_path.open("a", encoding="utf-8") as stream:
            stream.write(json.dumps(event) + "\n")

    def holder(self) -> int | None:
        """The pid of the process training this job, or None when none is."""
        try:
            stream = self.lock_path.open("r+", encoding="utf-8")
        except FileNotFoundError:
            return None
        with stream:
            try:
                fcntl.flock(stream, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                text = stream.read().strip()
                return int(text) if text.isdigit() else -1
            fcntl.flock(stream, fcntl.LOCK_UN)
            return None


@contextlib.contextmanager
def hold(path: Path, *, wait: bool) -> Iterator[bool]:
    """Hold an exclusive lock on ``path`` (our pid inside); yields False when it is taken
    and ``wait`` is False. The lock goes with the process, however it ends."""
    stream = path.open("a+", encoding="utf-8")
    try:
        try:
            fcntl.flock(stream, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        stream.seek(0)
        stream.truncate()
        stream.write(str(os.getpid()))
        stream.flush()
        yield True
    finally:
        stream.close()


def try_hold(path: Path) -> object | None:
    """Take the lock on ``path`` without waiting: a handle to keep open, or None."""
    stream = path.open("a+", encoding="utf-8")
    try:
        fcntl.flock(stream, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        stream.close()
        return None
    stream.seek(0)
    stream.truncate()
    stream.write(str(os.getpid()))
    stream.flush()
    return stream


__all__ = [
    "FINAL",
    "PHASES",
    "JobDir",
    "JobFailed",
    "State",
    "event",
    "hold",
    "try_hold",
    "write_json",
]
