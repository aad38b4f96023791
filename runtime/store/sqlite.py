"""The SQLite run store: runs survive a crash and resume where they stopped.

SQLite in WAL mode with ``synchronous=FULL``: a transaction is on disk when ``commit``
returns, so a run killed at any instant finds every committed step again. Writes go
through one writer thread that **group-commits**: the step boundaries of every run in the
process that arrive while a commit is under way share the next one. Two hundred concurrent
runs pay for a handful of fsyncs per round, not two hundred, and the event loop never
blocks on the disk.

What is stored (never a secret): the flow's text and hash as it was when the run started,
its inputs, the position, each merge field, the authorization *name* in effect, each step
attempt (started → finished, what it recorded with ``context.checkpoint``, its wake-up
time, its report), and a lease so that two processes never drive one run at once.

Its own parts: ``schema`` (tables and version), ``integrity`` (checks after an unclean
shutdown), ``failures`` (SQLite's and the disk's errors in words); ``base`` holds the ops,
the reads and the writer it shares with the PostgreSQL store.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..errors import StoreError
from . import failures, integrity
from .base import RunStore
from .lease import Fence, check_fence, lease_taken
from .retention import count_sql, prune_ops
from .retention import retention as retention_of_env
from .schema import SCHEMA_VERSION, create_schema, migrate


def _private(path: Path) -> None:
    """Create the store's folder (0700) and file (0600) readable by their owner only.

    The store holds flows, inputs, merge fields and API answers. SQLite gives its -wal and
    -shm files the mode of the database file, so creating that file first is enough; a
    store made by an older steprun with the umask's 0644 is tightened when opened.
    """
    if not path.parent.is_dir():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.parent.chmod(0o700)  # mkdir's mode is filtered by the umask
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        for found in (path, Path(f"{path}-wal"), Path(f"{path}-shm")):
            with contextlib.suppress(OSError):  # not ours to change, or not there
                if found.stat().st_mode & 0o077 and found.stat().st_uid == os.getuid():
                    found.chmod(0o600)


class SQLiteStore(RunStore):
    """One SQLite run store. Reads are synchronous; writes are group-committed."""

    def __init__(self, path: Path, *, retention: float | str | None = "env") -> None:
        super().__init__()
        self.path = path
        self.location = str(path)
        self.retention = retention_of_env() if isinstance(retention, str) else retention
        try:
            _private(path)
        except OSError as exc:
            raise failures.unavailable(path, exc, "create the folder of") from None
        problem = integrity.size_problem(path)
        if problem is not None:
            raise failures.damaged(path, problem)
        self._marker = integrity.OpenMarker(path)
        check = self._marker.enter()
        try:
            # WAL only once the file is known to be ours: switching a file to WAL rewrites
            # its header, and a mistyped --state must leave somebody else's database alone.
            self._read = self._connect(wal=False)
            try:
                self._init_schema(check)
                self._read.execute("PRAGMA journal_mode=WAL")
            except sqlite3.DatabaseError as exc:
                raise self._failed(exc, "open") from None
        except BaseException:
            if hasattr(self, "_read"):
                self._read.close()
            self._marker.leave()
            raise
        self._start_writer()

    @property
    def folder(self) -> Path:
        return self.path.parent

    # -- connection --------------------------------------------------------------------

    def _connect(self, *, wal: bool = True) -> sqlite3.Connection:
        try:
            conn = sqlite3.connect(
                self.path, timeout=30.0, isolation_level=None, check_same_thread=False
            )
            if wal:
                conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit is on disk before it returns, so a power cut loses nothing either.
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA foreign_keys=ON")
            return conn
        except sqlite3.DatabaseError as exc:
            raise self._failed(exc, "open") from None

    def _failed(self, exc: BaseException, doing: str = "read") -> StoreError:
        return failures.translate(self.path, exc, doing)

    def _init_schema(self, check: bool) -> None:
        conn = self._read
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version < SCHEMA_VERSION:
                # One transaction, taken before looking: two processes opening a new (or
                # older) store at once create (or migrate) it once, and a crash leaves it
                # as it was or stamped with the new version (user_version is transactional).
                conn.execute("BEGIN IMMEDIATE")
                try:
                    version = conn.execute("PRAGMA user_version").fetchone()[0]
                    if version == 0:
                        create_schema(conn, self.path)
                    elif version < SCHEMA_VERSION:
                        migrate(conn, version)
                    version = max(version, SCHEMA_VERSION)
                    conn.execute("COMMIT")
                except BaseException:
                    conn.execute("ROLLBACK")
                    raise
            if version > SCHEMA_VERSION:
                raise StoreError(
                    f"the run store {self.path} was written by a newer steprun (schema "
                    f"{version}, this one knows {SCHEMA_VERSION}); upgrade steprun, or point "
                    "--state / STEPRUN_STATE at another file"
                )
            if check:
                found = integrity.quick_check(conn)
                if found != "ok":
                    raise failures.damaged(self.path, found)
                self._marker.checked()
        except sqlite3.DatabaseError as exc:
            raise self._failed(exc) from None

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._read.close()
        self._marker.leave()

    def prune(self, older_than: float) -> int:
        """Delete finished runs older than ``older_than`` seconds; return how many."""
        now = time.time()
        sql, params = count_sql(older_than, now)
        try:
            count = int(self._read.execute(sql, params).fetchone()[0])
        except sqlite3.DatabaseError as exc:
            raise self._failed(exc) from None
        if count:
            self.write_now(prune_ops(older_than, now))
        return count

    def check(self) -> list[str]:
        """Every problem a full integrity check finds; empty when the file is sound."""
        try:
            return integrity.full_check(self._read)
        except sqlite3.DatabaseError as exc:
            return [str(exc)]

    # -- the writer's hooks ------------------------------------------------------------

    def _begin(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")  # SQLite's one write lock, taken before any read

    def _check_fence(self, conn: sqlite3.Connection, fence: Fence) -> None:
        row = conn.execute("SELECT lease_owner FROM runs WHERE id = ?", (fence[0],)).fetchone()
        check_fence(fence, row[0] if row else None)

    def _refused(self, exc: Exception) -> bool:
        return isinstance(exc, sqlite3.IntegrityError | sqlite3.ProgrammingError)

    def _write_error(self, exc: Exception) -> StoreError:
        if self._refused(exc):
            return StoreError(f"cannot write the run store {self.path}: {exc}")
        return failures.translate(self.path, exc, "write")

    # -- reads -----------------------------------------------------------------------

    def _fetch(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        try:
            return self._read.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._failed(exc) from None

    def acquire(self, run_id: str, owner: str) -> None:
        """Take the run's lease, or raise StoreError naming who holds it."""
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")  # one acquirer at a time, across processes
            row = conn.execute(
                "SELECT lease_owner, lease_until FROM runs WHERE id = ?", (run_id,)
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
        except sqlite3.DatabaseError as exc:
            raise self._failed(exc) from None
        finally:
            conn.close()


__all__ = ["SQLiteStore"]
