"""How long finished runs are kept, and pruning the older ones.

By default a finished run (succeeded, failed or cancelled) is kept ``DEFAULT_RETENTION``
after its last change; ``STEPRUN_RETENTION`` sets another period (``30d``, ``12h``) or
``off`` to keep every run. The first run a process starts on a store prunes in the same
transaction that records it, so retention costs no commit of its own. A run that is
still running (or was left running by a crash) is never pruned: resume or cancel it first.
A batch is pruned with the first of its runs that is (its other runs stay, without it).
SQLite reuses the pages of pruned runs for new ones, so the file stops growing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping

from ..durations import parse_duration
from ..errors import InvalidInput
from .writer import Op

RETENTION_ENV = "STEPRUN_RETENTION"
DEFAULT_RETENTION = 90 * 86400.0
FINISHED = ("succeeded", "failed", "cancelled")

_OLD = f"status IN ({', '.join(repr(s) for s in FINISHED)}) AND updated < ?"


def retention(environ: Mapping[str, str] | None = None) -> float | None:
    """Seconds finished runs are kept, or None to keep them all (``STEPRUN_RETENTION``)."""
    value = (os.environ if environ is None else environ).get(RETENTION_ENV, "").strip()
    if not value:
        return DEFAULT_RETENTION
    if value.lower() in ("off", "never", "forever"):
        return None
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise InvalidInput(
            f"{RETENTION_ENV}={value!r}: {exc}; use e.g. 30d, or off to keep every run"
        ) from None


def prune_ops(older_than: float, now: float | None = None) -> list[Op]:
    """Delete finished runs whose last change is more than ``older_than`` seconds ago."""
    cutoff = (time.time() if now is None else now) - older_than
    runs = f"SELECT id FROM runs WHERE {_OLD}"
    # A batch goes with the first of its runs that goes: a row whose run was pruned would
    # otherwise look never started, and `steprun resume BATCH` would run it a second time.
    old_batches = f"SELECT batch_id FROM runs WHERE batch_id IS NOT NULL AND {_OLD}"
    return [
        (f"DELETE FROM batch_rows WHERE batch_id IN ({old_batches})", (cutoff,)),
        (f"DELETE FROM batches WHERE id IN ({old_batches})", (cutoff,)),
        (f"DELETE FROM merge_fields WHERE run_id IN ({runs})", (cutoff,)),
        (f"DELETE FROM attempts WHERE run_id IN ({runs})", (cutoff,)),
        (f"DELETE FROM log_lines WHERE run_id IN ({runs})", (cutoff,)),
        (f"DELETE FROM runs WHERE {_OLD}", (cutoff,)),
    ]


def count_sql(older_than: float, now: float | None = None) -> tuple[str, tuple[float]]:
    cutoff = (time.time() if now is None else now) - older_than
    return f"SELECT count(*) FROM runs WHERE {_OLD}", (cutoff,)


__all__ = [
    "DEFAULT_RETENTION",
    "FINISHED",
    "RETENTION_ENV",
    "count_sql",
    "prune_ops",
    "retention",
]
