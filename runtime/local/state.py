"""What the local backend remembers: files, fine-tuning jobs, models, the request ledger.

In memory by default. With a state directory every change is written through, so a
restarted server finds its files, jobs and models again::

    STATE_DIR/state.json          files, jobs, models, ledger (written atomically)
    STATE_DIR/files/<file id>     the bytes of each uploaded or generated file

A job's progress is not stored: it is derived from the clock (see ``jobs``), so a job
that was running when the server stopped simply carries on after the restart.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from .catalog import Kind

FORMAT_VERSION = 1

Api = Literal["fine_tuning", "fine-tunes"]


@dataclass
class FileRecord:
    id: str
    filename: str
    purpose: str
    bytes: int
    created_at: int
    expires_at: int | None = None

    def view(self) -> dict[str, Any]:
        """The OpenAI ``file`` object."""
        data: dict[str, Any] = {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
        }
        if self.expires_at is not None:
            data["expires_at"] = self.expires_at
        return data


@dataclass
class Pause:
    """A pause of a running job: at which point of its work, and when (wall clock)."""

    work_at: float
    since: float
    until: float | None = None


@dataclass
class JobRecord:
    """A fine-tuning job of either API; what happens to it is planned at creation."""

    id: str
    api: Api
    created_at: float
    duration: float  # seconds of work from creation to the final state
    model: str  # the base model as the API reports it
    root: str  # the base model named in the fine-tuned model's name
    kind: Kind
    training_file: str
    validation_file: str | None
    suffix: str | None
    seed: int
    organization_id: str
    fine_tuned_name: str
    method: str
    n_epochs: int
    batch_size: int
    learning_rate_multiplier: float
    requested: dict[str, Any]  # hyperparameters as requested ("auto" or a value)
    n_examples: int
    tokens_per_epoch: int
    examples: list[list[str]]  # [query, answer, system] the model will answer from
    metadata: dict[str, str] | None = None
    integrations: list[dict[str, Any]] | None = None
    # What only one API or method has: the legacy hyperparameters, result file id and
    # file snapshots, DPO's beta.
    extra: dict[str, Any] = field(default_factory=dict)
    failure: dict[str, Any] | None = None  # planned: {"at": fraction, "error": {...}}
    request_id: str | None = None
    # Set when the job reaches a final state:
    status: str | None = None
    finished_at: float | None = None
    ended_work: float | None = None
    error: dict[str, Any] | None = None
    fine_tuned_model: str | None = None
    result_file: str | None = None
    pauses: list[Pause] = field(default_factory=list)

    @property
    def total_steps(self) -> int:
        per_epoch = -(-self.n_examples // self.batch_size)
        return max(1, per_epoch * self.n_epochs)

    @property
    def steps_per_epoch(self) -> int:
        return max(1, -(-self.n_examples // self.batch_size))

    @classmethod
    def load(cls, data: dict[str, Any]) -> JobRecord:
        pauses = [Pause(**pause) for pause in data.pop("pauses", [])]
        return cls(**data, pauses=pauses)


@dataclass
class ModelRecord:
    """A fine-tuned model: what it answers from, and whether it was deleted."""

    id: str
    created: int
    owned_by: str
    kind: Kind
    root: str
    job_id: str
    examples: list[list[str]]
    deleted: bool = False

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "model",
            "created": self.created,
            "owned_by": self.owned_by,
        }


class Store:
    """All records of one backend. Mutate through the methods, then call :meth:`save`."""

    def __init__(self, state_dir: Path | None = None) -> None:
        self.state_dir = state_dir
        self.files: dict[str, FileRecord] = {}
        self.jobs: dict[str, JobRecord] = {}
        self.models: dict[str, ModelRecord] = {}
        self.create_requests: dict[str, int] = {}
        self._contents: dict[str, bytes] = {}
        if state_dir is not None:
            state_dir.mkdir(parents=True, exist_ok=True)
            (state_dir / "files").mkdir(exist_ok=True)
            self._load()

    # -- files --

    def add_file(self, record: FileRecord, content: bytes) -> None:
        self.files[record.id] = record
        self._contents[record.id] = content
        if self.state_dir is not None:
            _write_atomic(self.state_dir / "files" / record.id, content)
        self.save()

    def content(self, file_id: str) -> bytes:
        if file_id not in self._contents and self.state_dir is not None:
            self._contents[file_id] = (self.state_dir / "files" / file_id).read_bytes()
        return self._contents[file_id]

    def delete_file(self, file_id: str) -> None:
        del self.files[file_id]
        self._contents.pop(file_id, None)
        if self.state_dir is not None:
            with contextlib.suppress(FileNotFoundError):
                (self.state_dir / "files" / file_id).unlink()
        self.save()

    # -- ledger --

    def count_create_request(self, route: str) -> None:
        self.create_requests[route] = self.create_requests.get(route, 0) + 1
        self.save()

    # -- persistence --

    def save(self) -> None:
        if self.state_dir is None:
            return
        data = {
            "version": FORMAT_VERSION,
            "files": [asdict(record) for record in self.files.values()],
            "jobs": [asdict(record) for record in self.jobs.values()],
            "models": [asdict(record) for record in self.models.values()],
            "create_requests": self.create_requests,
        }
        _write_atomic(self.state_dir / "state.json", json.dumps(data).encode())

    def _load(self) -> None:
        assert self.state_dir is not None
        path = self.state_dir / "state.json"
        if not path.exists():
            return
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != FORMAT_VERSION:
            raise ValueError(
                f"{path} has state format {data.get('version')!r}, this steprun reads "
                f"format {FORMAT_VERSION}; start with an empty --state directory"
            )
        self.files = {f["id"]: FileRecord(**f) for f in data["files"]}
        self.jobs = {j["id"]: JobRecord.load(j) for j in data["jobs"]}
        self.models = {m["id"]: ModelRecord(**m) for m in data["models"]}
        self.create_requests = dict(data.get("create_requests", {}))


def _write_atomic(path: Path, content: bytes) -> None:
    # A crash mid-write must leave the previous state readable: write aside, then rename.
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(content)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


__all__ = ["FORMAT_VERSION", "Api", "FileRecord", "JobRecord", "ModelRecord", "Pause", "Store"]
