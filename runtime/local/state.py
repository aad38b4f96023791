"""Where the local backend keeps its files, jobs, models and ledger.

In memory by default (file contents still go to a private temporary folder, so an upload
never sits in RAM). With a state directory, each change writes only the record that
changed, so a restarted server, or another process on the same folder, finds them::

    STATE_DIR/backend.db          SQLite: one row per file, job and model (JSON), the ledger
    STATE_DIR/files/<file id>     the bytes of each uploaded or generated file
    STATE_DIR/jobs/<job id>/      what a job's trainer leaves (checkpoints), on demand

Everything is created readable by its owner only (0700 folders, 0600 files). A file's
bytes outlive its deletion while a job learned from them: a fine-tuned model keeps
answering from its training data, as on OpenAI, and the rows never copy that data.

A job's progress is not stored: it is derived from the clock (see ``jobs``), so a job
that was running when the server stopped simply carries on after the restart.

Several processes may share one folder (``provider: local`` keeps its state beside the
run store, and two ``steprun`` commands may run at once): every row carries a revision,
and :meth:`Store.refresh` (run before each request) reads the rows other processes wrote
since, when SQLite's ``data_version`` says there are any.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sqlite3
import tempfile
import weakref
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, BinaryIO

from .records import Api, FileRecord, JobRecord, ModelRecord, Pause, from_json

FORMAT_VERSION = 2
DATABASE = "backend.db"
PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600

Record = FileRecord | JobRecord | ModelRecord

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (id TEXT PRIMARY KEY, rev INTEGER NOT NULL, record TEXT);
CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, rev INTEGER NOT NULL, record TEXT);
CREATE TABLE IF NOT EXISTS models (id TEXT PRIMARY KEY, rev INTEGER NOT NULL, record TEXT);
CREATE INDEX IF NOT EXISTS files_rev ON files (rev);
CREATE INDEX IF NOT EXISTS jobs_rev ON jobs (rev);
CREATE INDEX IF NOT EXISTS models_rev ON models (rev);
CREATE TABLE IF NOT EXISTS create_requests (route TEXT PRIMARY KEY, count INTEGER NOT NULL);
"""
_TABLES = ("files", "jobs", "models")


def private_dir(path: Path) -> Path:
    """``path`` as a folder; made owner-only when this call creates it."""
    if not path.is_dir():
        path.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        path.chmod(PRIVATE_DIR)  # mkdir's mode is filtered by the umask
    return path


def private_file(path: Path) -> int:
    """A new owner-only file open for writing (its descriptor)."""
    return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)


class Store:
    """All records of one backend, in dicts for reading; change them through the methods.

    ``files``, ``jobs`` and ``models`` map ids to records (a deleted file is gone from
    ``files``); ``create_requests`` counts create requests per path. After changing a
    record in place, :meth:`save` it (several at once are written in one transaction).
    """

    def __init__(self, state_dir: Path | None = None) -> None:
        self.state_dir = state_dir
        self.files: dict[str, FileRecord] = {}
        self.jobs: dict[str, JobRecord] = {}
        self.models: dict[str, ModelRecord] = {}
        self.create_requests: dict[str, int] = {}
        self._db: sqlite3.Connection | None = None
        self._batching = False
        self._revs = dict.fromkeys(_TABLES, 0)
        self._data_version = -1
        if state_dir is None:
            self.root = Path(tempfile.mkdtemp(prefix="steprun-local-"))
            weakref.finalize(self, shutil.rmtree, self.root, ignore_errors=True)
        else:
            self.root = private_dir(state_dir)
            self._db = _open(state_dir)
            weakref.finalize(self, self._db.close)
        private_dir(self.root / "files")
        self.refresh()

    @property
    def persistent(self) -> bool:
        return self._db is not None

    # -- files --

    def file_path(self, file_id: str) -> Path:
        """Where the bytes of a file are (they may outlive the file, see above)."""
        return self.root / "files" / file_id

    @contextlib.contextmanager
    def incoming(self) -> Iterator[tuple[Path, BinaryIO]]:
        """A new owner-only file to stream an upload into: (path, open for writing).

        Hand the path to :meth:`add_file` once complete; otherwise it is removed.
        """
        handle, name = tempfile.mkstemp(dir=self.root / "files", prefix=".incoming-")
        path = Path(name)
        try:
            with os.fdopen(handle, "wb") as stream:
                yield path, stream
        finally:
            path.unlink(missing_ok=True)

    def add_file(self, record: FileRecord, content: bytes | Path, *more: Record) -> None:
        """Keep a new file: its bytes (or a complete :meth:`incoming` file, moved in)."""
        target = self.file_path(record.id)
        if isinstance(content, Path):
            os.replace(content, target)
        else:
            handle = private_file(target)
            with os.fdopen(handle, "wb") as stream:
                stream.write(content)
        self.save(record, *more)

    def content(self, file_id: str) -> bytes:
        return self.file_path(file_id).read_bytes()

    def delete_file(self, file_id: str) -> None:
        self.files.pop(file_id)
        self._write("files", file_id, None)
        if not self.learned_from(file_id):
            self.file_path(file_id).unlink(missing_ok=True)

    def learned_from(self, file_id: str) -> bool:
        """Whether some job trains, or trained, on this file."""
        return any(
            file_id in job.learns_from or file_id == job.validation_file
            for job in self.jobs.values()
        )

    # -- jobs --

    def job_dir(self, job_id: str) -> Path:
        """A job's own folder for its trainer's artifacts (created owner-only on demand)."""
        return private_dir(private_dir(self.root / "jobs") / job_id)

    # -- writing --

    def save(self, record: Record, *more: Record) -> None:
        """Write these records (new or changed in place) in one transaction."""
        with self.batch():
            for item in (record, *more):
                if isinstance(item, FileRecord):
                    self.files[item.id] = item
                    self._write("files", item.id, item)
                elif isinstance(item, JobRecord):
                    self.jobs[item.id] = item
                    self._write("jobs", item.id, item)
                else:
                    self.models[item.id] = item
                    self._write("models", item.id, item)

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Write every change made inside in one transaction (nested: the outer one)."""
        if self._db is None or self._batching:
            yield
            return
        self._batching = True
        try:
            with self._db:
                self._db.execute("BEGIN IMMEDIATE")
                yield
        finally:
            self._batching = False

    def count_create_request(self, route: str) -> None:
        self.create_requests[route] = self.create_requests.get(route, 0) + 1
        if self._db is not None:
            with self._db:
                self._db.execute(
                    "INSERT INTO create_requests VALUES (?, 1) "
                    "ON CONFLICT (route) DO UPDATE SET count = count + 1",
                    (route,),
                )

    def _write(self, table: str, key: str, record: Record | None) -> None:
        if self._db is None:
            return
        data = None if record is None else json.dumps(asdict(record), separators=(",", ":"))
        with self.batch():  # revisions in commit order across processes
            self._db.execute(
                f"INSERT INTO {table} VALUES (?, (SELECT COALESCE(MAX(rev), 0) + 1 FROM "
                f"{table}), ?) ON CONFLICT (id) DO UPDATE SET rev = excluded.rev, "
                "record = excluded.record",
                (key, data),
            )

    # -- reading what other processes wrote --

    def refresh(self) -> None:
        """Take in the rows written since the last look, by this or another process."""
        db = self._db
        if db is None:
            return
        version = db.execute("PRAGMA data_version").fetchone()[0]
        if version == self._data_version:
            return
        self._data_version = version
        for table in _TABLES:
            rows = db.execute(
                f"SELECT id, rev, record FROM {table} WHERE rev > ? ORDER BY rev",
                (self._revs[table],),
            ).fetchall()
            for key, rev, text in rows:
                self._take(table, key, None if text is None else json.loads(text))
                self._revs[table] = rev
        self.create_requests = dict(db.execute("SELECT route, count FROM create_requests"))

    def _take(self, table: str, key: str, data: dict[str, Any] | None) -> None:
        if table == "files":
            if data is None:
                self.files.pop(key, None)
            else:
                self.files[key] = from_json(FileRecord, data)
        elif table == "jobs" and data is not None:
            job = JobRecord.load(data)
            known = self.jobs.get(key)
            if known is None:
                self.jobs[key] = job
            else:  # in place: handlers and caches hold on to the record
                known.__dict__.update(job.__dict__)
        elif table == "models" and data is not None:
            self.models[key] = from_json(ModelRecord, data)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def _open(state_dir: Path) -> sqlite3.Connection:
    path = state_dir / DATABASE
    if not path.exists():
        if (state_dir / "state.json").exists():
            raise ValueError(
                f"{state_dir} holds the state of an older steprun (state.json); this steprun "
                f"keeps format {FORMAT_VERSION} in {DATABASE}: start with an empty --state "
                "directory"
            )
        with contextlib.suppress(FileExistsError):
            os.close(private_file(path))  # SQLite gives its -wal and -shm files this mode
    try:
        db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        # A process that dies loses nothing; a power cut may lose the last changes, which
        # a simulated backend can afford, and each write then costs no fsync.
        db.execute("PRAGMA synchronous=NORMAL")
        db.executescript(_SCHEMA)
        found = db.execute("SELECT value FROM meta WHERE key = 'format'").fetchone()
        if found is None:
            db.execute("INSERT OR IGNORE INTO meta VALUES ('format', ?)", (str(FORMAT_VERSION),))
        elif found[0] != str(FORMAT_VERSION):
            db.close()
            raise ValueError(
                f"{path} has state format {found[0]}, this steprun reads format "
                f"{FORMAT_VERSION}; start with an empty --state directory"
            )
    except sqlite3.DatabaseError as exc:
        raise ValueError(
            f"{path} cannot be used as the local backend's state ({exc}); move it aside or "
            "start with an empty --state directory"
        ) from None
    return db


__all__ = [
    "DATABASE",
    "FORMAT_VERSION",
    "Api",
    "FileRecord",
    "JobRecord",
    "ModelRecord",
    "Pause",
    "Record",
    "Store",
    "private_dir",
    "private_file",
]
