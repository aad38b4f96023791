"""What the run store hands back: a run and its step attempts, as plain data."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import StoreError
from .lease import owner_alive


@dataclass
class RunRow:
    id: str
    flow: str
    flow_file: str
    flow_text: str
    flow_hash: str
    base_dir: str
    inputs: dict[str, Any]
    authorizations_file: str | None
    status: str
    position: str | None
    authorization: str | None
    error: dict[str, Any] | None
    executed: int
    started: float
    updated: float
    lease_owner: str | None
    lease_until: float | None
    cancel_requested: bool
    # The unhandled error a flow-level on_error handler is handling: the run fails after it.
    failure: dict[str, Any] | None = None
    # The batch (`run --inputs-file`) this run is a row of, and that row (its line).
    batch_id: str | None = None
    batch_row: int | None = None

    @property
    def shown_status(self) -> str:
        """``interrupted`` for a run left ``running`` by a process that is gone."""
        if self.status != "running":
            return self.status
        alive = bool(self.lease_owner) and owner_alive(self.lease_owner or "")
        if alive and self.lease_until is not None and self.lease_until > time.time():
            return "running"
        return "interrupted"

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "flow": self.flow,
            "flow_file": self.flow_file,
            "status": self.shown_status,
            "current_step": self.position,
            "started": self.started,
            "updated": self.updated,
            "steps_executed": self.executed,
            "inputs": self.inputs,
            "error": self.error,
            "batch": self.batch_id,
            "row": self.batch_row,
        }


@dataclass
class AttemptRow:
    seq: int
    step_id: str
    step_type: str
    attempt: int
    status: str
    started: float
    ended: float | None
    saved: dict[str, Any]
    wake_at: float | None
    report: dict[str, Any] | None


def dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def load(text: str, where: str | Path, what: str, run_id: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        aside = ""
        if "://" not in str(where):  # a file: it can be moved aside
            aside = (
                "; to start a new store instead, move the file aside (e.g. "
                f"`mv {where} {where}.damaged`)"
            )
        raise StoreError(
            f"the run store {where} holds a damaged value ({what}) of run {run_id}: not JSON, "
            "so that run cannot be shown or resumed safely; start it again as a new run. "
            f"Other runs in the store are not affected{aside}."
        ) from None


__all__ = ["AttemptRow", "RunRow", "dump", "load"]
