"""``--state postgresql://…``: every command on the PostgreSQL store, its password never
shown, a clear sentence when the ``postgres`` extra or the database is missing, and what
only a server shared over a network does (cut connections, writers that deadlock).

The store's behaviour itself (journal, leases, fencing, kills) is tested on both backends
by test_store.py, test_lease.py and test_durable.py.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psycopg

from steprun.runtime.store import RunStore, open_store
from tests.runtime.conftest import Cli
from tests.runtime.stores import Postgres, Reader
from tests.runtime.test_store import new_run

REPO = Path(__file__).resolve().parents[2]
PASSWORD = "s3cret-Pw-never-shown"


def with_password(url: str) -> str:
    """The URL with a password in it (trust auth on the test server ignores it)."""
    return url.replace("postgresql://postgres@", f"postgresql://postgres:{PASSWORD}@", 1)


def test_every_command_works_on_postgresql_and_never_prints_its_password(
    cli: Callable[..., Cli], postgres: Postgres
) -> None:
    url = with_password(postgres.fresh())
    env = {"STEPRUN_STATE": url}
    seen: list[str] = []

    ran = cli("run", REPO / "examples" / "hello.yaml", "--input", "name=Ada", env=env)
    seen += [ran.stdout, ran.stderr]
    assert ran.code == 0, ran.stderr
    assert json.loads(ran.stdout)["greeting"]["text"] == "Hello, Ada!"

    listed = cli("runs", "--json", "--state", url)  # the option, as well as the variable
    seen += [listed.stdout, listed.stderr]
    assert listed.code == 0, listed.stderr
    (run,) = json.loads(listed.stdout)
    assert run["status"] == "succeeded" and run["flow"] == "hello"
    # In the database itself, where any other client (a worker) would find it.
    stored = Reader(url).query("SELECT status FROM runs WHERE id = ?", run["id"])
    assert [row[0] for row in stored] == ["succeeded"]

    for command in (["show", run["id"]], ["logs", run["id"]], ["check"]):
        done = cli(*command, env=env)
        seen += [done.stdout, done.stderr]
        assert done.code == 0, done.stderr
    shown = cli("show", run["id"], "--json", env=env)
    assert json.loads(shown.stdout)["merge_fields"]["greeting"]["text"] == "Hello, Ada!"

    resumed = cli("resume", run["id"], env=env)
    cancelled = cli("cancel", run["id"], env=env)
    seen += [resumed.stderr, cancelled.stderr]
    assert resumed.code == 2 and "already succeeded" in resumed.stderr
    assert cancelled.code == 2 and "already succeeded" in cancelled.stderr

    # A server that is not there: one sentence naming the store, its password hidden.
    down = url.replace(":5432/", ":1/")
    failed = cli("runs", "--state", down)
    seen += [failed.stdout, failed.stderr]
    assert failed.code == 1, failed.stderr
    assert f"postgresql://postgres:***@127.0.0.1:1/{postgres.database}" in failed.stderr
    assert "check that PostgreSQL is running" in failed.stderr
    assert all(PASSWORD not in text for text in seen)


def test_a_postgresql_url_without_the_extra_says_what_to_install(
    tmp_path: Path, postgres: Postgres
) -> None:
    # psycopg made unimportable in this one process, as in an install without the extra.
    code = (
        "import sys; sys.modules['psycopg'] = None; "
        "from steprun.runtime.cli import main; "
        f"sys.argv = ['steprun', 'runs', '--state', {postgres.fresh()!r}]; main()"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert done.returncode == 2, done.stderr
    assert "pip install 'steprun[postgres]'" in done.stderr
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_store_in_another_schema_is_a_store_of_its_own(
    cli: Callable[..., Cli], postgres: Postgres
) -> None:
    first, second = postgres.fresh(), postgres.fresh()
    assert cli("run", REPO / "examples" / "hello.yaml", "--state", first).code == 0
    assert json.loads(cli("runs", "--json", "--state", second).stdout or "[]") == []
    bad = cli("runs", "--state", postgres.url + "?schema=Robert'); DROP TABLE runs;--")
    assert bad.code == 2 and "not a schema name steprun can use" in bad.stderr


def test_a_missing_database_is_named_with_how_to_create_it(
    cli: Callable[..., Cli], postgres: Postgres
) -> None:
    missing = postgres.url.rpartition("/")[0] + "/steprun_no_such_db"
    done = cli("runs", "--state", missing)
    assert done.code == 2, done.stderr
    assert "no database 'steprun_no_such_db'; create it (`createdb steprun_no_such_db`)" in (
        done.stderr
    )


def _cut_connections(postgres: Postgres) -> int:
    """End every steprun connection to this session's database, as a server restart or a
    proxy's idle timeout would; how many were ended."""
    with psycopg.connect(postgres.admin_url, autocommit=True) as admin:
        rows = admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND application_name = 'steprun'",
            (postgres.database,),
        ).fetchall()
    return len(rows)


def test_a_store_whose_connections_were_cut_reconnects_and_loses_no_write(
    postgres_store: RunStore, postgres: Postgres
) -> None:
    store = postgres_store
    store.write_now(new_run(store, "before"))
    assert _cut_connections(postgres) == 2  # its reader and its writer

    # The writer's next transaction finds its connection gone before anything was
    # committed: it reconnects and commits there. The reader reconnects as well.
    store.write_now(new_run(store, "after"))
    assert {r.id for r in store.runs()} == {"before", "after"}


def test_two_processes_whose_writes_deadlock_both_commit(postgres: Postgres) -> None:
    """Two writers lock the same two runs in opposite orders (a cancel and a takeover can):
    PostgreSQL breaks the deadlock by failing one transaction, which is tried again."""
    url = postgres.fresh()
    one, two = open_store(url), open_store(url)
    try:
        one.write_now([*new_run(one, "a"), *new_run(one, "b")])

        def crossing(first: str, second: str) -> list[tuple[str, tuple[Any, ...]]]:
            bump = "UPDATE runs SET executed = executed + 1 WHERE id = ?"
            return [(bump, (first,)), ("SELECT pg_sleep(0.5)", ()), (bump, (second,))]

        async def main() -> None:
            await asyncio.gather(one.write(crossing("a", "b")), two.write(crossing("b", "a")))

        asyncio.run(main())
        assert [one.run(r).executed for r in ("a", "b")] == [2, 2]
    finally:
        one.close()
        two.close()


def test_both_stores_have_the_same_tables_and_columns_at_the_same_version(
    tmp_path: Path, postgres: Postgres
) -> None:
    """A schema change made for one backend only fails here, not in production."""
    import sqlite3
    from contextlib import closing

    from steprun.runtime.store import schema as sqlite_schema
    from steprun.runtime.store.postgres import schema as postgres_schema

    assert set(postgres_schema.MIGRATIONS) == set(sqlite_schema.MIGRATIONS)
    path, url = tmp_path / "runs.db", postgres.fresh()
    open_store(path).close()
    open_store(url).close()
    with closing(sqlite3.connect(path)) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        in_sqlite = {
            (table, column[1])
            for table in tables
            for column in conn.execute(f"PRAGMA table_info({table})")
        }
    schema = url.rpartition("schema=")[2]
    in_postgres = {
        (r[0], r[1])
        for r in Reader(url).query(
            "SELECT table_name, column_name FROM information_schema.columns "
            "WHERE table_schema = ? AND table_name <> 'schema_version'",
            schema,
        )
    }
    assert in_postgres == in_sqlite


def test_another_client_connects_with_the_stores_conninfo(postgres: Postgres) -> None:
    """What a Procrastinate connector of the same database is given: libpq's URL."""
    store = open_store(postgres.fresh())
    try:
        assert "schema=" not in store.conninfo  # type: ignore[attr-defined]
        with psycopg.connect(store.conninfo) as conn:  # type: ignore[attr-defined]
            found = conn.execute(
                f"SELECT count(*) FROM {store.schema}.runs"  # type: ignore[attr-defined]
            ).fetchone()
        assert found == (0,)
    finally:
        store.close()
