"""The run store's batches: rows kept from the start, one run per row, pruned together.

On SQLite and PostgreSQL alike (``store``, ``state``); the migration tests are per backend.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from steprun.runtime.errors import StoreError
from steprun.runtime.store import SCHEMA_VERSION, RunStore, SQLiteStore, open_store
from tests.runtime.stores import Postgres, Reader
from tests.runtime.test_store import new_run


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "runs.db"


@pytest.fixture
def store(state: str | Path) -> Iterator[RunStore]:
    found = open_store(state, retention=None)
    yield found
    found.close()


def new_batch(store: RunStore, batch_id: str, lines: list[int]) -> None:
    store.write_now(
        store.create_batch_ops(
            batch_id=batch_id,
            flow="f",
            flow_file="f.yaml",
            flow_text="flow: f",
            flow_hash="0" * 64,
            base_dir="/",
            inputs_file="/rows.jsonl",
            authorizations_file=None,
            concurrency=2,
            rows=[(line, {"n": line}) for line in lines],
        )
    )


def start_row(store: RunStore, run_id: str, batch_id: str, row: int) -> None:
    store.write_now([*new_run(store, run_id), *store.batch_row_ops(run_id, batch_id, row)])


def test_a_batch_keeps_every_row_and_knows_which_ones_started(store: RunStore) -> None:
    new_batch(store, "batch_1", [1, 2, 4])  # line 3 of its file was blank
    start_row(store, "run-b", "batch_1", 2)

    batch = store.batch("batch_")  # a prefix is enough
    assert (batch.id, batch.inputs_file, batch.concurrency) == ("batch_1", "/rows.jsonl", 2)
    assert [(r.row, r.inputs, r.run and r.run.id) for r in batch.rows] == [
        (1, {"n": 1}, None),
        (2, {"n": 2}, "run-b"),
        (4, {"n": 4}, None),
    ]
    run = store.run("run-b")
    assert (run.batch_id, run.batch_row) == ("batch_1", 2)
    assert run.public()["batch"] == "batch_1" and run.public()["row"] == 2


def test_a_row_is_started_by_one_run_only(store: RunStore) -> None:
    new_batch(store, "batch_1", [1])
    start_row(store, "run-a", "batch_1", 1)
    # A second resume of the batch that also tries to start row 1 is refused, and the run
    # it would have created is not there either: one transaction.
    with pytest.raises(StoreError, match=r"(?i)unique"):
        start_row(store, "run-b", "batch_1", 1)
    assert [r.id for r in store.runs()] == ["run-a"]


def test_an_unknown_batch_is_named(store: RunStore) -> None:
    with pytest.raises(StoreError, match="no batch 'batch_x'"):
        store.batch("batch_x")


def test_a_batch_is_pruned_with_its_first_pruned_run(state: str | Path) -> None:
    store = open_store(state, retention=None)
    try:
        new_batch(store, "batch_old", [1, 2])
        start_row(store, "run-1", "batch_old", 1)
        start_row(store, "run-2", "batch_old", 2)
        new_batch(store, "batch_new", [1])
        store.write_now(
            [
                (
                    "UPDATE runs SET status = 'succeeded', updated = ? WHERE id = 'run-1'",
                    (time.time() - 1000,),
                ),
            ]
        )
        assert store.prune(older_than=100) == 1
        with pytest.raises(StoreError, match="no batch 'batch_old'"):
            store.batch("batch_old")
        assert store.run("run-2").batch_id == "batch_old"  # kept, its batch gone
        assert [r.row for r in store.batch("batch_new").rows] == [1]
    finally:
        store.close()
    assert Reader(state).query("SELECT count(*) FROM batch_rows")[0][0] == 1


def test_a_version_2_store_is_migrated_and_its_runs_have_no_batch(path: Path) -> None:
    from steprun.runtime.store.schema import MIGRATIONS

    path.parent.mkdir(parents=True)
    with closing(sqlite3.connect(path)) as conn:
        for version in (1, 2):
            for statement in MIGRATIONS[version].split(";"):
                conn.execute(statement)
        conn.execute(
            "INSERT INTO runs (id, flow, flow_file, flow_text, flow_hash, base_dir, inputs, "
            "status, started, updated) VALUES ('run_old', 'f', 'f.yaml', '', '', '.', '{}', "
            "'failed', 1, 1)"
        )
        conn.execute("PRAGMA user_version=2")
        conn.commit()
    store = SQLiteStore(path, retention=None)
    try:
        (old,) = store.runs()
        assert (old.id, old.batch_id, old.batch_row) == ("run_old", None, None)
        new_batch(store, "batch_1", [1])
        assert [r.run for r in store.batch("batch_1").rows] == [None]
    finally:
        store.close()
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3


def test_a_version_2_postgresql_store_is_migrated_and_its_runs_have_no_batch(
    postgres: Postgres,
) -> None:
    from steprun.runtime.store.postgres.schema import MIGRATIONS

    url = postgres.fresh()
    schema = url.rpartition("schema=")[2]
    db = Reader(url)
    db.execute(f"CREATE SCHEMA {schema}")
    for version in (1, 2):
        for statement in MIGRATIONS[version].split(";"):
            if statement.strip():
                db.execute(statement)
    db.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
    db.execute("INSERT INTO schema_version VALUES (2)")
    db.execute(
        "INSERT INTO runs (id, flow, flow_file, flow_text, flow_hash, base_dir, inputs, "
        "status, started, updated) VALUES ('run_old', 'f', 'f.yaml', '', '', '.', '{}', "
        "'failed', 1, 1)"
    )
    store = open_store(url, retention=None)
    try:
        (old,) = store.runs()
        assert (old.id, old.batch_id, old.batch_row) == ("run_old", None, None)
        new_batch(store, "batch_1", [1])
        assert [r.run for r in store.batch("batch_1").rows] == [None]
    finally:
        store.close()
    assert db.query("SELECT version FROM schema_version")[0][0] == SCHEMA_VERSION == 3
