"""When a durable run commits: pure steps are held, effects are committed around.

Commits are counted where they land: the commit frames of the store's write-ahead log
(each one an fsync with ``synchronous=FULL``), read from the file while the store is open.
``STEPRUN_COMMIT_INTERVAL=1h`` takes the timed commit out of the count, so the figures are
exact on a slow machine too; ``0`` commits every step boundary, as steprun did before.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Callable
from contextlib import closing
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from steprun.runtime.durable import start
from steprun.runtime.store import SQLiteStore
from tests.runtime.conftest import Cli, dedent, make_runtime

PURE = """
flow: pure
steps:
  - id: a
    type: core.set
    config: {value: 1}
  - id: b
    type: core.set
    config: {value: "{{ a + 1 }}"}
  - id: c
    type: core.set
    config: {value: "{{ b + 1 }}"}
"""

# A pure step, an effect, then three pure steps.
MIXED = """
flow: mixed
steps:
  - id: a
    type: core.set
    config: {value: 1}
  - id: mark
    type: test.append
    config: {path: effects.txt, text: mark}
  - id: b
    type: core.set
    config: {value: "{{ a + 1 }}"}
  - id: c
    type: core.set
    config: {value: "{{ b + 1 }}"}
  - id: d
    type: core.set
    config: {value: "{{ c + 1 }}"}
"""


def wal_commits(db: Path) -> int:
    """Commit frames in the store's WAL: each frame header says, in bytes 4-8, the size of
    the database after the commit it ends, or 0 (sqlite.org/fileformat.html#walformat)."""
    data = Path(f"{db}-wal").read_bytes() if Path(f"{db}-wal").exists() else b""
    if len(data) < 32:
        return 0
    page_size = int.from_bytes(data[8:12], "big")
    salt = data[16:24]
    count, offset = 0, 32
    while offset + 24 + page_size <= len(data):
        header = data[offset : offset + 24]
        if header[8:16] != salt:  # a frame left from before the WAL was restarted
            break
        count += int.from_bytes(header[4:8], "big") != 0
        offset += 24 + page_size
    return count


def commits_of_a_run(
    tmp_path: Path, text: str, interval: str
) -> tuple[int, list[tuple[str, str]], dict[str, Any]]:
    """Run ``text`` durably in process; the commits it made (the run's creation included),
    its attempts as stored (step, status) and its merge fields as stored."""
    runtime = make_runtime(environ={"STEPRUN_COMMIT_INTERVAL": interval})
    db = tmp_path / "runs.db"
    store = SQLiteStore(db)

    async def main() -> tuple[int, str]:
        try:
            before = wal_commits(db)
            path = tmp_path / "flow.yaml"
            path.write_text(dedent(text), encoding="utf-8")
            flow = runtime.load(path)
            result = await start(runtime, store, flow, inputs={}, console=None)
            assert result.status == "succeeded", result.error
            return wal_commits(db) - before, result.run_id
        finally:
            await runtime.aclose()

    try:
        commits, run_id = asyncio.run(main())
        attempts = [(a.step_id, a.status) for a in store.attempts(run_id)]
        fields = store.merge_fields(run_id)
    finally:
        store.close()
    return commits, attempts, fields


def test_a_three_step_pure_run_commits_when_recorded_and_when_finished_only(
    tmp_path: Path,
) -> None:
    commits, attempts, fields = commits_of_a_run(tmp_path, PURE, "1h")

    assert commits == 2  # the run recorded; the run finished, with its three steps
    assert attempts == [("a", "succeeded"), ("b", "succeeded"), ("c", "succeeded")]
    assert fields == {"a": 1, "b": 2, "c": 3}


def test_a_commit_interval_of_0_commits_every_step_boundary(tmp_path: Path) -> None:
    commits, _, fields = commits_of_a_run(tmp_path, PURE, "0")

    assert commits == 1 + 3 * 2 + 1  # recorded, started and finished per step, finished
    assert fields == {"a": 1, "b": 2, "c": 3}


def test_pure_steps_held_longer_than_the_interval_are_committed_on_the_way(
    tmp_path: Path,
) -> None:
    # Each step sleeps 30 ms, past the 5 ms interval: every boundary finds a due commit,
    # sent without waiting (one at a time), so more than the two of a held run, and the
    # store ends complete.
    sleepy = """
    flow: sleepy
    steps:
      - {id: a, type: test.sleep, config: {seconds: 0.03}}
      - {id: b, type: test.sleep, config: {seconds: 0.03}}
      - {id: c, type: test.sleep, config: {seconds: 0.03}}
    """
    commits, attempts, fields = commits_of_a_run(tmp_path, sleepy, "5ms")

    assert 2 < commits <= 1 + 3 * 2 + 1
    assert attempts == [("a", "succeeded"), ("b", "succeeded"), ("c", "succeeded")]
    assert fields == {"a": {"slept": 0.03}, "b": {"slept": 0.03}, "c": {"slept": 0.03}}


def test_a_step_with_an_effect_commits_once_before_it_and_once_after(tmp_path: Path) -> None:
    commits, attempts, fields = commits_of_a_run(tmp_path, MIXED, "1h")

    # Recorded; `mark` started (with `a`, held until then); `mark` finished; the end.
    assert commits == 4
    assert [step for step, _ in attempts] == ["a", "mark", "b", "c", "d"]
    assert {status for _, status in attempts} == {"succeeded"}
    assert fields["d"] == 4 and fields["mark"] == {"appended": True}
    assert (tmp_path / "effects.txt").read_text().count("mark") == 1


class StoreWatcher(ThreadingHTTPServer):
    """A server on 127.0.0.1 that notes, for each request, the attempts the run store
    holds as it arrives: what was committed before the request was sent."""

    def __init__(self, store: Path) -> None:
        self.store = store
        self.seen: list[tuple[str, list[tuple[str, str]]]] = []
        super().__init__(("127.0.0.1", 0), _Watching)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/things"


class _Watching(BaseHTTPRequestHandler):
    server: StoreWatcher

    def _note(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with closing(sqlite3.connect(self.server.store)) as conn:
            rows = conn.execute("SELECT step_id, status FROM attempts ORDER BY seq").fetchall()
        self.server.seen.append((self.command, rows))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    do_GET = do_POST = _note

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.mark.parametrize("checkpoint", [True, False], ids=["checkpointed", "not-checkpointed"])
def test_a_create_like_step_commits_its_start_before_its_post_and_not_before_its_lookup(
    tmp_path: Path, checkpoint: bool
) -> None:
    watcher = StoreWatcher(tmp_path / "runs.db")
    try:
        flow = f"""
        flow: create
        steps:
          - {{id: a, type: core.set, config: {{value: 1}}}}
          - id: create
            type: test.http_effect
            config: {{url: "{watcher.url}", checkpoint: {str(checkpoint).lower()}}}
          - {{id: b, type: core.set, config: {{value: 2}}}}
        """
        commits, attempts, _ = commits_of_a_run(tmp_path, flow, "1h")
    finally:
        watcher.shutdown()
        watcher.server_close()

    # The look-up found nothing committed yet (`a` is held too); the POST found the step's
    # start (and `a`) in the store.
    assert watcher.seen == [
        ("GET", []),
        ("POST", [("a", "succeeded"), ("create", "started")]),
    ]
    # Recorded; the start (at the checkpoint, or at the POST); the result; the end.
    assert commits == 4
    assert attempts == [("a", "succeeded"), ("create", "succeeded"), ("b", "succeeded")]


def test_requests_a_step_sends_at_once_all_wait_for_its_one_committed_start(
    tmp_path: Path,
) -> None:
    # Each POST asked for the step's start to be durable at once: the first commits it,
    # the others wait for that commit (before, they wrote the same row again and the run
    # failed on the store's unique key).
    watcher = StoreWatcher(tmp_path / "runs.db")
    try:
        flow = f"""
        flow: create
        steps:
          - {{id: a, type: core.set, config: {{value: 1}}}}
          - id: create
            type: test.http_effect
            config: {{url: "{watcher.url}", posts: 3}}
        """
        commits, attempts, _ = commits_of_a_run(tmp_path, flow, "1h")
    finally:
        watcher.shutdown()
        watcher.server_close()

    started = [("a", "succeeded"), ("create", "started")]
    assert watcher.seen == [("GET", []), *[("POST", started)] * 3]
    assert commits == 4
    assert attempts == [("a", "succeeded"), ("create", "succeeded")]


def test_a_bad_commit_interval_is_refused_before_the_run_is_recorded(
    cli: Callable[..., Cli], write_flow: Callable[..., Path]
) -> None:
    flow = write_flow(PURE)

    refused = cli("run", flow, env={"STEPRUN_COMMIT_INTERVAL": "soon"})

    assert refused.code == 2
    assert "STEPRUN_COMMIT_INTERVAL='soon'" in refused.stderr
    assert "0 to commit after every step" in refused.stderr
    assert json.loads(cli("runs", "--json").stdout) == []


@pytest.mark.slow
def test_a_crash_between_pure_steps_reruns_only_those_steps_and_never_the_effect(
    cli: Callable[..., Cli],
    write_flow: Callable[..., Path],
    test_steps_env: dict[str, str | None],
    tmp_path: Path,
) -> None:
    flow = write_flow(MIXED)
    env = {**test_steps_env, "STEPRUN_COMMIT_INTERVAL": "1h"}
    # `d` has its result and is killed before anything of b, c, d is committed.
    killed = cli("run", flow, env={**env, "STEPRUN_FAILPOINT": "step-finished-before-commit@d"})
    assert killed.code == -9, killed.stderr
    store = tmp_path / "state" / "runs.db"
    with closing(sqlite3.connect(store)) as conn:
        [(run_id, position)] = conn.execute("SELECT id, position FROM runs").fetchall()
        stored = conn.execute("SELECT step_id, status FROM attempts ORDER BY seq").fetchall()
    assert stored == [("a", "succeeded"), ("mark", "succeeded")]
    assert position == "b"
    effects = tmp_path / "effects.txt"
    assert effects.read_text().splitlines() == [f"{run_id} mark"]

    resumed = cli("resume", run_id, env=env)

    assert resumed.code == 0, resumed.stderr
    with closing(sqlite3.connect(store)) as conn:
        stored = conn.execute(
            "SELECT step_id, attempt, status FROM attempts ORDER BY seq"
        ).fetchall()
        [(d,)] = conn.execute("SELECT value FROM merge_fields WHERE name = 'd'").fetchall()
    assert json.loads(d) == 4
    # b, c and d ran again (their first attempt as far as the store knows); mark did not.
    assert [(s, n) for s, n, _ in stored] == [("a", 1), ("mark", 1), ("b", 1), ("c", 1), ("d", 1)]
    assert effects.read_text().splitlines() == [f"{run_id} mark"]
