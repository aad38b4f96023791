"""The run store: runs survive a crash and resume where they stopped.

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

The parts: ``schema`` (tables and version), ``rows`` (what reads return), ``lease`` (one
driver per run), ``writer`` (the group-committing thread).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from ..errors import StoreError
from . import batches, failures, integrity
from .lease import LEASE_SECONDS, Fence, owner_alive
from .retention import count_sql, prune_ops
from .retention import retention as retention_of_env
from .rows import AttemptRow, RunRow, dump, load
from .schema import SCHEMA_VERSION, create_schema, migrate
from .writer import Op, Writer


def default_path(environ: dict[str, str] | os._Environ[str] | None = None) -> Path:
    """``$STEPRUN_STATE``, else ``$XDG_STATE_HOME/steprun/runs.db`` (~/.local/state/…)."""
    env = os.environ if environ is None else environ
    if env.get("STEPRUN_STATE"):
        return Path(env["STEPRUN_STATE"]).expanduser()
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "steprun" / "runs.db"


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


class RunStore:
    """One SQLite run store. Reads are synchronous; writes are group-committed."""

    def __init__(self, path: Path, *, retention: float | str | None = "env") -> None:
        self.path = path
        # Seconds finished runs are kept (None: all); pruned with the first run started.
        self.retention = retention_of_env() if isinstance(retention, str) else retention
        self._pruned = False
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
        self._writer = Writer(self)

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

    # -- writes ----------------------------------------------------------------------

    async def write(self, ops: Iterable[Op], *, fence: Fence | None = None) -> None:
        """Apply ``ops`` atomically and durably; returns once they are committed.

        With ``fence=(run_id, owner)`` the write happens only while ``owner`` still holds
        the run's lease, else it raises LeaseLost: a process that stalled past its lease
        and lost the run to a resume cannot write over the new owner's progress.
        """
        future = self._writer.submit(list(ops), fence)
        await asyncio.wrap_future(future)

    def write_now(self, ops: Iterable[Op]) -> None:
        """The same, for callers without an event loop (the CLI's own commands)."""
        self._writer.submit(list(ops)).result()

    # -- runs ------------------------------------------------------------------------

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
                "authorizations_file, status, position, authorization, started, updated, "
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

    def acquire(self, run_id: str, owner: str) -> None:
        """Take the run's lease, or raise StoreError naming who holds it."""
        conn = self._connect()
        try:
            conn.execute("BEGIN IMMEDIATE")  # one acquirer at a time, across processes
            row = conn.execute(
                "SELECT lease_owner, lease_until FROM runs WHERE id = ?", (run_id,)
            ).fetchone()
            if row is None:
                conn.execute("ROLLBACK")
                raise StoreError(f"no run {run_id!r} in {self.path}; `steprun runs` lists them")
            holder, until = row
            now = time.time()
            if holder and holder != owner and until and until > now and owner_alive(holder):
                conn.execute("ROLLBACK")
                raise StoreError(
                    f"run {run_id} is being run by another process ({holder}, lease until "
                    f"{time.strftime('%H:%M:%S', time.localtime(until))}); wait for it to "
                    "finish, or stop it with `steprun cancel " + run_id + "`"
                )
            conn.execute(
                "UPDATE runs SET lease_owner = ?, lease_until = ? WHERE id = ?",
                (owner, now + LEASE_SECONDS, run_id),
            )
            conn.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            raise self._failed(exc) from None
        finally:
            conn.close()

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

    def run(self, run_id: str) -> RunRow:
        found = self._query_runs("WHERE id = ? OR id LIKE ?", (run_id, run_id + "%"), limit=2)
        if not found:
            raise StoreError(f"no run {run_id!r} in {self.path}; `steprun runs` lists them")
        if len(found) > 1 and found[0].id != run_id:
            raise StoreError(f"{run_id!r} matches several runs; give more of the run id")
        return found[0]

    def runs(self, limit: int = 50) -> list[RunRow]:
        return self._query_runs("", (), limit=limit)

    def _query_runs(self, where: str, params: Sequence[Any], *, limit: int) -> list[RunRow]:
        try:
            rows = self._read.execute(
                "SELECT id, flow, flow_file, flow_text, flow_hash, base_dir, inputs, "
                "authorizations_file, status, position, authorization, error, executed, "
                "started, updated, lease_owner, lease_until, cancel_requested, failure, batch_id, "
                "batch_row "
                f"FROM runs {where} ORDER BY started DESC LIMIT ?",
                (*params, limit),
            ).fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._failed(exc) from None
        return [
            RunRow(
                id=r[0],
                flow=r[1],
                flow_file=r[2],
                flow_text=r[3],
                flow_hash=r[4],
                base_dir=r[5],
                inputs=load(r[6], self.path, "inputs", r[0]),
                authorizations_file=r[7],
                status=r[8],
                position=r[9],
                authorization=r[10],
                error=load(r[11], self.path, "error", r[0]) if r[11] else None,
                executed=r[12],
                started=r[13],
                updated=r[14],
                lease_owner=r[15],
                lease_until=r[16],
                cancel_requested=bool(r[17]),
                failure=load(r[18], self.path, "failure", r[0]) if r[18] else None,
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
            return self._query_runs("WHERE batch_id = ?", (found,), limit=-1)

        try:
            return batches.read(self._read, self.path, batch_id, runs_of)
        except sqlite3.DatabaseError as exc:
            raise self._failed(exc) from None

    def merge_fields(self, run_id: str) -> dict[str, Any]:
        try:
            rows = self._read.execute(
                "SELECT name, value FROM merge_fields WHERE run_id = ?", (run_id,)
            ).fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._failed(exc) from None
        return {name: load(value, self.path, f"merge field {name}", run_id) for name, value in rows}

    def attempts(self, run_id: str) -> list[AttemptRow]:
        try:
            rows = self._read.execute(
                "SELECT seq, step_id, step_type, attempt, status, started, ended, saved, "
                "wake_at, report FROM attempts WHERE run_id = ? ORDER BY seq",
                (run_id,),
            ).fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._failed(exc) from None
        return [
            AttemptRow(
                seq=r[0],
                step_id=r[1],
                step_type=r[2],
                attempt=r[3],
                status=r[4],
                started=r[5],
                ended=r[6],
                saved=load(r[7], self.path, f"attempt {r[0]} ({r[1]})", run_id),
                wake_at=r[8],
                report=load(r[9], self.path, f"report of attempt {r[0]}", run_id) if r[9] else None,
            )
            for r in rows
        ]

    def log_lines(self, run_id: str, attempt: int) -> list[dict[str, Any]]:
        """The log lines of one attempt (its seq), in order, as they were written."""
        try:
            rows = self._read.execute(
                "SELECT seq, line FROM log_lines WHERE run_id = ? AND attempt = ? ORDER BY seq",
                (run_id, attempt),
            ).fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._failed(exc) from None
        return [load(r[1], self.path, f"log line {r[0]}", run_id) for r in rows]

    def write_soon(self, ops: Iterable[Op], *, fence: Fence | None = None) -> None:
        """Queue ``ops`` for the next group commit without waiting for it (log lines: a
        lost one is not worth blocking a step for, nor failing it)."""
        self._writer.submit(list(ops), fence).add_done_callback(lambda f: f.exception())

    def cancel_requested(self, run_id: str) -> bool:
        row = self._read.execute(
            "SELECT cancel_requested FROM runs WHERE id = ?", (run_id,)
        ).fetchone()
        return bool(row and row[0])


__all__ = ["RunStore", "default_path"]
