"""Runs over worker processes against the same runs in one process, side by side (issue 15).

    python bench/workers.py [--runs 1000] [--concurrency 200] [--workers 1,2,4]
                            [--job-seconds 1] [--postgres postgresql://postgres@127.0.0.1/postgres]

The work: ``--runs`` runs of a 3-step flow (create a fine-tuning job, wait for it, ask its
model: 3 HTTP steps, bench/concurrent_runs.py's flow) against ``steprun serve-local``
(started here, simulated jobs of ``--job-seconds``), every run kept in a PostgreSQL run
store (a fresh database, dropped at the end). Measured, each on a fresh server and store:

  - in-process: ``steprun run FLOW --inputs-file rows --concurrency C --state URL``;
  - N workers (for each N of ``--workers``): the rows submitted first
    (``steprun run … --submit``, timed on its own), then N ``steprun worker --concurrency
    C/N`` processes started, timed until every run succeeded (their start-up included).

Printed for each: runs per second (first step started → last run ended, from the store),
p50/p99 latency of each step (``ended - started`` of its attempt), and PostgreSQL
transactions per step executed (``pg_stat_database.xact_commit`` of the bench database
before and after, less this script's own reads): every statement a client sends in
autocommit, and every batch the run store commits, is one, so it counts round trips that
end a transaction. Floors, measured in the same run: the same HTTP requests from a bare
asyncio+httpx loop (bench/concurrent_runs.py's, gated like the runtime's transport), no
store, no engine; and 2 transactions per step, the journal's minimum (one commit before a
step, one after). Nothing is asserted: the machines here are shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
from _serve import API_KEY, machine, serve_local, steprun_command, upload
from concurrent_runs import STEPS, bare_loop, flow_text


@dataclass
class Outcome:
    name: str
    runs_per_second: float
    latencies: dict[str, list[float]] = field(default_factory=dict)  # ms per step
    xacts_per_step: float | None = None
    note: str = ""


class Database:
    """The bench's own database on the server ``admin_url`` names; dropped at the end."""

    def __init__(self, admin_url: str) -> None:
        self.admin_url = admin_url
        self.name = f"steprun_bench_{os.getpid()}"
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {self.name}")
        self.url = f"{admin_url.rpartition('/')[0]}/{self.name}"
        self.reads = 0  # transactions this script itself spent on the database

    def store(self, schema: str) -> str:
        return f"{self.url}?schema={schema}"

    def query(self, schema: str, sql: str) -> list[tuple[Any, ...]]:
        self.reads += 2  # SET and the query: two autocommit transactions
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(f"SET search_path TO {schema}")
            return list(conn.execute(sql).fetchall())

    def commits(self) -> int:
        time.sleep(1.0)  # backends flush their statistics about once a second
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute("SELECT pg_stat_force_next_flush()")
            row = conn.execute(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = %s",
                (self.name,),
            ).fetchone()
        return int(row[0]) if row else 0

    def drop(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")


def from_store(db: Database, schema: str, name: str, commits: int, note: str = "") -> Outcome:
    runs = db.query(schema, "SELECT status, updated FROM runs")
    failed = [r for r in runs if r[0] != "succeeded"]
    if failed:
        raise SystemExit(f"{name}: {len(failed)} runs did not succeed: {failed[:3]}")
    attempts = db.query(schema, "SELECT step_id, started, ended FROM attempts")
    first = min(float(a[1]) for a in attempts)
    last = max(float(r[1]) for r in runs)
    latencies: dict[str, list[float]] = {step: [] for step in STEPS}
    for step_id, started, ended in attempts:
        latencies[str(step_id)].append((float(ended) - float(started)) * 1000)
    return Outcome(
        name,
        len(runs) / (last - first),
        latencies,
        xacts_per_step=commits / len(attempts),
        note=note,
    )


def prepare(tmp: Path, base_url: str, runs: int) -> tuple[Path, Path]:
    async def file_id() -> str:
        async with httpx.AsyncClient(timeout=60) as http:
            return await upload(http, base_url)

    training_file = asyncio.run(file_id())
    flow = tmp / "flow.yaml"
    flow.write_text(flow_text(base_url), encoding="utf-8")
    rows = tmp / "rows.jsonl"
    rows.write_text(
        "".join(json.dumps({"training_file": training_file}) + "\n" for _ in range(runs)),
        encoding="utf-8",
    )
    return flow, rows


def run(command: list[str], env: dict[str, str], log: Path) -> None:
    with log.open("wb") as sink:
        code = subprocess.run(command, stdout=sink, stderr=subprocess.STDOUT, env=env).returncode
    if code != 0:
        raise SystemExit(f"{' '.join(command[:3])} exited {code}:\n{log.read_text()[-2000:]}")


def in_process(args: argparse.Namespace, db: Database, tmp: Path) -> Outcome:
    schema = "inproc"
    with serve_local(args.job_seconds) as server:
        flow, rows = prepare(tmp, server.url, args.runs)
        env = {**os.environ, "BENCH_API_KEY": API_KEY, "STEPRUN_STATE": db.store(schema)}
        before = db.commits()
        command = [*steprun_command(), "run", str(flow), "--inputs-file", str(rows)]
        run([*command, "--concurrency", str(args.concurrency)], env, tmp / "inproc.log")
        commits = db.commits() - before
    return from_store(db, schema, "in-process", commits)


def with_workers(args: argparse.Namespace, db: Database, tmp: Path, count: int) -> Outcome:
    schema = f"workers{count}"
    with serve_local(args.job_seconds) as server:
        flow, rows = prepare(tmp, server.url, args.runs)
        env = {**os.environ, "BENCH_API_KEY": API_KEY, "STEPRUN_STATE": db.store(schema)}
        command = [*steprun_command(), "run", str(flow), "--inputs-file", str(rows), "--submit"]
        began = time.perf_counter()
        run(command, env, tmp / f"submit{count}.log")
        submitted = args.runs / (time.perf_counter() - began)
        reads_before = db.reads
        before = db.commits()
        per_worker = max(1, args.concurrency // count)
        workers = []
        for n in range(count):
            with (tmp / f"worker{count}-{n}.log").open("wb") as sink:
                workers.append(
                    subprocess.Popen(
                        [*steprun_command(), "worker", "--concurrency", str(per_worker)],
                        stdout=sink,
                        stderr=subprocess.STDOUT,
                        env=env,
                    )
                )
        try:
            while True:
                time.sleep(0.5)
                done = db.query(schema, "SELECT count(*) FROM runs WHERE status = 'succeeded'")
                if int(done[0][0]) >= args.runs:
                    break
                if any(w.poll() is not None for w in workers):
                    raise SystemExit(f"a worker exited early; see {tmp}/worker{count}-*.log")
        finally:
            for w in workers:
                if w.poll() is None:
                    w.send_signal(signal.SIGTERM)
            for w in workers:
                w.wait(60)
        commits = db.commits() - before - (db.reads - reads_before)
    note = f"submit: {submitted:.0f} runs/s"
    return from_store(db, schema, f"{count} worker{'s' * (count > 1)}", commits, note)


def bare(args: argparse.Namespace) -> Outcome:
    async def main() -> Outcome:
        with serve_local(args.job_seconds) as server:
            async with httpx.AsyncClient(timeout=60) as http:
                file_id = await upload(http, server.url)
            found = await bare_loop(server.url, file_id, args.runs, args.concurrency, gated=True)
        return Outcome("bare loop (floor)", args.runs / found.seconds, found.latencies)

    return asyncio.run(main())


def percentile(values: list[float], q: int) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=200, help="in all, across workers")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--job-seconds", type=float, default=1.0)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432/postgres")
    args = parser.parse_args()

    db = Database(args.postgres)
    outcomes = []
    try:
        with tempfile.TemporaryDirectory(prefix="steprun-bench-workers-") as folder:
            tmp = Path(folder)
            outcomes.append(bare(args))
            outcomes.append(in_process(args, db, tmp))
            for count in (int(n) for n in args.workers.split(",")):
                outcomes.append(with_workers(args, db, tmp, count))
    finally:
        db.drop()

    print(
        f"{args.runs} runs of create → wait → ask (3 HTTP steps), concurrency {args.concurrency}"
        f" in all, jobs of {args.job_seconds:g} s, PostgreSQL run store; {machine()}"
    )
    header = f"{'':20} {'runs/s':>8} " + " ".join(f"{s + ' p50/p99 ms':>22}" for s in STEPS)
    print(header + f" {'PG xacts/step':>14}")
    for o in outcomes:
        cells = " ".join(
            f"{percentile(o.latencies[s], 50):>10.1f} /{percentile(o.latencies[s], 99):>10.1f}"
            for s in STEPS
        )
        xacts = f"{o.xacts_per_step:>14.1f}" if o.xacts_per_step is not None else f"{'2 (min)':>14}"
        print(f"{o.name:20} {o.runs_per_second:>8.1f} {cells} {xacts}  {o.note}")


if __name__ == "__main__":
    main()
