"""The PostgreSQL run store: the SQLite store's journal, leases and fencing, in a database
that many processes on many machines share.

Synchronous psycopg, like the SQLite store: reads are one round trip on the caller's
thread (the interface's reads are synchronous, and the CLI, the service and the durable
layer call them as such), and writes go through the same group-committing writer thread,
so a commit never blocks the event loop and the runs of a process share commits.

Fencing is transactional: a fenced write first locks its run's row (``SELECT … FOR
UPDATE``) and checks the lease owner, in the transaction that then commits the write;
``acquire`` takes the same row lock. So a lease cannot change hands between the check and
the commit, exactly as under SQLite's one write lock.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ...errors import StoreError
from ..base import RunStore
from ..lease import Fence, check_fence, lease_taken
from ..retention import count_sql, prune_ops
from ..retention import retention as retention_of_env
from ..schema import SCHEMA_VERSION
from . import schema
from .connection import Connection, connect, redact, split_schema, unavailable


class PostgresStore(RunStore):
    """One PostgreSQL run store at ``url`` (``postgresql://USER[:PASSWORD]@HOST/DB``,
    optionally ``?schema=NAME``).

    ``conninfo`` is the URL as libpq takes it (without ``schema``): what another client of
    the same database (Procrastinate's connector) connects with; ``schema`` is where the
    store's tables are. Never print either: ``location`` is the URL to show.
    """

    def __init__(
        self,
        url: str,
        *,
        folder: Path | None = None,
        retention: float | str | None = "env",
    ) -> None:
        super().__init__()
        self.url = url
        self.conninfo, self.schema = split_schema(url)
        self.location = redact(url)
        self.retention = retention_of_env() if isinstance(retention, str) else retention
        if folder is None:
            from ..opening import default_folder

            folder = default_folder()
        self._folder = folder
        self._lock = threading.Lock()  # the read connection, reconnected if it broke
        self._read: Connection = connect(url)
        try:
            schema.prepare(self._read, self.location)
        except StoreError:
            self._read.close()
            raise
        except Exception as exc:
            self._read.close()
            raise unavailable(url, exc, "open") from None
        self._start_writer()

    @property
    def folder(self) -> Path:
        return self._folder

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        self._read.close()

    def check(self) -> list[str]:
        """PostgreSQL keeps its own files sound; what can be wrong is our tables."""
        try:
            found = schema.version(self._read)
        except Exception as exc:
            return [str(unavailable(self.url, exc, "read"))]
        if found != SCHEMA_VERSION:
            return [f"schema version {found}, expected {SCHEMA_VERSION}"]
        return []

    def prune(self, older_than: float) -> int:
        now = time.time()
        sql, params = count_sql(older_than, now)
        count = int(self._fetch(sql, params)[0][0])
        if count:
            self.write_now(prune_ops(older_than, now))
        return count

    # -- reads -----------------------------------------------------------------------

    def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            for tries_left in (1, 0):
                try:
                    rows: list[tuple[Any, ...]] = self._read.execute(sql, params).fetchall()
                    return rows
                except Exception as exc:
                    if tries_left and self._read.broken:
                        # The server restarted or dropped us: one fresh connection, once.
                        self._read.close()
                        self._read = connect(self.url)
                        continue
                    raise unavailable(self.url, exc, "read") from None
        raise AssertionError("unreachable")

    def acquire(self, run_id: str, owner: str) -> None:
        conn = connect(self.url)
        try:
            conn.execute("BEGIN")
            # The run's row lock: fenced writes of the previous owner wait for this
            # transaction, and then see the new owner.
            row = conn.execute(
                "SELECT lease_owner, lease_until FROM runs WHERE id = ? FOR UPDATE", (run_id,)
            ).fetchone()
            try:
                until = lease_taken(self.location, run_id, owner, row)
            except StoreError:
                conn.execute("ROLLBACK")
                raise
            conn.execute(
                "UPDATE runs SET lease_owner = ?, lease_until = ? WHERE id = ?",
                (owner, until, run_id),
            )
            conn.execute("COMMIT")
        except StoreError:
            raise
        except Exception as exc:
            raise unavailable(self.url, exc, "write") from None
        finally:
            conn.close()

    # -- the writer's hooks ----------------------------------------------------------

    def _connect(self) -> Connection:
        conn: Connection = connect(self.url)
        return conn

    def _begin(self, conn: Connection) -> None:
        conn.execute("BEGIN")

    def _check_fence(self, conn: Connection, fence: Fence) -> None:
        row = conn.execute(
            "SELECT lease_owner FROM runs WHERE id = ? FOR UPDATE", (fence[0],)
        ).fetchone()
        check_fence(fence, row[0] if row else None)

    def _refused(self, exc: Exception) -> bool:
        import psycopg

        return isinstance(exc, psycopg.errors.IntegrityError | psycopg.ProgrammingError)

    def _retry(self, exc: Exception) -> bool:
        import psycopg

        # Two processes' batches that lock the same runs' rows in opposite orders (a
        # cancel, a takeover): PostgreSQL breaks the deadlock by failing one of them.
        return isinstance(
            exc, psycopg.errors.DeadlockDetected | psycopg.errors.SerializationFailure
        )

    def _write_error(self, exc: Exception) -> StoreError:
        if self._refused(exc):
            return StoreError(f"cannot write the run store {self.location}: {exc}")
        return unavailable(self.url, exc, "write")

    def _reconnect(self, conn: Connection) -> Connection:
        if not conn.broken:
            return conn
        conn.close()
        return self._connect()


__all__ = ["PostgresStore"]
