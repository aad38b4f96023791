"""Runs spread over worker processes that share the run store's PostgreSQL.

``queue`` (the Procrastinate app, one job per run), ``submit`` (record a run and queue
it), ``drive`` (one job: drive a run until it ends or hands back), ``journal`` (waits and
shutdowns hand the run back), ``history`` (which process drove which run when),
``recovery`` (a dead worker's jobs go back in the queue), ``worker`` (``steprun worker``).
"""

from __future__ import annotations

from .drive import Driver
from .journal import HandBack, WorkerJournal
from .queue import DRIVE_TASK, RECOVER_TASK, build_app, enqueue, ensure_schema
from .submit import submit
from .worker import WorkerSettings, serve

__all__ = [
    "DRIVE_TASK",
    "RECOVER_TASK",
    "Driver",
    "HandBack",
    "WorkerJournal",
    "WorkerSettings",
    "build_app",
    "enqueue",
    "ensure_schema",
    "serve",
    "submit",
]
