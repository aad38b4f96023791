"""The run store's interface, and what its two backends (SQLite, PostgreSQL) share.

Everything that keeps runs (the durable layer, the CLI, the HTTP service, the Airflow
operator, the workers) talks to a :class:`RunStore` and never to SQLite or PostgreSQL.
``open_store(state)`` (``opening.py``) picks the backend: a ``postgresql://`` URL gives
:class:`~steprun.runtime.store.postgres.PostgresStore`, anything else is the path of a
:class:`~steprun.runtime.store.sqlite.SQLiteStore` file.

**Writes are ops.** An :data:`Op` is ``(sql, params)`` in the SQL both databases speak:
``?`` placeholders, ``INSERT … ON CONFLICT … DO UPDATE``, no engine-specific functions,
and the column ``"authorization"`` always quoted (a reserved word in PostgreSQL).
The PostgreSQL backend turns ``?`` into psycopg's ``%s``; nothing else differs. Keeping
the journal's statements as data (rather than one method per statement) lets the writer
batch the step boundaries of many runs into one transaction on either engine.

**Durability.** ``await store.write(ops)`` returns once ``ops`` are committed, atomically
(all or none) and durably (SQLite fsyncs its WAL; PostgreSQL's commit is on disk).
Writes are group-committed by one writer thread per store: whatever every run of the
process queues while a commit is under way shares the next one. ``write_soon`` queues
without waiting (log lines); ``write_now`` is ``write`` without an event loop.

**Leases and fencing.** A process drives a run only while it holds the run's lease:
``acquire`` takes it (refusing while a live owner holds it), ``renew_ops`` extends it,
``release_ops`` drops it, and ``create_run_ops`` records a new run already leased to its
creator. ``write(ops, fence=(run_id, owner))`` commits only if ``owner`` still holds the
lease *in the same transaction as the ops* (SQLite: under its one write lock;
PostgreSQL: under a row lock on the run), else raises :class:`LeaseLost` and writes
nothing. So a process that stalled past its lease can never write over the progress of
the process that took the run over.

**Reads** (``run``, ``runs``, ``merge_fields``, ``attempts``, ``log_lines``,
``cancel_requested``) are synchronous and see every committed write.
"""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..errors import StoreError
from . import batches
from .lease import LEASE_SECONDS, Fence
from .retention import prune_ops
from .rows import AttemptRow, RunRow, dump, load
from .writer import Op, Writer

_RUN_COLUMNS = (
    "id, flow, flow_file, flow_text, flow_hash, base_dir, inputs, authorizations_file, "
    'status, position, "authorization", error, executed, started, updated, lease_owner, '
    "lease_until, cancel_requested, failure, batch_id, batch_row"
)


class RunStore(ABC):
    """Where durable runs are kept: the interface every backend implements.

    A backend provides the connection-level parts (``_fetch``, ``acquire``, the writer's
    hooks ``_connect``/``_begin``/``_check_fence``/``_refused``/``_write_error``,
    ``check``, ``close``); the ops, the reads and the group-committing writer are shared.
    """

    #: Where the store is, for messages: a file path, or a URL with its password hidden.
    location: str
    #: Seconds finished runs are kept (None: all); pruned with the first run started.
    retention: float | None

    def __init__(self) -> None:
        self._pruned = False
        self._writer: Writer | None = None

    def _start_writer(self) -> None:
        self._writer = Writer(self)

    # -- what a backend provides ---------------------------------------------------------

    @property
    @abstractmethod
    def folder(self) -> Path:
        """The local folder for files kept beside the store (``provider: local``'s jobs,
        the service's token and records): the SQLite file's folder, or the default state
        folder for PostgreSQL."""

    @abstractmethod
    def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows of one read (``?`` placeholders); StoreError when the store fails."""

    @abstractmethod
    def acquire(self, run_id: str, owner: str) -> None:
        """Take the run's lease, or raise StoreError naming who holds it (one acquirer at
        a time, across processes and machines)."""

    @abstractmethod
    def prune(self, older_than: float) -> int:
        """Delete finished runs older than ``older_than`` seconds; return how many."""

    @abstractmethod
    def check(self) -> list[str]:
        """Every problem a full integrity check finds; empty when the store is sound."""

    @abstractmethod
    def close(self) -> None:
        """Finish the queued writes and close every connection."""

    # The writer thread's hooks: it opens its own connection, begins a transaction that
    # holds the write lock SQLite needs (PostgreSQL locks rows as it goes), checks a fence
    # inside it, and tells a refused write (one submission fails) from a failed store.
    @abstractmethod
    def _connect(self) -> Any: ...

    @abstractmethod
    def _begin(self, conn: Any) -> None: ...

    @abstractmethod
    def _check_fence(self, conn: Any, fence: Fence) -> None: ...

    @abstractmethod
    def _refused(self, exc: Exception) -> bool: ...

    @abstractmethod
    def _write_error(self, exc: Exception) -> StoreError: ...

    def _retry(self, exc: Exception) -> bool:
        """Whether a failed batch may simply be tried again (a deadlock PostgreSQL broke)."""
        return False

    def _reconnect(self, conn: Any) -> Any:
        """The writer's connection after a failed batch: a new one if it broke."""
        return conn

    # -- writes ----------------------------------------------------------------------

    def _submit(self, ops: Iterable[Op], fence: Fence | None) -> Any:
        if self._writer is None:
            raise StoreError("the run store is closed")
        return self._writer.submit(list(ops), fence)

    async def write(self, ops: Iterable[Op], *, fence: Fence | None = None) -> None:
        """Apply ``ops`` atomically and durably; returns once they are committed.

        With ``fence=(run_id, owner)`` the write happens only while ``owner`` still holds
        the run's lease, else it raises LeaseLost: a process that stalled past its lease
        and lost the run to a resume cannot write over the new owner's progress.
        """
        await asyncio.wrap_future(self._submit(ops, fence))

    def write_now(self, ops: Iterable[Op]) -> None:
        """The same, for callers without an event loop (the CLI's own commands)."""
        self._submit(ops, None).result()

    def write_soon(self, ops: Iterable[Op], *, fence: Fence | None = None) -> None:
        """Queue ``ops`` for the next group commit without waiting for it (log lines: a
        lost one is not worth blocking a step for, nor failing it)."""
        self._submit(ops, fence).add_done_callback(lambda f: f.exception())

    # -- the ops of runs and leases --------------------------------------------------

    def create_run_ops(
        self,
        *,
        run_id: str,
        flow: str,
        flow_file: str,
        flow_text: str,
        flow_hash: str,
        base_dir: str,
        inputs: dict[str, Any],
        authorizations_file: str | None,
        position: str | None,
        authorization: str | None,
        owner: str,
    ) -> list[Op]:
        """Record a new run, leased to ``owner`` (a duplicate id is refused)."""
        now = time.time()
        prune: list[Op] = []
        if self.retention is not None and not self._pruned:
            # Once per process and store, in the transaction that records the run.
            self._pruned = True
            prune = prune_ops(self.retention, now)
        return [
            *prune,
            (
                "INSERT INTO runs (id, flow, flow_file, flow_text, flow_hash, base_dir, inputs, "
                'authorizations_file, status, position, "authorization", started, updated, '
                "lease_owner, lease_until) VALUES (?,?,?,?,?,?,?,?,'running',?,?,?,?,?,?)",
                (
                    run_id,
                    flow,
                    flow_file,
                    flow_text,
                    flow_hash,
                    base_dir,
                    dump(inputs),
                    authorizations_file,
                    position,
                    authorization,
                    now,
                    now,
                    owner,
                    now + LEASE_SECONDS,
                ),
            ),
        ]

    def renew_ops(self, run_id: str, owner: str) -> list[Op]:
        return [
            (
                "UPDATE runs SET lease_until = ? WHERE id = ? AND lease_owner = ?",
                (time.time() + LEASE_SECONDS, run_id, owner),
            )
        ]

    def release_ops(self, run_id: str, owner: str) -> list[Op]:
        return [
            (
                "UPDATE runs SET lease_owner = NULL, lease_until = NULL "
                "WHERE id = ? AND lease_owner = ?",
                (run_id, owner),
            )
        ]

    # -- reads -----------------------------------------------------------------------

    def run(self, run_id: str) -> RunRow:
        """The run with this id, or the one run whose id starts with it."""
        found = self._query_runs("WHERE id = ? OR id LIKE ?", (run_id, run_id + "%"), limit=2)
        if not found:
            raise StoreError(f"no run {run_id!r} in {self.location}; `steprun runs` lists them")
        if len(found) > 1 and found[0].id != run_id:
            raise StoreError(f"{run_id!r} matches several runs; give more of the run id")
        return found[0]

    def runs(self, limit: int = 50) -> list[RunRow]:
        """The newest runs first."""
        return self._query_runs("", (), limit=limit)

    def _load(self, text: str, what: str, run_id: str) -> Any:
        return load(text, self.location, what, run_id)

    def _query_runs(self, where: str, params: Sequence[Any], *, limit: int | None) -> list[RunRow]:
        """Runs, newest first; ``limit=None`` for all (PostgreSQL has no ``LIMIT -1``)."""
        sql = f"SELECT {_RUN_COLUMNS} FROM runs {where} ORDER BY started DESC"
        if limit is not None:
            sql, params = sql + " LIMIT ?", (*params, limit)
        rows = self._fetch(sql, params)
        return [
            RunRow(
                id=r[0],
                flow=r[1],
                flow_file=r[2],
                flow_text=r[3],
                flow_hash=r[4],
                base_dir=r[5],
                inputs=self._load(r[6], "inputs", r[0]),
                authorizations_file=r[7],
                status=r[8],
                position=r[9],
                authorization=r[10],
                error=self._load(r[11], "error", r[0]) if r[11] else None,
                executed=r[12],
                started=r[13],
                updated=r[14],
                lease_owner=r[15],
                lease_until=r[16],
                cancel_requested=bool(r[17]),
                failure=self._load(r[18], "failure", r[0]) if r[18] else None,
                batch_id=r[19],
                batch_row=r[20],
            )
            for r in rows
        ]

    # -- batches (`run --inputs-file`; see batches.py) ----------------------------------

    create_batch_ops = staticmethod(batches.create_ops)
    batch_row_ops = staticmethod(batches.row_started_ops)

    def batch(self, batch_id: str) -> batches.Batch:
        """The batch ``batch_id`` (or a prefix of it): its rows in order, with their runs."""

        def runs_of(found: str) -> list[RunRow]:
            return self._query_runs("WHERE batch_id = ?", (found,), limit=None)

        return batches.read(self._fetch, self.location, batch_id, runs_of)

    def merge_fields(self, run_id: str) -> dict[str, Any]:
        rows = self._fetch("SELECT name, value FROM merge_fields WHERE run_id = ?", (run_id,))
        return {name: self._load(value, f"merge field {name}", run_id) for name, value in rows}

    def attempts(self, run_id: str) -> list[AttemptRow]:
        rows = self._fetch(
            "SELECT seq, step_id, step_type, attempt, status, started, ended, saved, "
            "wake_at, report FROM attempts WHERE run_id = ? ORDER BY seq",
            (run_id,),
        )
        return [
            AttemptRow(
                seq=r[0],
                step_id=r[1],
                step_type=r[2],
                attempt=r[3],
                status=r[4],
                started=r[5],
                ended=r[6],
                saved=self._load(r[7], f"attempt {r[0]} ({r[1]})", run_id),
                wake_at=r[8],
                report=self._load(r[9], f"report of attempt {r[0]}", run_id) if r[9] else None,
            )
            for r in rows
        ]

    def log_lines(self, run_id: str, attempt: int) -> list[dict[str, Any]]:
        """The log lines of one attempt (its seq), in order, as they were written."""
        rows = self._fetch(
            "SELECT seq, line FROM log_lines WHERE run_id = ? AND attempt = ? ORDER BY seq",
            (run_id, attempt),
        )
        return [self._load(r[1], f"log line {r[0]}", run_id) for r in rows]

    def cancel_requested(self, run_id: str) -> bool:
        """Whether ``steprun cancel`` asked this run to stop."""
        rows = self._fetch("SELECT cancel_requested FROM runs WHERE id = ?", (run_id,))
        return bool(rows and rows[0][0])


__all__ = ["Op", "RunStore"]
