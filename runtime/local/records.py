"""The records the local backend keeps: files, fine-tuning jobs, fine-tuned models.

Plain dataclasses, saved as JSON one record at a time by :class:`~.state.Store`. They hold
what was decided when an object was created, never training data: a model names the
files it learned from (:attr:`JobRecord.learns_from`) and reads them when it answers.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

from .catalog import Kind

Api = Literal["fine_tuning", "fine-tunes"]

R = TypeVar("R")


def from_json(cls: type[R], data: dict[str, Any]) -> R:
    """A record from its saved form; fields a newer steprun added are left out."""
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in data.items() if k in known})


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
    # The files whose examples the fine-tuned model answers from: those of the model it
    # was tuned from, then its own training file. Never copies of their content.
    learns_from: list[str]
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
    # What the trainer that runs the job keeps about it (empty for a simulated job); its
    # artifacts, such as checkpoints, go in ``Store.job_dir(job.id)``.
    trainer: dict[str, Any] = field(default_factory=dict)

    @property
    def total_steps(self) -> int:
        per_epoch = -(-self.n_examples // self.batch_size)
        return max(1, per_epoch * self.n_epochs)

    @property
    def steps_per_epoch(self) -> int:
        return max(1, -(-self.n_examples // self.batch_size))

    @classmethod
    def load(cls, data: dict[str, Any]) -> JobRecord:
        job = from_json(cls, data)
        job.pauses = [Pause(**pause) for pause in data.get("pauses", [])]
        return job


@dataclass
class ModelRecord:
    """A fine-tuned model: what it answers from, and whether it was deleted."""

    id: str
    created: int
    owned_by: str
    kind: Kind
    root: str
    job_id: str
    learns_from: list[str]  # see JobRecord.learns_from
    deleted: bool = False

    def view(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "model",
            "created": self.created,
            "owned_by": self.owned_by,
        }


__all__ = ["Api", "FileRecord", "JobRecord", "ModelRecord", "Pause", "from_json"]
