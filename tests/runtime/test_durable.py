"""Durable runs, proven the hard way: a real run of the fine-tuning example against
``serve-local``, SIGKILLed at each dangerous instant and at random ones, then resumed.

What every scenario checks (``durable_support.crash_and_resume``): the resumed run
succeeds, and the server's own ledger holds exactly one fine-tuning job tagged with the
run, the very job the wait step watched; each data file was uploaded once.

The scenarios of one test run in parallel child processes (each with its own run store
and data file names), so that twenty-five kills cost seconds, not minutes.
"""

from __future__ import annotations

import json
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from functools import partial
from pathlib import Path

import pytest

from tests.runtime.durable_support import (
    CREATE_PATH,
    REPO,
    Child,
    LocalServer,
    LosingProxy,
    Outcome,
    Workspace,
    crash_and_resume,
    in_wait,
    parse_time,
    reap_children,
    serve_local,
    wait_for,
)

pytestmark = pytest.mark.slow

# Makes a fresh run store of the test's kind (SQLite, PostgreSQL): see conftest.py.
NewState = Callable[[str], "str | Path"]


@pytest.fixture(autouse=True)
def _reap() -> Iterator[None]:
    """No steprun child outlives its test, even one that failed half-way."""
    yield
    reap_children()


# A fine-tuning job on the test server takes this long: a whole run is about 3 s.
JOB_SECONDS = 2.0
WORKERS = 6


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    with serve_local(tmp_path_factory.mktemp("serve-local"), JOB_SECONDS) as found:
        yield found


@pytest.fixture
def quiet_server(server: LocalServer) -> Iterator[LocalServer]:
    """The server for a test that arms faults: they are global, so cleared afterwards."""
    server.clear_faults()
    yield server
    server.clear_faults()


def in_parallel(scenarios: dict[str, Callable[[], Outcome]]) -> dict[str, Outcome]:
    """Run independent scenarios at once; report every failure, not only the first."""
    with ThreadPoolExecutor(WORKERS) as pool:
        futures = {name: pool.submit(scenario) for name, scenario in scenarios.items()}
    failures = []
    outcomes = {}
    for name, future in futures.items():
        error = future.exception()
        if error is not None:
            failures.append(f"--- {name}: {error}")
        else:
            outcomes[name] = future.result()
    assert not failures, "\n".join(failures)
    return outcomes


# -- kills at the dangerous instants --------------------------------------------------------


def test_a_run_killed_at_each_dangerous_instant_resumes_with_exactly_one_job(
    server: LocalServer, tmp_path: Path, new_state: NewState
) -> None:
    points = {
        # "started" is committed, the create request not sent yet.
        "before-create": "step-started@job",
        # The job exists and the answer is in hand, but nothing is committed.
        "after-response-before-commit": "step-finished-before-commit@job",
        # The job is committed; the process dies before moving on.
        "after-commit": "step-finished-after-commit@job",
        # The upload went out, its answer is lost with the process.
        "upload-before-commit": "step-finished-before-commit@upload",
    }
    scenarios: dict[str, Callable[[], Outcome]] = {
        name: (
            lambda name=name, point=point: crash_and_resume(
                Workspace(tmp_path / name, server, state=new_state(name)), name, failpoint=point
            )
        )
        for name, point in points.items()
    }
    wait_ws = Workspace(tmp_path / "during-wait", server, state=new_state("during-wait"))
    scenarios["during-wait"] = lambda: crash_and_resume(
        wait_ws, "during-wait", kill_when=in_wait(wait_ws)
    )
    # Killed after the job was created, then killed again as the resume began the step
    # (before it looked for the job): the third attempt still knows the tag to look for.
    scenarios["twice"] = lambda: crash_and_resume(
        Workspace(tmp_path / "twice", server, state=new_state("twice")),
        "twice",
        failpoint="step-finished-before-commit@job",
        resume_failpoints=["step-started@job", "step-finished-before-commit@job"],
    )
    # Sent, processed by the server, answer not received yet: a proxy loses the answer,
    # and the kill comes once the server has done the work.
    proxies: list[LosingProxy] = []
    for name, request, done in (
        ("create-answer-lost", b"POST /v1/fine_tuning/jobs HTTP", _job_created),
        ("upload-answer-lost", b"POST /v1/files HTTP", _file_uploaded),
    ):
        ws = Workspace(tmp_path / name, server, state=new_state(name))
        proxies.append(proxy := LosingProxy(server, request))
        scenarios[name] = partial(
            crash_and_resume,
            ws,
            name,
            kill_when=partial(done, ws, proxy),
            base_url=proxy.url,
        )
    try:
        outcomes = in_parallel(scenarios)
    finally:
        for proxy in proxies:
            proxy.close()

    assert all(o.resumed for o in outcomes.values()), outcomes
    at = {name: outcome.position for name, outcome in outcomes.items()}
    assert at == {
        "before-create": "job",
        "after-response-before-commit": "job",
        "after-commit": "wait",
        "upload-before-commit": "upload",
        "during-wait": "wait",
        "twice": "job",
        "create-answer-lost": "job",
        "upload-answer-lost": "upload",
    }


def _job_created(ws: Workspace, proxy: LosingProxy, child: Child) -> bool:
    assert ws.server is not None
    run = ws.query("SELECT id FROM runs")
    return proxy.lost.is_set() and bool(run and ws.server.jobs_of(run[0]["id"]))


def _file_uploaded(ws: Workspace, proxy: LosingProxy, child: Child) -> bool:
    assert ws.server is not None
    return proxy.lost.is_set() and bool(ws.server.uploads(ws.file("support")))


def test_a_run_killed_while_the_server_delays_its_create_resumes_with_one_job(
    quiet_server: LocalServer, tmp_path: Path, new_state: NewState
) -> None:
    server = quiet_server
    ws = Workspace(tmp_path / "delayed", server, state=new_state("delayed"))
    latency = 1.0
    # The server holds the create request before processing it: the kill lands after the
    # request was sent and before any answer.
    server.arm(path=CREATE_PATH, method="POST", kind="latency", seconds=latency, times=1)
    before = server.create_requests()
    killed: list[float] = []

    def sent(child: Child) -> bool:
        if server.create_requests() > before:
            killed.append(time.monotonic())
            return True
        return False

    outcome: dict[str, bool] = {}

    def settled(run_id: str) -> None:
        # Like a real API, serve-local finishes a request it has read although its client
        # died meanwhile; resume only once it has, as a restart takes longer than that.
        time.sleep(max(0.0, killed[0] + latency + 0.5 - time.monotonic()))
        outcome["created_by_server"] = bool(server.jobs_of(run_id))

    result = crash_and_resume(ws, "delayed", kill_when=sent, before_resume=settled)

    assert result.position == "job" and result.resumed
    # The delayed request made the job, and the resume adopted it without a second create
    # (one job in all is checked by crash_and_resume).
    assert outcome["created_by_server"]
    assert server.create_requests() == before + 1


def test_a_run_resumed_while_the_server_still_holds_its_create_waits_and_makes_one_job(
    quiet_server: LocalServer, tmp_path: Path, new_state: NewState
) -> None:
    # Issue #8: killed after the create went out, resumed at once, while the server is
    # still working on that request. The resume must not find "no job" and send another:
    # it keeps looking for the tagged job while the interrupted request may be in flight.
    server = quiet_server
    ws = Workspace(tmp_path / "resumed-early", server, state=new_state("resumed-early"))
    server.arm(path=CREATE_PATH, method="POST", kind="latency", seconds=3.0, times=1)
    before = server.create_requests()

    def sent(child: Child) -> bool:
        return server.create_requests() > before

    result = crash_and_resume(ws, "resumed-early", kill_when=sent)

    assert result.position == "job" and result.resumed
    # One create request in all: the resume adopted the late job (one job in all is
    # checked by crash_and_resume).
    assert server.create_requests() == before + 1


def test_a_run_killed_at_20_random_instants_always_resumes_with_exactly_one_job(
    server: LocalServer, tmp_path: Path, new_state: NewState
) -> None:
    chance = random.Random(5)  # seeded: a failure names an instant that can be replayed
    # After the run is stored it spends about a quarter of a second checking, uploading
    # and creating (where the effects are: half the kills land there), then JOB_SECONDS
    # waiting, then asks the model.
    delays = sorted(
        round(chance.uniform(*span), 3)
        for span in [(0.0, 0.3)] * 10 + [(0.3, JOB_SECONDS + 0.8)] * 10
    )
    scenarios: dict[str, Callable[[], Outcome]] = {
        f"random-{n:02d}-{delay}s": (
            lambda n=n, delay=delay: crash_and_resume(
                Workspace(tmp_path / f"random-{n:02d}", server, state=new_state(f"random-{n:02d}")),
                f"random-{n:02d}-{delay}s",
                kill_after=delay,
            )
        )
        for n, delay in enumerate(delays)
    }
    outcomes = in_parallel(scenarios)

    hit = [o for o in outcomes.values() if o.resumed]
    # Nearly every kill lands inside the run (the latest may come after its end), and
    # not all in the long wait (where exactly depends on the machine's speed).
    where = sorted((o.name, o.position) for o in hit)
    assert len(hit) >= 15, where
    assert len({o.position for o in hit}) >= 2, where


# -- the ambiguous create ----------------------------------------------------------------


def test_a_create_whose_connection_drops_after_the_job_was_made_adopts_it(
    quiet_server: LocalServer, tmp_path: Path, new_state: NewState
) -> None:
    server = quiet_server
    ws = Workspace(tmp_path / "drop", server, state=new_state("drop"))
    args = ws.fine_tune()
    server.arm(path=CREATE_PATH, method="POST", kind="drop", times=1)
    before = server.create_requests()

    done = ws.cli(*args)

    assert done.code == 0, done.stderr
    run_id = ws.runs()[0]["id"]
    jobs = server.jobs_of(run_id)
    assert len(jobs) == 1, jobs
    fields = done.json()
    assert fields["job"]["id"] == fields["wait"]["id"] == jobs[0]["id"]
    assert "the request is not sent again" in done.stderr
    assert "found the job an earlier attempt created" in done.stderr
    assert server.create_requests() == before + 1  # never sent twice


# -- two resumers ------------------------------------------------------------------------


def test_two_processes_resuming_one_run_at_once_one_wins_and_one_job_exists(
    server: LocalServer, tmp_path: Path, new_state: NewState
) -> None:
    ws = Workspace(tmp_path / "two", server, state=new_state("two"))
    # A long poll interval keeps the winner busy (sleeping until its wake-up time) while
    # the loser tries: the loser can only meet a live lease, never a finished run. The
    # wake-up time counts from the kill, and both resumes start up first (seconds on a
    # loaded machine): 3 s sometimes let the winner finish before the loser looked.
    args = ws.fine_tune(poll_interval="6s", max_poll_interval="6s")
    first = ws.spawn(*args)
    wait_for(lambda: (row := ws.step_started("wait")) and row["wake_at"], "the wait to sleep")
    first.kill()
    run_id = ws.runs()[0]["id"]
    attempts_before = len(ws.attempts(run_id))

    both = [ws.spawn("resume", run_id), ws.spawn("resume", run_id)]
    codes = sorted(child.wait(60) for child in both)

    assert codes[0] == 0 and codes[1] != 0, [c.result() for c in both]
    winner, loser = sorted(both, key=lambda c: c.process.returncode)
    assert codes[1] == 2
    assert "is being run by another process" in loser.stderr(), loser.stderr()
    assert "Traceback" not in loser.stderr()
    assert "resuming run" not in loser.stderr()
    assert " answers: " in json.loads(winner.stdout())["answer"]["message"]
    assert len(server.jobs_of(run_id)) == 1
    # Only the winner wrote attempts: wait (resumed), ask, answer.
    steps = [a["step_id"] for a in ws.attempts(run_id)[attempts_before:]]
    assert steps == ["wait", "ask", "answer"]


# -- waiting survives restarts -----------------------------------------------------------


def test_a_resumed_wait_watches_the_same_job_and_keeps_its_wake_up_time(
    server: LocalServer, tmp_path: Path, new_state: NewState
) -> None:
    ws = Workspace(tmp_path / "wake", server, state=new_state("wake"))
    # The first poll finds the job unfinished and sleeps 8 s: that wake-up time is what
    # the run store must keep across the kill. (8 s, not less: on a busy machine the
    # resuming process alone can take seconds to start, and the attempt it records must
    # still come well before the wake-up time.)
    args = ws.fine_tune(poll_interval="8s", max_poll_interval="8s")
    child = ws.spawn(*args)
    row = wait_for(
        lambda: (found := ws.step_started("wait")) and found["wake_at"] and found,
        "the wait step's persisted wake-up time",
    )
    child.kill()
    killed_at = time.time()
    wake_at = float(row["wake_at"])
    run_id = ws.runs()[0]["id"]
    job_id = ws.show(run_id)["merge_fields"]["job"]["id"]
    assert wake_at - killed_at > 2.5, "the kill came too late to test the wake-up time"

    resumed = ws.cli("resume", run_id)

    assert resumed.code == 0, resumed.stderr
    fields = resumed.json()
    assert fields["wait"]["id"] == job_id  # the same job, watched again
    assert fields["wait"]["status"] == "succeeded"
    assert [j["id"] for j in server.jobs_of(run_id)] == [job_id]
    waits = [a for a in ws.attempts(run_id) if a["step_id"] == "wait"]
    assert [a["status"] for a in waits] == ["started", "succeeded"]
    again = waits[-1]
    assert again["wake_at"] is None  # cleared once the step finished
    report = json.loads(again["report"])
    # The resumed attempt did not poll before the persisted wake-up time: the step began
    # (and so sent its first request) only then. Report times have millisecond precision.
    assert parse_time(report["started_at"]) >= wake_at - 0.002
    first_poll = parse_time(report["logs"][0]["time"])
    assert first_poll >= wake_at - 0.002, report["logs"]
    assert again["started"] < wake_at - 1  # the attempt itself was recorded at once


# -- corruption --------------------------------------------------------------------------


def _hello(ws: Workspace) -> str:
    """Run the no-network example to its end in ``ws``; its run id."""
    done = ws.cli("run", REPO / "examples" / "hello.yaml")
    assert done.code == 0, done.stderr
    run_id = ws.runs()[0]["id"]
    return str(run_id)


def test_a_damaged_state_file_is_named_with_what_to_do_and_nothing_runs(
    server: LocalServer, tmp_path: Path
) -> None:
    ws = Workspace(tmp_path / "damaged", server)
    args = ws.fine_tune()
    child = ws.spawn(*args)
    wait_for(lambda: ws.step_started("wait"), "the wait step")
    child.kill()  # a run with committed steps (and a job) that a resume must not redo
    run_id = ws.runs()[0]["id"]
    # Fold the WAL into the file first, as the next open would, so the damage is real.
    with closing(sqlite3.connect(ws.state)) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = ws.state.read_bytes()
    jobs_before = len(server.ledger()["jobs"])

    for damaged in (data[: len(data) // 2], random.Random(1).randbytes(len(data))):
        ws.state.write_bytes(damaged)
        for command in (["resume", run_id], ["runs"], args):
            found = ws.cli(*command)
            assert found.code == 2, found.stderr
            assert str(ws.state) in found.stderr, found.stderr
            assert "damaged" in found.stderr and f"mv {ws.state} " in found.stderr
        # The file is left as it was, for the user to rescue or move aside.
        assert ws.state.read_bytes() == damaged

    # Nothing ran: no job was created.
    assert len(server.ledger()["jobs"]) == jobs_before


def test_a_damaged_json_value_is_reported_and_the_run_is_not_resumed(
    tmp_path: Path, new_state: NewState
) -> None:
    ws = Workspace(tmp_path / "json", state=new_state("json"))
    run_id = _hello(ws)
    # The run is resumable as far as its status goes: it must be the value that stops it.
    ws.reader.execute(
        'UPDATE merge_fields SET value = \'{"text": "Hel\' WHERE run_id = ? AND name = ?',
        run_id,
        "greeting",
    )
    ws.reader.execute("UPDATE runs SET status = 'failed' WHERE id = ?", run_id)
    attempts = len(ws.attempts(run_id))

    for command in (["show", run_id], ["resume", run_id]):
        found = ws.cli(*command)
        assert found.code == 2, found.stderr
        assert str(ws.state) in found.stderr
        assert "merge field greeting" in found.stderr and run_id in found.stderr, found.stderr
    assert len(ws.attempts(run_id)) == attempts  # nothing re-ran


# -- many runs in one process ------------------------------------------------------------

MANY = """\
flow: many
inputs: {n: 0}
steps:
  - id: double
    type: core.set
    config: {value: "{{ inputs.n * 2 }}"}
  - id: check
    type: core.condition
    config:
      cases: [{when: "{{ double == inputs.n * 2 }}", next: done}]
      default: wrong
  - id: done
    type: core.log
    config: {message: "row {{ inputs.n }} doubled is {{ double }}"}
    next: end
  - id: wrong
    type: core.fail
    config: {message: "wrong value {{ double }}"}
"""


def test_an_inputs_file_runs_one_durable_run_per_row_in_one_process(
    tmp_path: Path, new_state: NewState
) -> None:
    ws = Workspace(tmp_path / "many", state=new_state("many"))
    (ws.root / "many.yaml").write_text(MANY, encoding="utf-8")
    count = 60
    (ws.root / "rows.jsonl").write_text(
        "".join(json.dumps({"n": n}) + "\n" for n in range(count)), encoding="utf-8"
    )

    done = ws.cli("run", "many.yaml", "--inputs-file", "rows.jsonl", "--concurrency", "16")

    assert done.code == 0, done.stderr
    # In completion order, each line carrying its row (the line of the file).
    lines = sorted((json.loads(line) for line in done.stdout.splitlines()), key=lambda x: x["row"])
    assert [line["row"] for line in lines] == list(range(1, count + 1))
    assert [line["merge_fields"]["double"] for line in lines] == [2 * n for n in range(count)]
    assert all(line["status"] == "succeeded" for line in lines)
    ids = {line["run"] for line in lines}
    assert len(ids) == count
    stored = ws.runs()
    assert {r["id"] for r in stored} == ids  # all in the one store
    assert {r["status"] for r in stored} == {"succeeded"}
    assert {r["flow"] for r in stored} == {"many"}
    assert f"{count} of {count} rows succeeded" in done.stderr
    # Every run stored its own steps.
    attempts = ws.attempts()
    assert len(attempts) == 3 * count
    assert {a["run_id"] for a in attempts} == ids


def test_an_inputs_file_of_fine_tunes_creates_one_job_per_row(
    server: LocalServer, tmp_path: Path, new_state: NewState
) -> None:
    ws = Workspace(tmp_path / "many-ft", server, state=new_state("many-ft"))
    args = ws.fine_tune()
    questions = [f"Question {n}: how do I reset my password?" for n in range(5)]
    (ws.root / "rows.jsonl").write_text(
        "".join(json.dumps({"question": q}) + "\n" for q in questions), encoding="utf-8"
    )

    done = ws.cli(*args, "--inputs-file", "rows.jsonl", "--concurrency", "5")

    assert done.code == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    ids = [line["run"] for line in lines]
    assert len(set(ids)) == 5
    for run_id, line in zip(ids, lines, strict=True):
        jobs = server.jobs_of(run_id)
        assert len(jobs) == 1, (run_id, jobs)
        assert line["merge_fields"]["wait"]["id"] == jobs[0]["id"]
    assert {r["id"] for r in ws.runs()} == set(ids)


def test_a_process_of_many_runs_killed_mid_create_leaves_each_run_resumable(
    server: LocalServer, tmp_path: Path, new_state: NewState
) -> None:
    ws = Workspace(tmp_path / "many-killed", server, state=new_state("many-killed"))
    args = ws.fine_tune()
    (ws.root / "rows.jsonl").write_text(
        "".join(json.dumps({"question": f"Question {n}?"}) + "\n" for n in range(5)),
        encoding="utf-8",
    )
    # The first run to have its job in hand kills the process: the other runs are wherever
    # they were, some perhaps with a create request sent and unanswered.
    killed = ws.cli(
        *args,
        "--inputs-file",
        "rows.jsonl",
        "--concurrency",
        "5",
        env={"STEPRUN_FAILPOINT": "step-finished-before-commit@job"},
    )
    assert killed.code == -9, killed.stderr
    runs = ws.runs()
    # Left "running" in the store by a process that is gone: listed as interrupted.
    assert len(runs) == 5 and {r["status"] for r in runs} == {"interrupted"}

    resumes = [ws.spawn("resume", r["id"]) for r in runs]
    for child in resumes:
        assert child.wait(60) == 0, child.stderr()

    for run in ws.runs():
        assert run["status"] == "succeeded"
        assert len(server.jobs_of(run["id"])) == 1, server.jobs_of(run["id"])
