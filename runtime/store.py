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

Tables are created on first use; ``PRAGMA user_version`` records the schema version so a
future steprun can migrate a store instead of misreading it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import StoreError

SCHEMA_VERSION = 1
LEASE_SECONDS = 30.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    flow TEXT NOT NULL,
    flow_file TEXT NOT NULL,
    flow_text TEXT NOT NULL,
    flow_hash TEXT NOT NULL,
    base_dir TEXT NOT NULL,
    inputs TEXT NOT NULL,
    authorizations_file TEXT,
    status TEXT NOT NULL,
    position TEXT,
    authorization TEXT,
    error TEXT,
    executed INTEGER NOT NULL DEFAULT 0,
    started REAL NOT NULL,
    updated REAL NOT NULL,
    lease_owner TEXT,
    lease_until REAL,
    cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS runs_started ON runs (started);
CREATE TABLE IF NOT EXISTS merge_fields (
    run_id TEXT NOT NULL REFERENCES runs (id),
    name TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (run_id, name)
);
CREATE TABLE IF NOT EXISTS attempts (
    run_id TEXT NOT NULL REFERENCES runs (id),
    seq INTEGER NOT NULL,
    step_id TEXT NOT NULL,
    step_type TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL,
    started REAL NOT NULL,
    ended REAL,
    saved TEXT NOT NULL DEFAULT '{}',
    wake_at REAL,
    report TEXT,
    PRIMARY KEY (run_id, seq)
);
"""

Op = tuple[str, Sequence[Any]]
Fence = tuple[str, str]  # (run id, lease owner) a write is only valid for


def default_path(environ: dict[str, str] | os._Environ[str] | None = None) -> Path:
    """``$STEPRUN_STATE``, else ``$XDG_STATE_HOME/steprun/runs.db`` (~/.local/state/…)."""
    env = os.environ if environ is None else environ
    if env.get("STEPRUN_STATE"):
        return Path(env["STEPRUN_STATE"]).expanduser()
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "steprun" / "runs.db"


def lease_owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_alive(owner: str) -> bool:
    """Whether the process holding a lease still exists (only knowable on this host)."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True  # another machine: trust the lease's expiry
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass
class RunRow:
    id: str
    flow: str
    flow_file: str
    flow_text: str
    flow_hash: str
    base_dir: str
    inputs: dict[str, Any]
    authorizations_file: str | None
    status: str
    position: str | None
    authorization: str | None
    error: dict[str, Any] | None
    executed: int
    started: float
    updated: float
    lease_owner: str | None
    lease_until: float | None
    cancel_requested: bool

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "flow": self.flow,
            "flow_file": self.flow_file,
            "status": self.status,
            "current_step": self.position,
            "started": self.started,
            "updated": self.updated,
            "steps_executed": self.executed,
            "error": self.error,
        }


@dataclass
class AttemptRow:
    seq: int
    step_id: str
    step_type: str
    attempt: int
    status: str
    started: float
    ended: float | None
    saved: dict[str, Any]
    wake_at: float | None
    report: dict[str, Any] | None


class LeaseLost(StoreError):
    """This process no longer holds the lease of the run it was driving."""

    exit_code = 1


class RunStore:
    """One SQLite run store. Reads are synchronous; writes are group-committed."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StoreError(
                f"cannot create the folder of the run store {path}: {exc.strerror or exc}; "
                "choose another place with --state or STEPRUN_STATE"
            ) from None
        # WAL only once the file is known to be ours: switching a file to WAL rewrites
        # its header, and a mistyped --state must leave somebody else's database alone.
        self._read = self._connect(wal=False)
        try:
            self._init_schema()
            self._read.execute("PRAGMA journal_mode=WAL")
        except sqlite3.DatabaseError as exc:
            self._read.close()
            raise self._corrupt(exc) from None
        except BaseException:
            self._read.close()
            raise
        self._writer = _Writer(self)

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
            raise self._corrupt(exc) from None

    def _corrupt(self, exc: Exception) -> StoreError:
        return StoreError(
            f"the run store {self.path} cannot be read ({exc}). It is damaged or not a steprun "
            "store. Nothing was run. Move it aside (e.g. `mv "
            f"{self.path} {self.path}.damaged`) to start a new store, or point --state / "
            "STEPRUN_STATE at another file; committed steps in the damaged file are not re-run "
            "by steprun on its own."
        )

    def _init_schema(self) -> None:
        conn = self._read
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version == 0:
                # One transaction, taken before looking: two processes opening a new store
                # at once create it once, and a crash leaves either no tables or a store
                # stamped with its version (user_version is transactional).
                conn.execute("BEGIN IMMEDIATE")
                try:
                    version = conn.execute("PRAGMA user_version").fetchone()[0]
                    if version == 0:
                        self._create_schema(conn)
                        version = SCHEMA_VERSION
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
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise self._corrupt(RuntimeError(check))
        except sqlite3.DatabaseError as exc:
            raise self._corrupt(exc) from None

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        found = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        foreign = sorted(found - {"runs", "merge_fields", "attempts"})
        if foreign:
            # Tables of its own and no version: somebody else's SQLite file (a mistyped
            # --state). Adding ours would hide the mistake and change a file not ours.
            raise StoreError(
                f"{self.path} is an SQLite database but not a steprun run store (it has "
                f"tables {', '.join(foreign[:5])} and no steprun schema version); point "
                "--state / STEPRUN_STATE at a steprun store or at a new file"
            )
        # Statement by statement: executescript() would commit the open transaction first.
        for statement in _SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def close(self) -> None:
        self._writer.close()
        self._read.close()

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
        return [
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
                    _dump(inputs),
                    authorizations_file,
                    position,
                    authorization,
                    now,
                    now,
                    owner,
                    now + LEASE_SECONDS,
                ),
            )
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
            if holder and holder != owner and until and until > now and _owner_alive(holder):
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
            raise self._corrupt(exc) from None
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
                "started, updated, lease_owner, lease_until, cancel_requested FROM runs "
                f"{where} ORDER BY started DESC LIMIT ?",
                (*params, limit),
            ).fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._corrupt(exc) from None
        return [
            RunRow(
                id=r[0],
                flow=r[1],
                flow_file=r[2],
                flow_text=r[3],
                flow_hash=r[4],
                base_dir=r[5],
                inputs=_load(r[6], self, "inputs", r[0]),
                authorizations_file=r[7],
                status=r[8],
                position=r[9],
                authorization=r[10],
                error=_load(r[11], self, "error", r[0]) if r[11] else None,
                executed=r[12],
                started=r[13],
                updated=r[14],
                lease_owner=r[15],
                lease_until=r[16],
                cancel_requested=bool(r[17]),
            )
            for r in rows
        ]

    def merge_fields(self, run_id: str) -> dict[str, Any]:
        try:
            rows = self._read.execute(
                "SELECT name, value FROM merge_fields WHERE run_id = ?", (run_id,)
            ).fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._corrupt(exc) from None
        return {name: _load(value, self, f"merge field {name}", run_id) for name, value in rows}

    def attempts(self, run_id: str) -> list[AttemptRow]:
        try:
            rows = self._read.execute(
                "SELECT seq, step_id, step_type, attempt, status, started, ended, saved, "
                "wake_at, report FROM attempts WHERE run_id = ? ORDER BY seq",
                (run_id,),
            ).fetchall()
        except sqlite3.DatabaseError as exc:
            raise self._corrupt(exc) from None
        return [
            AttemptRow(
                seq=r[0],
                step_id=r[1],
                step_type=r[2],
                attempt=r[3],
                status=r[4],
                started=r[5],
                ended=r[6],
                saved=_load(r[7], self, f"attempt {r[0]} ({r[1]})", run_id),
                wake_at=r[8],
                report=_load(r[9], self, f"report of attempt {r[0]}", run_id) if r[9] else None,
            )
            for r in rows
        ]

    def cancel_requested(self, run_id: str) -> bool:
        row = self._read.execute(
            "SELECT cancel_requested FROM runs WHERE id = ?", (run_id,)
        ).fetchone()
        return bool(row and row[0])


class _Writer:
    """The one thread that writes: batches whatever is queued into one transaction."""

    def __init__(self, store: RunStore) -> None:
        self._store = store
        self._lock = threading.Condition()
        self._queue: list[tuple[list[Op], Fence | None, Future[None]]] = []
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name="steprun-store", daemon=True)
        self._thread.start()

    def submit(self, ops: list[Op], fence: Fence | None = None) -> Future[None]:
        future: Future[None] = Future()
        with self._lock:
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
        conn = self._store._connect()
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
                refused: dict[int, StoreError] = {}
                try:
                    conn.execute("BEGIN IMMEDIATE")
                    for index, (ops, fence, _) in enumerate(batch):
                        # A savepoint per submission: one run's refused write (a duplicate
                        # run id, a lost lease) fails that run alone, not every run
                        # sharing the commit.
                        conn.execute("SAVEPOINT one")
                        try:
                            if fence is not None:
                                self._check_fence(conn, fence)
                            for sql, params in ops:
                                conn.execute(sql, params)
                        except LeaseLost as exc:
                            conn.execute("ROLLBACK TO one")
                            refused[index] = exc
                        except (sqlite3.IntegrityError, sqlite3.ProgrammingError) as exc:
                            conn.execute("ROLLBACK TO one")
                            refused[index] = self._error(exc)
                        conn.execute("RELEASE one")
                    conn.execute("COMMIT")
                except Exception as exc:  # the store itself failed: nothing was written
                    # Never let this thread die: every later write would wait forever.
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                    error = self._error(exc)
                    for _, _, future in batch:
                        future.set_exception(error)
                else:
                    for index, (_, _, future) in enumerate(batch):
                        if index in refused:
                            future.set_exception(refused[index])
                        else:
                            future.set_result(None)
        finally:
            conn.close()

    def _check_fence(self, conn: sqlite3.Connection, fence: Fence) -> None:
        run_id, owner = fence
        row = conn.execute("SELECT lease_owner FROM runs WHERE id = ?", (run_id,)).fetchone()
        holder = row[0] if row else None
        if holder != owner:
            taken = f"another process ({holder}) took it over" if holder else "its lease ended"
            raise LeaseLost(
                f"run {run_id} is no longer this process's to drive: {taken} while this "
                "one was not renewing its lease (stalled or suspended for more than "
                f"{LEASE_SECONDS:g} s). This process stops; `steprun show {run_id}` shows "
                "where the run is."
            )

    def _error(self, exc: Exception) -> StoreError:
        if isinstance(exc, sqlite3.DatabaseError) and "malformed" in str(exc).lower():
            return self._store._corrupt(exc)
        return StoreError(f"cannot write the run store {self._store.path}: {exc}")


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _load(text: str, store: RunStore, what: str, run_id: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        raise StoreError(
            f"the run store {store.path} holds a damaged value ({what}) of run {run_id}: not JSON, "
            "so that run cannot be shown or resumed safely; start it again as a new run. "
            "Other runs in the store are not affected; to start a new store instead, move "
            f"the file aside (e.g. `mv {store.path} {store.path}.damaged`)."
        ) from None


__all__ = [
    "LEASE_SECONDS",
    "SCHEMA_VERSION",
    "AttemptRow",
    "Fence",
    "LeaseLost",
    "RunRow",
    "RunStore",
    "default_path",
    "lease_owner",
]
