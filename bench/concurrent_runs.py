"""Many durable runs at once, beside the same work as a bare asyncio+httpx loop (issue 5).

    python bench/concurrent_runs.py [--runs 1000] [--concurrency 200] [--job-seconds 2]

The work: ``--runs`` runs of a 3-step flow against ``steprun serve-local`` (started here,
on 127.0.0.1, port 0, with an API key): create a fine-tuning job on a training file
uploaded once (its id is every row's input), wait for it, then ask its fine-tuned model
one non-streamed chat question. ``--concurrency`` runs at a time.

  - steprun: exactly as a user runs it, in a subprocess:
    ``steprun run FLOW --inputs-file rows.jsonl --concurrency N --state runs.db --report
    FILE``. Its time is the command's wall time, start-up (imports, validation, opening
    the store) included; every step boundary is committed to SQLite (WAL,
    synchronous=FULL) before the run moves on. Also shown: the time from the first run's
    start to the last run's end, from the run reports.
  - bare loop: the same requests from one ``httpx.AsyncClient`` under an
    ``asyncio.Semaphore``, in this process: ``POST /fine_tuning/jobs``; then the wait
    step's local poll schedule (``GET`` the job, plus ``GET …/events?limit=20`` while it
    is running, as the step fetches the newest metrics for its progress line; sleep 1 s,
    then 1.5x longer each time, up to 5 s); then ``POST /chat/completions``. No store,
    no reports, no validation. Twice: with httpx's defaults, as anyone would write it,
    and with the runtime's own transport (``steprun.runtime.http_client``: requests wait
    at a gate instead of in httpx's pool, whose queue costs CPU quadratic in its length).
    The second is the true floor for the engine: the same HTTP, none of the engine.

Each of the three gets a fresh server (so none inherits another's thousand jobs).
Printed: runs per second; the CPU seconds of the client side (the steprun process, or
the bare loop) and of the server; p50/p99 latency of each step (``duration_ms`` of the
step reports, and the same phases timed in the bare loops); the steprun process's peak
RSS (``ru_maxrss`` of that child, from ``os.wait4``); the overhead, steprun's time over
each bare loop's. Targets (issue 5): overhead under 20 %, peak RSS under 300 MB; issue 14
(``--runs 200 --concurrency 200``): at most 1.3x the bare loop's time, peak RSS 150 MB.
Best of ``--repeat``. Nothing is asserted: the machines here are shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import httpx
from _serve import API_KEY, BASE_MODEL, QUESTION, headers, machine, serve_local, upload

from steprun.runtime.durations import parse_duration
from steprun.runtime.http_client import (
    MAX_CONNECTIONS,
    MAX_KEEPALIVE_CONNECTIONS,
    BoundedTransport,
)
from steprun.steps.openai.wait import BACKOFF, LOCAL_MAX_POLL_INTERVAL, LOCAL_POLL_INTERVAL

MAX_TOKENS = 64
STEPS = ("job", "wait", "ask")


def flow_text(base_url: str) -> str:
    # The server is reached as provider `openai` with a base_url, so the wait step is given
    # the poll schedule it uses for the embedded backend (its default for OpenAI is 15 s).
    return f"""\
flow: bench-concurrent-runs
authorization: server
authorizations:
  server:
    provider: openai
    api_key: ${{env:BENCH_API_KEY}}
    base_url: {base_url}
steps:
  - id: job
    type: openai.create_fine_tuning_job
    config:
      training_file: "{{{{ inputs.training_file }}}}"
      model: {BASE_MODEL}
      suffix: bench
  - id: wait
    type: openai.wait_for_fine_tuning_job
    config:
      job_id: "{{{{ job.id }}}}"
      poll_interval: {LOCAL_POLL_INTERVAL}
      max_poll_interval: {LOCAL_MAX_POLL_INTERVAL}
      max_wait: 10m
  - id: ask
    type: openai.request_fine_tuned_model
    config:
      model: "{{{{ wait.fine_tuned_model }}}}"
      mode: chat
      prompt: {json.dumps(QUESTION)}
      max_tokens: {MAX_TOKENS}
"""


@dataclass
class Outcome:
    seconds: float
    latencies: dict[str, list[float]] = field(default_factory=dict)  # ms, per step
    runs_seconds: float | None = None  # first run start to last run end
    peak_rss_mb: float | None = None
    succeeded: int = 0
    requests: int = 0
    cpu_seconds: float = 0.0  # of the client side: steprun's process, or the bare loop's
    server_cpu_seconds: float | None = None


# -- the bare loop ------------------------------------------------------------------------


async def bare_loop(
    base_url: str, file_id: str, runs: int, concurrency: int, *, gated: bool
) -> Outcome:
    first = parse_duration(LOCAL_POLL_INTERVAL)
    longest = max(first, parse_duration(LOCAL_MAX_POLL_INTERVAL))
    auth = headers()
    latencies: dict[str, list[float]] = {step: [] for step in STEPS}
    counts = {"succeeded": 0, "requests": 0}
    gate = asyncio.Semaphore(concurrency)

    async def one(http: httpx.AsyncClient) -> None:
        async with gate:
            began = time.perf_counter()
            response = await http.post(
                f"{base_url}/fine_tuning/jobs",
                headers=auth,
                json={"training_file": file_id, "model": BASE_MODEL, "suffix": "bench"},
            )
            response.raise_for_status()
            job = response.json()
            counts["requests"] += 1
            latencies["job"].append((time.perf_counter() - began) * 1000)

            began = time.perf_counter()
            interval = first
            while True:
                response = await http.get(f"{base_url}/fine_tuning/jobs/{job['id']}", headers=auth)
                response.raise_for_status()
                job = response.json()
                counts["requests"] += 1
                if job["status"] == "running":
                    events = await http.get(
                        f"{base_url}/fine_tuning/jobs/{job['id']}/events",
                        headers=auth,
                        params={"limit": 20},
                    )
                    events.raise_for_status()
                    events.json()
                    counts["requests"] += 1
                if job["status"] == "succeeded":
                    break
                if job["status"] in ("failed", "cancelled"):
                    raise RuntimeError(f"job {job['id']} {job['status']}")
                await asyncio.sleep(interval)
                interval = min(interval * BACKOFF, longest)
            latencies["wait"].append((time.perf_counter() - began) * 1000)

            began = time.perf_counter()
            response = await http.post(
                f"{base_url}/chat/completions",
                headers=auth,
                json={
                    "model": job["fine_tuned_model"],
                    "max_tokens": MAX_TOKENS,
                    "messages": [{"role": "user", "content": QUESTION}],
                },
            )
            response.raise_for_status()
            response.json()
            counts["requests"] += 1
            latencies["ask"].append((time.perf_counter() - began) * 1000)
            counts["succeeded"] += 1

    transport = None
    if gated:
        limits = httpx.Limits(
            max_connections=MAX_CONNECTIONS, max_keepalive_connections=MAX_KEEPALIVE_CONNECTIONS
        )
        transport = BoundedTransport(httpx.AsyncHTTPTransport(limits=limits), MAX_CONNECTIONS)
    async with httpx.AsyncClient(timeout=600, transport=transport) as http:
        cpu = time.process_time()
        began = time.perf_counter()
        await asyncio.gather(*(one(http) for _ in range(runs)))
        took = time.perf_counter() - began
        cpu = time.process_time() - cpu
    return Outcome(
        took,
        latencies,
        succeeded=counts["succeeded"],
        requests=counts["requests"],
        cpu_seconds=cpu,
    )


def measure_bare(args: argparse.Namespace, *, gated: bool) -> Outcome:
    async def main() -> Outcome:
        with serve_local(args.job_seconds) as server:
            async with httpx.AsyncClient(timeout=60) as http:
                file_id = await upload(http, server.url)
            server_cpu = server.cpu_seconds()
            outcome = await bare_loop(server.url, file_id, args.runs, args.concurrency, gated=gated)
            outcome.server_cpu_seconds = _spent(server_cpu, server.cpu_seconds())
            return outcome

    return asyncio.run(main())


def _spent(before: float | None, after: float | None) -> float | None:
    return None if before is None or after is None else after - before


# -- steprun ------------------------------------------------------------------------------


def measure_steprun(args: argparse.Namespace, tmp: Path) -> Outcome:
    from _serve import steprun_command

    with serve_local(args.job_seconds) as server:
        base_url = server.url

        async def file_id() -> str:
            async with httpx.AsyncClient(timeout=60) as http:
                return await upload(http, base_url)

        training_file = asyncio.run(file_id())
        flow = tmp / "flow.yaml"
        flow.write_text(flow_text(base_url), encoding="utf-8")
        rows = tmp / "rows.jsonl"
        rows.write_text(
            "".join(json.dumps({"training_file": training_file}) + "\n" for _ in range(args.runs)),
            encoding="utf-8",
        )
        state = tmp / "runs.db"
        report = tmp / "report.jsonl"
        for leftover in (state, report):
            leftover.unlink(missing_ok=True)
        command = [
            *steprun_command(),
            "run",
            str(flow),
            "--inputs-file",
            str(rows),
            "--concurrency",
            str(args.concurrency),
            "--state",
            str(state),
            "--report",
            str(report),
        ]
        env = {**os.environ, "BENCH_API_KEY": API_KEY}
        server_cpu = server.cpu_seconds()
        with (tmp / "stdout.jsonl").open("wb") as out, (tmp / "stderr.txt").open("wb") as err:
            began = time.perf_counter()
            process = subprocess.Popen(command, stdout=out, stderr=err, env=env)
            # wait4, not Popen.wait: the rusage of this one child (its own peak RSS).
            _, status, usage = os.wait4(process.pid, 0)
            took = time.perf_counter() - began
            process.returncode = os.waitstatus_to_exitcode(status)
        server_cpu = _spent(server_cpu, server.cpu_seconds())
    if process.returncode != 0:
        tail = (tmp / "stderr.txt").read_text(errors="replace")[-2000:]
        raise SystemExit(f"steprun run exited {process.returncode}:\n{tail}")
    latencies: dict[str, list[float]] = {step: [] for step in STEPS}
    starts: list[float] = []
    ends: list[float] = []
    succeeded = 0
    with report.open(encoding="utf-8") as lines:
        for line in lines:
            item = json.loads(line)
            if item["kind"] == "step":
                latencies[item["step"]].append(float(item["duration_ms"]))
            elif item["kind"] == "run":
                starts.append(datetime.fromisoformat(item["started_at"]).timestamp())
                ends.append(datetime.fromisoformat(item["ended_at"]).timestamp())
                succeeded += item["status"] == "succeeded"
    # ru_maxrss is in kilobytes on Linux.
    return Outcome(
        took,
        latencies,
        runs_seconds=max(ends) - min(starts),
        peak_rss_mb=usage.ru_maxrss / 1024,
        succeeded=succeeded,
        cpu_seconds=usage.ru_utime + usage.ru_stime,
        server_cpu_seconds=server_cpu,
    )


# -- report -------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    if len(values) < 2:
        return values[0] if values else float("nan")
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument(
        "--job-seconds",
        type=float,
        default=2.0,
        help="how long each fine-tuning job takes on the server",
    )
    parser.add_argument("--repeat", type=int, default=1, help="best of this many")
    args = parser.parse_args()

    best: dict[str, Outcome] = {}

    def keep(kind: str, outcome: Outcome) -> None:
        if kind not in best or outcome.seconds < best[kind].seconds:
            best[kind] = outcome

    with tempfile.TemporaryDirectory(prefix="steprun-bench-") as tmp:
        for _ in range(args.repeat):
            # Interleaved, so that a noisy minute on the machine is not all one side's.
            keep("bare", measure_bare(args, gated=False))
            keep("steprun", measure_steprun(args, Path(tmp)))
            keep("gated", measure_bare(args, gated=True))
    bare, gated, engine = best["bare"], best["gated"], best["steprun"]

    print(
        f"{args.runs} runs of create → wait → ask, concurrency {args.concurrency}, jobs of "
        f"{args.job_seconds:g} s, best of {args.repeat}; {machine()}"
    )
    print(
        f"  runs succeeded: steprun {engine.succeeded}/{args.runs}, bare loops "
        f"{bare.succeeded}/{args.runs} and {gated.succeeded}/{args.runs}; "
        f"the bare loop sent {bare.requests} requests"
    )
    print(f"  {'':<46} {'seconds':>8} {'runs/s':>8} {'CPU s':>8} {'server CPU s':>13}")
    rows: list[tuple[str, float, Outcome | None]] = [
        ("bare asyncio+httpx loop (httpx defaults)", bare.seconds, bare),
        ("bare loop, requests gated as the runtime's", gated.seconds, gated),
        ("steprun run (the command, start-up incl.)", engine.seconds, engine),
    ]
    if engine.runs_seconds is not None:
        rows.append(("steprun, first run start → last run end", engine.runs_seconds, None))
    for name, seconds, outcome in rows:
        cpu = server = ""
        if outcome is not None:
            cpu = f"{outcome.cpu_seconds:8.2f}"
            if outcome.server_cpu_seconds is not None:
                server = f"{outcome.server_cpu_seconds:13.2f}"
        print(f"  {name:<46} {seconds:8.2f} {args.runs / seconds:8.1f} {cpu:>8} {server:>13}")
    print(
        f"  {'step latency, ms':<46} {'p50':>8} {'p99':>8}   {'bare p50':>8} {'bare p99':>8}"
        f"   {'gated p50':>9} {'gated p99':>9}"
    )
    for step in STEPS:
        print(
            f"  {step:<46} {percentile(engine.latencies[step], 50):8.1f} "
            f"{percentile(engine.latencies[step], 99):8.1f}   "
            f"{percentile(bare.latencies[step], 50):8.1f} "
            f"{percentile(bare.latencies[step], 99):8.1f}   "
            f"{percentile(gated.latencies[step], 50):9.1f} "
            f"{percentile(gated.latencies[step], 99):9.1f}"
        )
    rss = engine.peak_rss_mb or float("nan")
    for name, floor in (("bare loop", bare), ("gated bare loop", gated)):
        overhead = (engine.seconds - floor.seconds) / floor.seconds * 100
        print(
            f"target: engine overhead < 20 % of the {name}'s time: {overhead:.1f} % "
            f"({'within' if overhead < 20 else 'OVER'})"
        )
    print(f"target: steprun peak RSS < 300 MB: {rss:.0f} MB ({'within' if rss < 300 else 'OVER'})")
    # Issue 14 goal 6, for 200 runs at --concurrency 200: the command's time at most 1.3x
    # the bare loop's, in at most 150 MB.
    for name, floor in (("bare loop", bare), ("gated bare loop", gated)):
        ratio = engine.seconds / floor.seconds
        print(
            f"target (issue 14): steprun <= 1.3x the {name}'s time: {ratio:.2f}x "
            f"({'within' if ratio <= 1.3 else 'OVER'})"
        )
    print(
        f"target (issue 14): steprun peak RSS <= 150 MB: {rss:.0f} MB "
        f"({'within' if rss <= 150 else 'OVER'})"
    )


if __name__ == "__main__":
    main()
