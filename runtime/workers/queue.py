"""The queue: a Procrastinate app on the run store's PostgreSQL, and how runs enter it.

One job per run, ``steprun.drive(run_id)``, with the run id as its ``lock`` (no two jobs
of one run ever run at once) and as its ``queueing_lock`` (one waiting job per run: a
second enqueue is a no-op). A job that hands the run back is *retried* at the run's
wake-up time rather than replaced by a new job, so the run's one job is also its token:
a worker that dies holds it in ``doing`` until the recovery task hands it to another.

Procrastinate's tables sit beside the run store's, in its schema (``steprun``, or the
URL's ``?schema=``), created on first use (under an advisory lock, so that workers
starting together on a new database create them once).
"""

from __future__ import annotations

import asyncio
import datetime
from typing import TYPE_CHECKING, Any

from ..errors import StoreError, StoreUnavailable
from . import history

if TYPE_CHECKING:
    from procrastinate import App

DRIVE_TASK = "steprun.drive"
RECOVER_TASK = "steprun.recover"
# Any constant of our own: serializes creating Procrastinate's tables.
_SCHEMA_LOCK = 0x5735_7275_6E01


def _procrastinate() -> Any:
    try:
        import procrastinate
    except ImportError:
        raise StoreError(
            "workers need Procrastinate, which is not installed; install it with "
            "`pip install 'steprun[postgres]'`"
        ) from None
    return procrastinate


def build_app(url: str, *, pool_size: int = 4) -> App:
    """A Procrastinate app on the run store ``url`` names (not opened yet): its tables
    sit in the store's schema, so each store (``?schema=``) has its own queue."""
    from ..store.postgres.connection import split_schema

    procrastinate = _procrastinate()
    conninfo, schema = split_schema(url)
    connector = procrastinate.PsycopgConnector(
        conninfo=conninfo,
        min_size=1,
        max_size=pool_size,
        kwargs={"connect_timeout": 10, "options": f"-c search_path={schema}"},
    )
    app: App = procrastinate.App(connector=connector)
    return app


def ensure_schema(url: str) -> None:
    """Create Procrastinate's tables and the lease history in the store's schema unless
    they are there (the store, opened first, has created the schema)."""
    from procrastinate.schema import SchemaManager

    from ..store.postgres.connection import redact, scrub, split_schema

    conninfo, schema = split_schema(url)
    try:
        import psycopg

        with psycopg.connect(conninfo, autocommit=True, connect_timeout=10) as conn:
            conn.execute(f"SET search_path TO {schema}")
            conn.execute("SELECT pg_advisory_lock(%s)", (_SCHEMA_LOCK,))
            try:
                found = conn.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()
                if found is None or found[0] is None:
                    conn.execute(SchemaManager.get_schema().encode())
                for statement in (history.TABLE, history.INDEX):
                    conn.execute(statement.encode())
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (_SCHEMA_LOCK,))
    except psycopg.Error as exc:
        raise StoreUnavailable(
            f"cannot prepare the workers' queue in {redact(url)}: {scrub(url, exc)}; check "
            "that PostgreSQL is running and reachable with that URL"
        ) from None


def _when(at: float | None) -> datetime.datetime | None:
    return None if at is None else datetime.datetime.fromtimestamp(at, datetime.UTC)


async def enqueue(app: App, run_id: str, *, at: float | None = None) -> bool:
    """Queue ``run_id`` to be driven (from ``at``, seconds since the epoch); False when a
    job for it already waits in the queue."""
    procrastinate = _procrastinate()
    deferrer = app.configure_task(
        DRIVE_TASK, lock=run_id, queueing_lock=run_id, schedule_at=_when(at)
    )
    try:
        await deferrer.defer_async(run_id=run_id)
    except procrastinate.exceptions.AlreadyEnqueued:
        return False
    except procrastinate.exceptions.ConnectorException as exc:
        raise StoreUnavailable(f"cannot queue run {run_id}: {exc}") from None
    return True


class Queue:
    """The queue as a long-lived process (the HTTP service) uses it: opened on first use,
    in the event loop that uses it."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._app: App | None = None
        self._opening = asyncio.Lock()

    async def app(self) -> App:
        async with self._opening:
            if self._app is None:
                await asyncio.to_thread(ensure_schema, self.url)
                app = build_app(self.url, pool_size=2)
                await app.open_async()
                self._app = app
        return self._app

    async def aclose(self) -> None:
        if self._app is not None:
            await self._app.close_async()
            self._app = None


def retry_strategy() -> Any:
    """How the queue treats a drive job that raised: a hand-back is retried at its wake-up
    time (however often), a store that could not be reached after a pause; anything else
    is not retried (the run was marked failed with the reason)."""
    _procrastinate()
    from procrastinate import BaseRetryStrategy, RetryDecision

    from .journal import HandBack

    class HandBackRetry(BaseRetryStrategy):
        def get_retry_decision(self, *, exception: BaseException, job: Any) -> Any:
            if isinstance(exception, HandBack):
                return RetryDecision(retry_at=_when(exception.wake_at))
            if isinstance(exception, StoreUnavailable):
                return RetryDecision(retry_in={"seconds": 5})
            return None

    return HandBackRetry()


__all__ = [
    "DRIVE_TASK",
    "RECOVER_TASK",
    "Queue",
    "build_app",
    "enqueue",
    "ensure_schema",
    "retry_strategy",
]
