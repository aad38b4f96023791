"""The run store as it grows (issue #8): no full read of the file on every command, and
retention. Through the real CLI; the damage is real bytes overwritten in the file.

Before, every command ran ``PRAGMA quick_check`` when it opened the store (1.4 ms per MB):
a damaged page that nothing reads still made ``steprun runs`` refuse the store, which is
how these tests see whether the check ran, with no timing involved.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from contextlib import closing
from pathlib import Path

from tests.runtime.conftest import Cli

HELLO = Path(__file__).resolve().parents[2] / "examples" / "hello.yaml"


def damage_attempts_table(store: Path) -> None:
    """Overwrite the root page of the attempts table: `steprun runs` never reads it, and a
    full check reports it."""
    with closing(sqlite3.connect(store)) as conn:
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        [root] = conn.execute("SELECT rootpage FROM sqlite_master WHERE name='attempts'").fetchone()
    with store.open("r+b") as handle:
        handle.seek((root - 1) * page_size)
        handle.write(b"\xa5" * page_size)


def test_a_cleanly_closed_store_is_not_read_whole_on_open_and_check_finds_the_damage(
    cli: Callable[..., Cli], tmp_path: Path
) -> None:
    store = tmp_path / "state" / "runs.db"
    assert cli("run", HELLO).code == 0
    damage_attempts_table(store)

    listed = cli("runs", "--json")
    assert listed.code == 0, listed.stderr
    assert [r["flow"] for r in json.loads(listed.stdout)] == ["hello"]

    checked = cli("check")
    assert checked.code == 2
    assert f"the run store {store} cannot be read" in checked.stderr
    assert "damaged" in checked.stderr


def test_after_an_unclean_shutdown_the_next_open_checks_the_store(
    cli: Callable[..., Cli], tmp_path: Path
) -> None:
    store = tmp_path / "state" / "runs.db"
    assert cli("run", HELLO).code == 0
    killed = cli("run", HELLO, env={"STEPRUN_FAILPOINT": "step-started@greeting"})
    assert killed.code == -9
    markers = list((tmp_path / "state" / "runs.db-open").iterdir())
    assert len(markers) == 1  # the killed process's, never removed
    damage_attempts_table(store)

    listed = cli("runs")
    assert listed.code == 2
    assert "damaged" in listed.stderr and str(store) in listed.stderr


def test_a_sound_store_is_checked_once_after_an_unclean_shutdown(
    cli: Callable[..., Cli], tmp_path: Path
) -> None:
    killed = cli("run", HELLO, env={"STEPRUN_FAILPOINT": "step-started@greeting"})
    assert killed.code == -9
    assert cli("runs").code == 0  # checked, sound: the dead process's marker is cleared
    assert not (tmp_path / "state" / "runs.db-open").exists()
    assert cli("check").code == 0


def test_prune_deletes_finished_runs_older_than_asked_and_keeps_unfinished_ones(
    cli: Callable[..., Cli], tmp_path: Path
) -> None:
    store = tmp_path / "state" / "runs.db"
    for _ in range(3):
        assert cli("run", HELLO).code == 0
    assert cli("run", HELLO, env={"STEPRUN_FAILPOINT": "step-started@greeting"}).code == -9
    runs = json.loads(cli("runs", "--json").stdout)
    old = [r["id"] for r in runs if r["status"] == "succeeded"][:2]
    # Two finished runs and the crashed one were last changed 40 days ago.
    crashed = next(r["id"] for r in runs if r["status"] == "interrupted")
    with closing(sqlite3.connect(store)) as conn:
        for run_id in [*old, crashed]:
            conn.execute(
                "UPDATE runs SET updated = ? WHERE id = ?", (time.time() - 40 * 86400, run_id)
            )
        conn.commit()

    pruned = cli("runs", "prune", "--older-than", "30d")
    assert pruned.code == 0, pruned.stderr
    assert "pruned 2 finished run(s) older than 30d" in pruned.stderr
    left = {r["id"] for r in json.loads(cli("runs", "--json").stdout)}
    assert left == {r["id"] for r in runs} - set(old)
    with closing(sqlite3.connect(store)) as conn:
        for table in ("attempts", "merge_fields"):
            orphans = conn.execute(
                f"SELECT count(*) FROM {table} WHERE run_id NOT IN (SELECT id FROM runs)"
            ).fetchone()[0]
            assert orphans == 0, table
    assert cli("runs", "prune", "--older-than", "soon").code == 2


def test_finished_runs_past_the_retention_go_when_a_run_starts(
    cli: Callable[..., Cli], tmp_path: Path
) -> None:
    store = tmp_path / "state" / "runs.db"
    assert cli("run", HELLO).code == 0
    with closing(sqlite3.connect(store)) as conn:
        conn.execute("UPDATE runs SET updated = ?", (time.time() - 91 * 86400,))
        conn.commit()
    # Kept while retention is off, then gone under the default of 90 days.
    assert cli("run", HELLO, env={"STEPRUN_RETENTION": "off"}).code == 0
    assert len(json.loads(cli("runs", "--json").stdout)) == 2
    assert cli("run", HELLO).code == 0
    assert len(json.loads(cli("runs", "--json").stdout)) == 2  # the old one went
    bad = cli("run", HELLO, env={"STEPRUN_RETENTION": "a while"})
    assert bad.code == 2 and "STEPRUN_RETENTION" in bad.stderr
