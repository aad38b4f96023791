"""The run stores the store and durable tests run against: SQLite and PostgreSQL.

PostgreSQL is the real server on 127.0.0.1:5432 (``.ci/run`` starts it; trust auth as
``postgres``; ``STEPRUN_TEST_POSTGRES`` names another server's admin URL). The test
session creates one database of its own (the ``postgres`` fixture of tests/conftest.py)
and drops it at the end; each test's store is a
fresh schema in it (``?schema=``), so tests are isolated from each other and from other
sessions running at once, and cost no database creation each.

:class:`Reader` reads (and, for a test that plays another process, writes) a store the
way any other client would: ``sqlite3`` on the file, read-only; ``psycopg`` on the schema.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from contextlib import closing
from pathlib import Path
from typing import Any

import psycopg

ADMIN_URL = os.environ.get("STEPRUN_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
KINDS = ("sqlite", "postgres")


class Postgres:
    """This session's database on the test server, and a fresh schema per store."""

    def __init__(self, admin_url: str = ADMIN_URL) -> None:
        self.admin_url = admin_url
        self.database = f"steprun_test_{os.getpid()}_{uuid.uuid4().hex[:8]}"
        self._count = itertools.count(1)
        try:
            with psycopg.connect(admin_url, autocommit=True, connect_timeout=10) as conn:
                conn.execute(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")
                conn.execute(f"CREATE DATABASE {self.database}")
        except psycopg.OperationalError as exc:
            raise RuntimeError(
                f"the store tests need PostgreSQL at {admin_url} ({exc}); start it "
                "(.ci/run does: pg_ctlcluster 15 main start) or set STEPRUN_TEST_POSTGRES"
            ) from None
        base = admin_url.rpartition("/")[0]
        self.url = f"{base}/{self.database}"

    def fresh(self, name: str = "") -> str:
        """The URL of a new, empty store of its own."""
        return f"{self.url}?schema=t{next(self._count)}{name}"

    def drop(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {self.database} WITH (FORCE)")


def is_url(state: str | Path) -> bool:
    return isinstance(state, str) and state.startswith("postgresql://")


class Row(tuple[Any, ...]):
    """A result row read by position or by column name, like ``sqlite3.Row``."""

    names: tuple[str, ...] = ()

    def __getitem__(self, key: Any) -> Any:
        if isinstance(key, str):
            return super().__getitem__(self.names.index(key))
        return super().__getitem__(key)

    def keys(self) -> tuple[str, ...]:
        return self.names


class Reader:
    """Another client of a store: reads rows, and writes what a test plays."""

    def __init__(self, state: str | Path) -> None:
        self.state = state

    def query(self, sql: str, *params: Any) -> Sequence[Any]:
        """Rows (by position or name); none while the store or its tables do not exist."""
        if is_url(self.state):
            return self._postgres(sql, params)
        path = Path(self.state)
        if not path.exists():
            return []
        uri = f"file:{path}?mode=ro"
        with closing(sqlite3.connect(uri, uri=True, timeout=10)) as conn:
            conn.row_factory = sqlite3.Row
            try:
                return conn.execute(sql, params).fetchall()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    return []  # the child has not created its schema yet
                raise

    def execute(self, sql: str, *params: Any) -> None:
        """One statement in its own transaction, as another process would write it."""
        if is_url(self.state):
            self._postgres(sql, params, rows=False)
            return
        with closing(sqlite3.connect(self.state, timeout=30)) as conn:
            conn.execute(sql, params)
            conn.commit()

    def _postgres(self, sql: str, params: Sequence[Any], rows: bool = True) -> list[Any]:
        from steprun.runtime.store.postgres.connection import qmark, split_schema

        conninfo, schema = split_schema(str(self.state))
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute(f"SET search_path TO {schema}")
            try:
                cursor = conn.execute(qmark(sql), params or None)
            except psycopg.errors.UndefinedTable:
                if not rows:
                    raise
                return []  # the child has not created its schema yet
            if not rows:
                return []
            names = tuple(c.name for c in cursor.description or ())
            found = []
            for values in cursor.fetchall():
                row = Row(values)
                row.names = names
                found.append(row)
            return found


def states(kind: str, postgres: Postgres | None, folder: Path) -> Iterator[str | Path]:
    """Fresh stores of one kind, one per ``next()``: files in ``folder``, or schemas."""
    for n in itertools.count(1):
        if kind == "sqlite":
            yield folder / f"store-{n}" / "runs.db"
        else:
            assert postgres is not None
            yield postgres.fresh()


__all__ = ["KINDS", "Postgres", "Reader", "Row", "is_url", "states"]
