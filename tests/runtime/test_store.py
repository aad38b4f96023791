"""The run store on its own: group commit, the lease, the schema version, damage.

A test that takes ``store`` (or ``state``) runs against SQLite and PostgreSQL alike; the
ones that take ``path`` are about the SQLite file itself (its WAL, modes, damage).
"""

from __future__ import annotations

import asyncio
import os
import socket
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from steprun.runtime.errors import StoreError
from steprun.runtime.store import (
    LEASE_SECONDS,
    SCHEMA_VERSION,
    LeaseLost,
    RunStore,
    SQLiteStore,
    default_path,
    lease_owner,
    open_store,
)
from tests.runtime.stores import Reader, is_url


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "state" / "runs.db"


@pytest.fixture
def sqlite_store(path: Path) -> Iterator[RunStore]:
    found = SQLiteStore(path)
    yield found
    found.close()


@pytest.fixture
def store(state: str | Path) -> Iterator[RunStore]:
    found = open_store(state)
    yield found
    found.close()


def new_run(store: RunStore, run_id: str, owner: str = "elsewhere:1") -> list[tuple[str, tuple]]:
    return store.create_run_ops(  # type: ignore[return-value]
        run_id=run_id,
        flow="f",
        flow_file="f.yaml",
        flow_text="flow: f",
        flow_hash="0" * 64,
        base_dir="/",
        inputs={"n": 1},
        authorizations_file=None,
        position="a",
        authorization=None,
        owner=owner,
    )


def wal_frames(path: Path) -> int:
    """Frames written to the WAL since it was last reset: every commit adds at least one."""
    with closing(sqlite3.connect(path)) as conn:
        return int(conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])


def reset_wal(path: Path) -> None:
    with closing(sqlite3.connect(path)) as conn:
        busy, frames, _ = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        assert (busy, frames) == (0, 0)


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    done = subprocess.run([sys.executable, "-c", "pass"], check=True)
    assert done.returncode == 0
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


# -- where the store lives ---------------------------------------------------------------


def test_default_path_honours_steprun_state_then_the_xdg_state_home(tmp_path: Path) -> None:
    assert default_path({"STEPRUN_STATE": str(tmp_path / "x.db")}) == tmp_path / "x.db"
    xdg = default_path({"XDG_STATE_HOME": str(tmp_path)})
    assert xdg == tmp_path / "steprun" / "runs.db"
    assert default_path({}) == Path.home() / ".local" / "state" / "steprun" / "runs.db"


def test_a_new_store_is_in_wal_mode_and_stamped_with_its_schema_version(
    sqlite_store: RunStore, path: Path
) -> None:
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert tables == {"runs", "merge_fields", "attempts", "log_lines", "batches", "batch_rows"}


def test_a_version_1_store_is_migrated_and_keeps_its_runs(path: Path) -> None:
    from steprun.runtime.store.schema import MIGRATIONS

    path.parent.mkdir(parents=True)
    with closing(sqlite3.connect(path)) as conn:
        for statement in MIGRATIONS[1].split(";"):
            conn.execute(statement)
        conn.execute(
            "INSERT INTO runs (id, flow, flow_file, flow_text, flow_hash, base_dir, inputs, "
            "status, started, updated) VALUES ('run_old', 'f', 'f.yaml', '', '', '.', '{}', "
            "'succeeded', 1, 1)"
        )
        conn.execute("PRAGMA user_version=1")
        conn.commit()
    store = SQLiteStore(path)
    try:
        (old,) = store.runs()
        assert (old.id, old.status, old.failure) == ("run_old", "succeeded", None)
        assert (old.batch_id, old.batch_row) == (None, None)
        assert store.log_lines("run_old", 1) == []
    finally:
        store.close()
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION == 3


def test_a_new_store_its_wal_and_shm_and_its_folder_are_the_owners_only(
    sqlite_store: RunStore, path: Path
) -> None:
    # Issue #8: they were 0644 in a 0755 folder, readable by every user of the machine.
    sqlite_store.write_now(new_run(sqlite_store, "run-1"))
    files = {p.name: stat.S_IMODE(p.stat().st_mode) for p in path.parent.iterdir()}
    assert files == {
        "runs.db": 0o600,
        "runs.db-wal": 0o600,
        "runs.db-shm": 0o600,
        "runs.db-open": 0o700,  # which processes have it open (see store/integrity.py)
    }
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_a_store_an_older_steprun_left_readable_is_made_the_owners_only(path: Path) -> None:
    path.parent.mkdir()
    SQLiteStore(path).close()
    path.chmod(0o644)
    SQLiteStore(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_processes_opening_one_new_store_at_once_all_get_it(state: str | Path) -> None:
    code = "import sys; from steprun.runtime.store import open_store; "
    code += "open_store(sys.argv[1]).close()"
    procs = [
        subprocess.Popen([sys.executable, "-c", code, str(state)], stderr=subprocess.PIPE)
        for _ in range(4)
    ]
    errors = [proc.communicate(timeout=60)[1].decode() for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 4, errors
    if is_url(state):
        (found,) = Reader(state).query("SELECT version FROM schema_version")
        assert found[0] == SCHEMA_VERSION
    else:
        with closing(sqlite3.connect(state)) as conn:
            assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION


# -- group commit ------------------------------------------------------------------------


def test_concurrent_writes_share_commits_and_all_land(sqlite_store: RunStore, path: Path) -> None:
    store = sqlite_store

    async def one_by_one() -> None:
        for n in range(200):
            await store.write(new_run(store, f"seq-{n}"))

    async def all_at_once() -> None:
        await asyncio.gather(*(store.write(new_run(store, f"conc-{n}")) for n in range(200)))

    reset_wal(path)
    asyncio.run(one_by_one())
    alone = wal_frames(path)
    reset_wal(path)
    started = time.perf_counter()
    asyncio.run(all_at_once())
    took = time.perf_counter() - started
    together = wal_frames(path)

    # Each commit appends at least one frame, so 200 commits are at least 200 frames; the
    # 200 concurrent writes fit in a handful of commits.
    assert alone >= 200
    assert together < 50, (alone, together)
    assert took < 5
    ids = {r.id for r in store.runs(limit=1000)}
    assert {f"conc-{n}" for n in range(200)} <= ids
    assert {f"seq-{n}" for n in range(200)} <= ids


def test_concurrent_writes_to_postgresql_share_commits_and_all_land(
    postgres_store: RunStore,
) -> None:
    """The same writer on PostgreSQL: its own count of commits, since the server's counters
    are shared with every other client of the machine's PostgreSQL."""
    store = postgres_store
    assert store._writer is not None
    before = store._writer.commits

    async def all_at_once() -> None:
        await asyncio.gather(*(store.write(new_run(store, f"conc-{n}")) for n in range(200)))

    asyncio.run(all_at_once())
    commits = store._writer.commits - before
    assert 1 <= commits < 50, commits
    assert {f"conc-{n}" for n in range(200)} <= {r.id for r in store.runs(limit=1000)}
    (count,) = Reader(store.url).query("SELECT count(*) FROM runs")  # type: ignore[attr-defined]
    assert count[0] == 200


def test_a_refused_write_fails_alone_and_leaves_nothing_half_written(store: RunStore) -> None:
    store.write_now(new_run(store, "taken"))
    bad = [
        *new_run(store, "half"),  # would land, but its submission fails as a whole
        *new_run(store, "taken"),  # a duplicate id: refused
    ]

    async def main() -> list[BaseException | None]:
        writes = [store.write(new_run(store, f"ok-{n}")) for n in range(20)]
        writes.insert(10, store.write(bad))
        return await asyncio.gather(*writes, return_exceptions=True)

    results = asyncio.run(main())

    failed = [r for r in results if isinstance(r, BaseException)]
    assert len(failed) == 1 and isinstance(failed[0], StoreError), results
    message = str(failed[0])
    assert "unique" in message.lower() and store.location in message
    ids = {r.id for r in store.runs(limit=100)}
    assert ids == {"taken"} | {f"ok-{n}" for n in range(20)}  # and no "half"


def test_a_closed_store_refuses_writes(state: str | Path) -> None:
    store = open_store(state)
    store.close()
    with pytest.raises(StoreError, match="closed"):
        store.write_now(new_run(store, "late"))


# -- the lease ---------------------------------------------------------------------------


def _lease(store: RunStore, run_id: str) -> tuple[str | None, float | None]:
    row = store.run(run_id)
    return row.lease_owner, row.lease_until


def test_a_lease_is_taken_from_a_dead_process_at_once(store: RunStore) -> None:
    holder = f"{socket.gethostname()}:{dead_pid()}"
    store.write_now(new_run(store, "r", owner=holder))
    assert _lease(store, "r")[0] == holder

    store.acquire("r", lease_owner())

    owner, until = _lease(store, "r")
    assert owner == lease_owner()
    assert until is not None and until > time.time() + LEASE_SECONDS - 5


def test_a_live_process_keeps_its_lease(store: RunStore) -> None:
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as live:
        try:
            holder = f"{socket.gethostname()}:{live.pid}"
            store.write_now(new_run(store, "r", owner=holder))
            with pytest.raises(StoreError) as refused:
                store.acquire("r", lease_owner())
        finally:
            live.kill()
    message = str(refused.value)
    assert "being run by another process" in message and holder in message
    assert _lease(store, "r")[0] == holder


def test_a_lease_of_another_host_holds_until_it_expires(store: RunStore) -> None:
    store.write_now(new_run(store, "r", owner="other-host.example:4242"))
    with pytest.raises(StoreError, match=r"other-host\.example:4242"):
        store.acquire("r", lease_owner())

    store.write_now([("UPDATE runs SET lease_until = ? WHERE id = 'r'", (time.time() - 1,))])
    store.acquire("r", lease_owner())
    assert _lease(store, "r")[0] == lease_owner()


def test_acquiring_a_run_that_does_not_exist_names_it(store: RunStore) -> None:
    with pytest.raises(StoreError, match=r"no run 'nope' in .*steprun runs"):
        store.acquire("nope", lease_owner())


def test_release_frees_the_lease_only_for_its_owner(store: RunStore) -> None:
    store.write_now(new_run(store, "r", owner="me:1"))
    store.write_now(store.release_ops("r", "somebody-else:2"))
    assert _lease(store, "r")[0] == "me:1"
    store.write_now(store.release_ops("r", "me:1"))
    assert _lease(store, "r") == (None, None)


# -- schema version and damage -----------------------------------------------------------


def test_a_store_from_a_newer_steprun_is_refused(state: str | Path) -> None:
    open_store(state).close()
    if is_url(state):
        Reader(state).execute("UPDATE schema_version SET version = ?", SCHEMA_VERSION + 1)
    else:
        with closing(sqlite3.connect(state)) as conn:
            conn.execute(f"PRAGMA user_version={SCHEMA_VERSION + 1}")
    with pytest.raises(StoreError, match=r"newer steprun .*upgrade steprun"):
        open_store(state)


def test_a_foreign_sqlite_database_is_refused_and_left_unchanged(path: Path) -> None:
    path.parent.mkdir(parents=True)
    with closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE contacts (name TEXT)")
        conn.commit()
    before = path.read_bytes()

    with pytest.raises(StoreError, match=r"not a steprun run store .*contacts"):
        SQLiteStore(path)

    assert path.read_bytes() == before
    with closing(sqlite3.connect(path)) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 0


@pytest.mark.parametrize("damage", ["garbage", "truncated"])
def test_a_damaged_file_names_itself_and_what_to_do(path: Path, damage: str) -> None:
    store = SQLiteStore(path)
    for n in range(50):
        store.write_now(new_run(store, f"r{n}"))
    store.close()
    data = path.read_bytes()
    if damage == "garbage":
        path.write_bytes(os.urandom(len(data)))
    else:
        path.write_bytes(data[: len(data) // 2])

    with pytest.raises(StoreError) as found:
        SQLiteStore(path)

    message = str(found.value)
    assert str(path) in message
    assert "damaged" in message and f"mv {path} {path}.damaged" in message


def test_a_damaged_json_value_names_the_run_and_the_value(store: RunStore) -> None:
    store.write_now(new_run(store, "r"))
    store.write_now([("INSERT INTO merge_fields VALUES ('r', 'job', '{\"id\": ')", ())])
    with pytest.raises(StoreError) as found:
        store.merge_fields("r")
    message = str(found.value)
    assert "merge field job" in message and "run r" in message and store.location in message

    store.write_now([("UPDATE runs SET inputs = 'not json' WHERE id = 'r'", ())])
    with pytest.raises(StoreError, match=r"inputs\) of run r"):
        store.run("r")


class Blocker:
    """Another client holding the lock the writer's next commit needs."""

    def __init__(self, state: str | Path) -> None:
        self.state = state
        if is_url(state):
            import psycopg

            from steprun.runtime.store.postgres.connection import split_schema

            conninfo, schema = split_schema(str(state))
            self.conn: Any = psycopg.connect(conninfo, autocommit=True)
            self.conn.execute(f"SET search_path TO {schema}")
        else:
            self.conn = sqlite3.connect(state, isolation_level=None)

    def lock(self) -> None:
        if is_url(self.state):
            self.conn.execute("BEGIN")
            self.conn.execute("LOCK TABLE runs IN EXCLUSIVE MODE")  # no INSERT until we end
        else:
            self.conn.execute("BEGIN IMMEDIATE")

    def begin(self) -> None:
        """A transaction that takes what a takeover (``acquire``) takes: SQLite's write
        lock; on PostgreSQL nothing until it updates a row, then that row's lock."""
        self.conn.execute("BEGIN" if is_url(self.state) else "BEGIN IMMEDIATE")

    def release(self) -> None:
        self.conn.execute("ROLLBACK")

    def close(self) -> None:
        self.conn.close()


def test_a_write_whose_caller_gave_up_does_not_stop_the_writer(
    store: RunStore, state: str | Path
) -> None:
    """A step timeout or a cancelled lease renewal abandons a write in flight; the writes
    after it (the run's next boundaries, the lease release) must still be committed."""
    blocker = Blocker(state)

    async def main() -> None:
        blocker.lock()  # the writer's next commit has to wait for us
        abandoned = asyncio.ensure_future(store.write(new_run(store, "abandoned")))
        await asyncio.sleep(0.3)  # the writer has taken the write and waits for the lock
        abandoned.cancel()
        await asyncio.sleep(0.05)
        blocker.release()
        await asyncio.wait_for(store.write(new_run(store, "after")), timeout=10)

    try:
        asyncio.run(main())
    finally:
        blocker.close()
    assert "after" in {r.id for r in store.runs()}


def test_a_fenced_write_racing_a_takeover_waits_for_it_and_then_writes_nothing(
    store: RunStore, state: str | Path
) -> None:
    """The fence is checked in the transaction that commits the write: a takeover that
    commits between the check and the write cannot slip through (on PostgreSQL, without
    the row lock on the check, the stale write would wait for the takeover's row lock and
    then land over the new owner's run)."""
    store.write_now(new_run(store, "r", owner="me:1"))
    other = Blocker(state)

    async def main() -> None:
        other.begin()
        other.conn.execute("UPDATE runs SET lease_owner = 'thief:2' WHERE id = 'r'")
        stale = asyncio.ensure_future(
            store.write(
                [("UPDATE runs SET position = 'stale' WHERE id = ?", ("r",))], fence=("r", "me:1")
            )
        )
        await asyncio.sleep(0.5)  # the stale write is queued behind the takeover's lock
        assert not stale.done()
        other.conn.execute("COMMIT")
        with pytest.raises(LeaseLost, match="another process \\(thief:2\\) took it over"):
            await asyncio.wait_for(stale, timeout=20)

    try:
        asyncio.run(main())
    finally:
        other.close()
    row = store.run("r")
    assert (row.lease_owner, row.position) == ("thief:2", "a")
