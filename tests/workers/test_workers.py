"""Runs spread over `steprun worker` processes sharing PostgreSQL, proven the hard way.

Everything is real: PostgreSQL on 127.0.0.1, `steprun serve-local` in its own process
(its fine-tuning jobs simulated, their duration set by --job-seconds), the workers and the
submitting CLI as console-script children, SIGKILL and SIGTERM sent to them. What a test
claims about who drove what is read from the store itself: the run rows, and the lease
history (``drives``), whose every row was written under the run's lease.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.runtime.durable_support import (
    CREATE_PATH,
    Child,
    LocalServer,
    Workspace,
    serve_local,
    wait_for,
)
from tests.runtime.stores import Postgres, Reader

pytestmark = pytest.mark.slow

JOB_SECONDS = 6.0  # a fine-tuning job on the first test's server
WAIT_JOB_SECONDS = 20.0  # the jobs the waiting runs wait on


@pytest.fixture
def server(tmp_path: Path) -> Iterator[LocalServer]:
    with serve_local(tmp_path / "serve-local", JOB_SECONDS) as found:
        yield found


def owner_of(child: Child) -> str:
    """The lease owner a worker process writes: host:pid (store/lease.py)."""
    return f"{socket.gethostname()}:{child.pid}"


def rows_file(ws: Workspace, count: int) -> str:
    lines = [
        json.dumps({"question": f"Question {n}: how do I reset my password?"}) for n in range(count)
    ]
    (ws.root / "rows.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return "rows.jsonl"


def submit(ws: Workspace, url: str, args: list[str], count: int) -> list[str]:
    found = ws.cli(
        *args, "--inputs-file", rows_file(ws, count), "--submit", env={"STEPRUN_STATE": url}
    )
    assert found.code == 0, found.stderr
    run_ids = found.stdout.split()
    assert len(run_ids) == count and all(r.startswith("run_") for r in run_ids), found.stdout
    return run_ids


def statuses(reader: Reader, run_ids: list[str]) -> Counter[str]:
    found = {r["id"]: r["status"] for r in reader.query("SELECT id, status FROM runs")}
    return Counter(found.get(run_id, "missing") for run_id in run_ids)


def worker(ws: Workspace, url: str, *options: str) -> Child:
    return ws.spawn("worker", "--stalled-after", "6", *options, env={"STEPRUN_STATE": url})


def check_one_driver_at_a_time(
    drives: list[Any], *, killed: str, killed_at: float
) -> dict[str, list[Any]]:
    """From the lease history: per run, each drive ends before the next begins; the only
    drives never closed are the killed worker's, and the next drive of such a run began
    after the kill. Returns the drives by run."""
    by_run: dict[str, list[Any]] = {}
    for drive in sorted(drives, key=lambda d: (d["run_id"], d["began"])):
        by_run.setdefault(drive["run_id"], []).append(drive)
    for run_id, runs_drives in by_run.items():
        for before, after in itertools.pairwise(runs_drives):
            context = f"run {run_id}: {before} then {after}"
            if before["ended"] is None:
                assert before["owner"] == killed, context
                assert after["began"] >= killed_at, context
            else:
                assert before["ended"] <= after["began"], context
        last = runs_drives[-1]
        assert last["ended"] is not None and last["how"] == "succeeded", f"run {run_id}: {last}"
    return by_run


def test_three_workers_sixty_runs_one_killed_one_stopped(
    tmp_path: Path, postgres: Postgres, server: LocalServer
) -> None:
    """60 fine-tuning runs over three workers; one is SIGKILLed with creates in flight and
    another SIGTERMed: every run succeeds, the server created exactly 60 jobs (one per run)
    and took each file once per run, and no run was ever driven by two workers at once."""
    url = postgres.fresh("sixty")
    ws = Workspace(tmp_path / "ws", server)
    args = ws.fine_tune(poll_interval="3s", max_poll_interval="3s")
    reader = Reader(url)
    # Every create is answered 2 s after it arrives: the instant a kill leaves a create
    # in flight, which the next worker must find rather than send again.
    server.arm(path=CREATE_PATH, method="POST", kind="latency", seconds=2.0, times=None)
    workers = [worker(ws, url, "--concurrency", "8") for _ in range(3)]
    run_ids = submit(ws, url, args, 60)

    victim, gentle = workers[0], workers[1]

    def open_drives(child: Child, *, alive: bool = True) -> int:
        assert not alive or child.process.poll() is None, child.stderr()[-3000:]
        rows = reader.query(
            "SELECT count(*) AS n FROM drives WHERE owner = ? AND ended IS NULL", owner_of(child)
        )
        return int(rows[0]["n"]) if rows else 0

    def creates_in_flight(child: Child) -> int:
        assert child.process.poll() is None, child.stderr()[-3000:]
        rows = reader.query(
            "SELECT count(*) AS n FROM drives d JOIN attempts a ON a.run_id = d.run_id "
            "WHERE d.owner = ? AND d.ended IS NULL AND a.step_id = 'job' "
            "AND a.status = 'started'",
            owner_of(child),
        )
        return int(rows[0]["n"]) if rows else 0

    wait_for(lambda: creates_in_flight(victim) >= 2, "the victim's creates", timeout=120)
    killed_at = time.time()
    victim.kill()
    wait_for(lambda: open_drives(gentle) >= 1, "the gentle worker to drive a run", timeout=120)
    os.kill(gentle.pid, signal.SIGTERM)
    assert gentle.wait(60) == 0, gentle.stderr()[-3000:]
    assert "stopping: each run hands back after its current step" in gentle.stderr()
    assert open_drives(gentle, alive=False) == 0, "a stopped worker left a drive open"
    workers.append(worker(ws, url, "--concurrency", "8"))

    def all_succeeded() -> bool:
        found = statuses(reader, run_ids)
        assert not set(found) - {"queued", "waiting", "running", "succeeded"}, found
        return found["succeeded"] == 60

    wait_for(all_succeeded, "all 60 runs to succeed", timeout=240, every=0.5)

    # Exactly one fine-tuning job per run on the server, each data file taken once per run.
    jobs = Counter(
        (job.get("metadata") or {}).get("steprun_run_id") for job in server.ledger()["jobs"]
    )
    assert {run_id: jobs[run_id] for run_id in run_ids} == dict.fromkeys(run_ids, 1)
    for data_file in ("support", "support_validation"):
        assert len(server.uploads(ws.file(data_file))) == 60, data_file

    drives = reader.query("SELECT run_id, owner, began, ended, how FROM drives")
    by_run = check_one_driver_at_a_time(drives, killed=owner_of(victim), killed_at=killed_at)
    assert set(by_run) == set(run_ids)
    rescued = [
        run_id
        for run_id, found in by_run.items()
        if any(d["owner"] == owner_of(victim) and d["ended"] is None for d in found)
    ]
    assert rescued, "the SIGKILL interrupted no run: the test proved nothing about recovery"
    handed = [d for d in drives if d["owner"] == owner_of(gentle) and d["how"] == "handed back"]
    assert handed, "the SIGTERMed worker handed no run back"
    assert "back in the queue for another" in "".join(w.stderr() for w in workers[1:])

    # The CLI reads the same store: runs, show and logs work unchanged against PostgreSQL.
    listed = ws.cli("runs", "--json", "--limit", "100", env={"STEPRUN_STATE": url})
    assert listed.code == 0, listed.stderr
    assert Counter(r["status"] for r in listed.json()) == {"succeeded": 60}
    rescued_run = ws.cli("show", rescued[0], "--json", env={"STEPRUN_STATE": url})
    assert rescued_run.code == 0, rescued_run.stderr
    assert " answers: " in rescued_run.json()["merge_fields"]["answer"]["message"]
    logs = ws.cli("logs", rescued[0], env={"STEPRUN_STATE": url})
    assert logs.code == 0 and "ftjob-" in logs.stdout + logs.stderr, logs.stderr
    for child in workers[2:]:
        os.kill(child.pid, signal.SIGTERM)
        assert child.wait(60) == 0, child.stderr()[-3000:]


def test_a_long_wait_frees_its_worker(tmp_path: Path, postgres: Postgres) -> None:
    """With --concurrency 2, twenty runs waiting on 20 s jobs all wait at once: a waiting
    run holds no worker slot (nor any lease). SIGTERM while they wait stops the worker at
    once, and another worker finishes them."""
    url = postgres.fresh("waits")
    reader = Reader(url)
    with serve_local(tmp_path / "serve-local", WAIT_JOB_SECONDS) as server:
        ws = Workspace(tmp_path / "ws", server)
        args = ws.fine_tune(poll_interval="5s", max_poll_interval="5s")
        first = worker(ws, url, "--concurrency", "2")
        run_ids = submit(ws, url, args, 20)

        def all_waiting() -> bool:
            found = statuses(reader, run_ids)
            assert found["succeeded"] == 0, f"a run finished before all waited: {found}"
            return found["waiting"] == 20

        wait_for(all_waiting, "all 20 runs to wait at once", timeout=90, every=0.05)
        leased = reader.query("SELECT id FROM runs WHERE lease_owner IS NOT NULL")
        assert len(leased) <= 2, leased
        waiting = reader.query(
            "SELECT a.run_id, a.wake_at FROM attempts a JOIN runs r ON r.id = a.run_id "
            "WHERE r.status = 'waiting' AND a.status = 'started' AND a.step_id = 'wait'"
        )
        assert {r["run_id"] for r in waiting} >= set(run_ids) - {r["id"] for r in leased}

        began = time.monotonic()
        os.kill(first.pid, signal.SIGTERM)
        assert first.wait(30) == 0, first.stderr()[-3000:]
        assert time.monotonic() - began < 15, "a worker whose runs all wait took long to stop"
        assert "handed back until" in first.stderr()

        second = worker(ws, url, "--concurrency", "2")
        wait_for(
            lambda: statuses(reader, run_ids)["succeeded"] == 20,
            "the second worker to finish all 20 runs",
            timeout=180,
            every=0.5,
        )
        jobs = Counter(
            (job.get("metadata") or {}).get("steprun_run_id") for job in server.ledger()["jobs"]
        )
        assert {run_id: jobs[run_id] for run_id in run_ids} == dict.fromkeys(run_ids, 1)
        # One attempt per step: a wait handed back many times is one execution of `wait`.
        for run_id in run_ids[:3]:
            steps = [
                a["step_id"]
                for a in reader.query(
                    "SELECT step_id FROM attempts WHERE run_id = ? ORDER BY seq", run_id
                )
            ]
            assert steps.count("wait") == 1, steps
        os.kill(second.pid, signal.SIGTERM)
        assert second.wait(60) == 0, second.stderr()[-3000:]


def test_workers_need_postgresql(tmp_path: Path) -> None:
    """Workers share runs through PostgreSQL: an SQLite store is refused with how to fix it."""
    ws = Workspace(tmp_path / "ws")
    found = ws.cli("worker")
    assert found.code == 2, found.stderr
    assert "postgresql://" in found.stderr and "--state" in found.stderr
    (ws.root / "hello.yaml").write_text(
        "flow: hello\nsteps:\n  - id: hi\n    type: core.log\n    config: {message: hi}\n",
        encoding="utf-8",
    )
    found = ws.cli("run", "hello.yaml", "--submit")
    assert found.code == 2, found.stderr
    assert "postgresql://" in found.stderr
    assert not ws.query("SELECT id FROM runs"), "a refused --submit recorded a run"
