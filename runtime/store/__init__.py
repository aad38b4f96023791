"""The run store: runs survive a crash and resume where they stopped (SQLite)."""

from __future__ import annotations

from .batches import Batch, BatchRow
from .lease import LEASE_SECONDS, Fence, LeaseLost, lease_owner, owner_alive
from .retention import DEFAULT_RETENTION, RETENTION_ENV
from .rows import AttemptRow, RunRow
from .runstore import RunStore, default_path
from .schema import SCHEMA_VERSION
from .writer import Op

__all__ = [
    "DEFAULT_RETENTION",
    "LEASE_SECONDS",
    "RETENTION_ENV",
    "SCHEMA_VERSION",
    "AttemptRow",
    "Batch",
    "BatchRow",
    "Fence",
    "LeaseLost",
    "Op",
    "RunRow",
    "RunStore",
    "default_path",
    "lease_owner",
    "owner_alive",
]
