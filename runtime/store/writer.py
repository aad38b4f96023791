"""The run store's one writer thread, which group-commits.

The step boundaries of every run in the process that arrive while a commit is under way
share the next one: two hundred concurrent runs pay for a handful of fsyncs per round, not
two hundred, and the event loop never blocks on the disk.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Sequence
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from ..errors import StoreError
from .lease import Fence, LeaseLost

if TYPE_CHECKING:
    from .base import RunStore

Op = tuple[str, Sequence[Any]]


class Writer:
    """The one thread that writes: batches whatever is queued into one transaction.

    The same loop serves both backends; the store's hooks say how to connect, begin a
    transaction, check a fence and tell a refused write from a failed store.
    """

    def __init__(self, store: RunStore) -> None:
        self._store = store
        self._lock = threading.Condition()
        self._queue: list[tuple[list[Op], Fence | None, Future[None]]] = []
        self._closed = False
        # Set when the writer cannot even open the store: every write fails with it at once
        # (instead of waiting forever for a thread that is gone).
        self._broken: StoreError | None = None
        self.commits = 0  # transactions committed (benchmarks count round trips with it)
        self._committing = False  # the COMMIT of the batch under way has been sent
        self._thread = threading.Thread(target=self._loop, name="steprun-store", daemon=True)
        self._thread.start()

    def submit(self, ops: list[Op], fence: Fence | None = None) -> Future[None]:
        future: Future[None] = Future()
        with self._lock:
            if self._broken is not None:
                future.set_exception(self._broken)
                return future
            if self._closed:
                future.set_exception(StoreError("the run store is closed"))
                return future
            self._queue.append((ops, fence, future))
            self._lock.notify()
        return future

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._lock.notify()
        self._thread.join()

    def _loop(self) -> None:
        store = self._store
        try:
            conn = store._connect()
        except StoreError as exc:
            with self._lock:
                self._broken = exc
                waiting, self._queue = self._queue, []
            for _, _, future in waiting:
                if future.set_running_or_notify_cancel():
                    future.set_exception(exc)
            return
        try:
            while True:
                with self._lock:
                    while not self._queue and not self._closed:
                        self._lock.wait()
                    batch, self._queue = self._queue, []
                    if not batch and self._closed:
                        return
                # Claim each write before doing it. A caller may give up on a write (a step
                # timeout, the lease renewal cancelled at the end of a run): a write not
                # claimed yet is then dropped, and one claimed can no longer be cancelled,
                # so setting its result cannot raise InvalidStateError and kill this thread
                # (every later write would wait forever).
                batch = [item for item in batch if item[2].set_running_or_notify_cancel()]
                if not batch:
                    continue
                for tries_left in range(4, -1, -1):
                    refused: dict[int, StoreError] = {}
                    self._committing = False
                    try:
                        self._commit(conn, batch, refused)
                    except Exception as exc:  # the store itself failed: nothing was written
                        # Never let this thread die: every later write would wait forever.
                        with contextlib.suppress(Exception):
                            conn.execute("ROLLBACK")
                        fresh = conn
                        with contextlib.suppress(StoreError):
                            fresh = store._reconnect(conn)  # a server that restarted
                        # A connection lost before COMMIT was sent committed nothing (the
                        # server rolls back what a lost client left open); one lost during
                        # the COMMIT may have committed, so that write fails, never twice.
                        lost_before_commit = fresh is not conn and not self._committing
                        conn = fresh
                        if tries_left and (store._retry(exc) or lost_before_commit):
                            continue  # rolled back whole: trying again cannot write twice
                        error = self._error(exc)
                        for _, _, future in batch:
                            future.set_exception(error)
                    else:
                        self.commits += 1
                        for index, (_, _, future) in enumerate(batch):
                            if index in refused:
                                future.set_exception(refused[index])
                            else:
                                future.set_result(None)
                    break
        finally:
            conn.close()

    def _commit(
        self,
        conn: Any,
        batch: list[tuple[list[Op], Fence | None, Future[None]]],
        refused: dict[int, StoreError],
    ) -> None:
        store = self._store
        store._begin(conn)
        for index, (ops, fence, _) in enumerate(batch):
            # A savepoint per submission: one run's refused write (a duplicate run id, a
            # lost lease) fails that run alone, not every run sharing the commit.
            conn.execute("SAVEPOINT one")
            try:
                if fence is not None:
                    store._check_fence(conn, fence)
                for sql, params in ops:
                    conn.execute(sql, params)
            except LeaseLost as exc:
                conn.execute("ROLLBACK TO SAVEPOINT one")
                refused[index] = exc
            except Exception as exc:
                if not store._refused(exc):
                    raise
                conn.execute("ROLLBACK TO SAVEPOINT one")
                refused[index] = self._error(exc)
            conn.execute("RELEASE SAVEPOINT one")
        self._committing = True
        conn.execute("COMMIT")

    def _error(self, exc: Exception) -> StoreError:
        if isinstance(exc, StoreError):
            return exc
        return self._store._write_error(exc)


__all__ = ["Op", "Writer"]
