"""Durable runs: every step boundary journaled in the run store, and resume.

``journal`` (the runner's Journal on the store, failpoints, the lease), ``runs`` (start,
resume, many runs in one process), ``cancel``.
"""

from __future__ import annotations

from .cancel import cancel
from .journal import FAILPOINT_ENV, StoreJournal, leased
from .runs import resume, start, start_many

__all__ = [
    "FAILPOINT_ENV",
    "StoreJournal",
    "cancel",
    "leased",
    "resume",
    "start",
    "start_many",
]
