"""Durable runs: every step boundary journaled in the run store, and resume.

``journal`` (the runner's Journal on the store, failpoints, the lease), ``runs`` (start,
resume), ``batches`` (one run per row of an inputs file, a batch resumed), ``cancel``.
"""

from __future__ import annotations

from .batches import RowOutcome, new_batch_id, resume_batch, start_batch
from .cancel import cancel
from .journal import FAILPOINT_ENV, StoreJournal, leased
from .runs import resume, start

__all__ = [
    "FAILPOINT_ENV",
    "RowOutcome",
    "StoreJournal",
    "cancel",
    "leased",
    "new_batch_id",
    "resume",
    "resume_batch",
    "start",
    "start_batch",
]
