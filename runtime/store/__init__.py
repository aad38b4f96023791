"""The run store: runs survive a crash and resume where they stopped.

``base`` is the interface (:class:`RunStore`) and what both backends share; ``sqlite``
is the SQLite file store (with ``schema``, ``integrity``, ``failures``); ``postgres/`` is
the PostgreSQL store; ``opening`` picks one from ``--state``. ``lease`` (one driver per
run), ``writer`` (the group-committing thread), ``rows`` (what reads return) and
``retention`` (pruning) and ``batches`` (``run --inputs-file``) serve both.
"""

from __future__ import annotations

from .base import RunStore
from .batches import Batch, BatchRow
from .lease import LEASE_SECONDS, Fence, LeaseLost, lease_owner, owner_alive
from .opening import (
    default_folder,
    default_path,
    default_state,
    describe,
    open_store,
    state_folder,
)
from .retention import DEFAULT_RETENTION, RETENTION_ENV
from .rows import AttemptRow, RunRow
from .schema import SCHEMA_VERSION
from .sqlite import SQLiteStore
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
    "SQLiteStore",
    "default_folder",
    "default_path",
    "default_state",
    "describe",
    "lease_owner",
    "open_store",
    "owner_alive",
    "state_folder",
]
