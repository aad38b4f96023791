"""Batches (`run --inputs-file`) keep track of their rows: one stdout line per row carrying
it, `runs --batch`, errors blamed on the right row, and Ctrl-C then `resume BATCH_ID`
finishing every row exactly once.

The real CLI in subprocesses; the fine-tunes run against a real serve-local on 127.0.0.1.
"""

from __future__ import annotations

import json
import re
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.runtime.durable_support import LocalServer, Workspace, reap_children, serve_local
from tests.runtime.durable_support import wait_for as wait_until

pytestmark = pytest.mark.slow

BATCH_LINE = re.compile(r"^batch (batch_[0-9a-f]+): ", re.MULTILINE)


@pytest.fixture(autouse=True)
def _reap() -> Iterator[None]:
    yield
    reap_children()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    with serve_local(tmp_path_factory.mktemp("serve-local-batches"), 2.0) as found:
        yield found


LEVELS = """
flow: levels
inputs: {level: info}
steps:
  - id: say
    type: core.log
    config: {level: "{{ inputs.level }}", message: "said at {{ inputs.level }}"}
"""


def lines_of(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def test_each_row_gets_a_line_with_its_row_and_runs_batch_lists_them_in_row_order(
    tmp_path: Path,
) -> None:
    ws = Workspace(tmp_path)
    (tmp_path / "flow.yaml").write_text(LEVELS, encoding="utf-8")
    # Line 2 is blank: rows are lines, so the rows are 1, 3 and 4; row 3 fails at run time.
    (tmp_path / "rows.jsonl").write_text(
        '{"level": "info"}\n\n{"level": "loud"}\n{"level": "warn"}\n', encoding="utf-8"
    )
    done = ws.cli("run", "flow.yaml", "--inputs-file", "rows.jsonl", "--concurrency", "2")

    assert done.code == 1, done.stderr  # a row failed
    batch = BATCH_LINE.search(done.stderr)
    assert batch is not None, done.stderr
    batch_id = batch[1]
    lines = {line["row"]: line for line in lines_of(done.stdout)}
    assert sorted(lines) == [1, 3, 4]
    assert lines[1]["merge_fields"] == {"say": {"level": "info", "message": "said at info"}}
    assert lines[4]["status"] == "succeeded" and lines[4]["error"] is None
    failed = lines[3]
    assert failed["status"] == "failed" and failed["error"]["step"] == "say"
    assert f"row 3: run {failed['run']} failed" in done.stderr
    assert f"2 of 3 rows succeeded (row 3 failed); `steprun resume {batch_id}`" in done.stderr

    listed = ws.cli("runs", "--batch", batch_id)
    assert listed.code == 0, listed.stderr
    table = [line.split() for line in listed.stdout.splitlines()[1:]]
    assert table[0] == ["ROW", "RUN", "STATUS", "DURATION"]
    assert [(row[0], row[1], row[2]) for row in table[1:]] == [
        (str(n), lines[n]["run"], lines[n]["status"]) for n in (1, 3, 4)
    ]
    assert f"1 of 3 rows unfinished: `steprun resume {batch_id}`" in listed.stderr

    shown = ws.cli("show", failed["run"])
    assert f"batch {batch_id}  row 3" in shown.stdout
    assert 'inputs: {"level": "loud"}' in shown.stdout
    assert (ws.show(failed["run"])["batch"], ws.show(failed["run"])["row"]) == (batch_id, 3)


def test_a_bad_row_is_named_by_file_and_line_and_nothing_is_recorded(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    (tmp_path / "flow.yaml").write_text(LEVELS, encoding="utf-8")
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"level": "info"}\n\n{"levle": "warn"}\n{"level": "warn"}\n', "utf-8")
    refused = ws.cli("run", "flow.yaml", "--inputs-file", rows)
    assert refused.code == 2
    assert f"{rows}:3: row 3: flow 'levels'" in refused.stderr
    assert "has no input 'levle'. Did you mean 'level'?" in refused.stderr
    assert ws.runs() == []  # refused before the batch or any run was recorded


def test_ctrl_c_names_the_rows_in_flight_and_resume_finishes_every_row_exactly_once(
    server: LocalServer, tmp_path: Path
) -> None:
    ws = Workspace(tmp_path, server)
    args = ws.fine_tune()
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        "".join(json.dumps({"question": f"Question {n}?"}) + "\n" for n in range(1, 5)), "utf-8"
    )
    child = ws.spawn(*args, "--inputs-file", rows, "--concurrency", "2")
    batch_id = wait_until(lambda: (m := BATCH_LINE.search(child.stderr())) and m[1], "batch id")
    # Both rows of the first pair are waiting for their jobs: rows 3 and 4 not started.
    wait_until(
        lambda: len(ws.query("SELECT run_id FROM attempts WHERE step_id = 'wait'")) == 2,
        "two rows in their wait step",
        timeout=60,
    )
    child.process.send_signal(signal.SIGINT)
    assert child.wait(30) == 130, child.stderr()
    in_flight = {r["id"]: r["row"] for r in ws.runs()}
    assert sorted(in_flight.values()) == [1, 2]
    said = child.stderr().splitlines()[-1]
    flight = ", ".join(
        f"row {row} (run {run})" for run, row in sorted(in_flight.items(), key=lambda x: x[1])
    )
    assert said == (
        f"steprun: interrupted: stopped batch {batch_id}; rows in flight: {flight}; "
        f"2 rows not started yet; `steprun resume {batch_id}` continues it"
    )
    listed = ws.cli("runs", "--batch", batch_id).stdout.splitlines()
    assert [line.split()[2] for line in listed[2:]] == [
        "interrupted",
        "interrupted",
        "not",  # "not started"
        "not",
    ]

    rows.unlink()  # the batch kept its rows' inputs: the file is not needed any more
    resumed = ws.cli("resume", batch_id, timeout=120)
    assert resumed.code == 0, resumed.stderr
    lines = {line["row"]: line for line in lines_of(resumed.stdout)}
    assert sorted(lines) == [1, 2, 3, 4]
    assert all(line["status"] == "succeeded" for line in lines.values())
    for row in (1, 2):  # the rows in flight were resumed, not started again
        assert in_flight[lines[row]["run"]] == row
    runs = ws.runs()
    assert len(runs) == 4 and {r["status"] for r in runs} == {"succeeded"}
    assert {r["row"]: r["id"] for r in runs} == {n: lines[n]["run"] for n in lines}
    for row, line in lines.items():
        jobs = server.jobs_of(line["run"])
        assert len(jobs) == 1, (row, jobs)  # one job per row, never created twice
        assert line["merge_fields"]["wait"]["id"] == jobs[0]["id"]
        assert ws.show(line["run"])["inputs"]["question"] == f"Question {row}?"

    again = ws.cli("resume", batch_id)  # nothing left: every row is printed as it is
    assert again.code == 0 and len(lines_of(again.stdout)) == 4
    assert "4 of 4 rows done, 0 to resume, 0 never started" in again.stderr


def test_a_batch_killed_mid_create_resumes_as_a_batch_with_one_job_per_row(
    server: LocalServer, tmp_path: Path
) -> None:
    ws = Workspace(tmp_path, server)
    args = ws.fine_tune()
    rows = tmp_path / "rows.jsonl"
    rows.write_text(
        "".join(json.dumps({"question": f"Question {n}?"}) + "\n" for n in range(1, 5)), "utf-8"
    )
    # SIGKILL as soon as a row's job exists and before that is committed: no cleanup runs,
    # the rows in flight may each have a create sent and unanswered, two rows never began.
    killed = ws.spawn(
        *args,
        "--inputs-file",
        rows,
        "--concurrency",
        "2",
        env={"STEPRUN_FAILPOINT": "step-finished-before-commit@job"},
    )
    assert killed.wait(60) == -signal.SIGKILL, killed.stderr()
    batch = BATCH_LINE.search(killed.stderr())
    assert batch is not None
    before = ws.runs()
    assert len(before) <= 2 and {r["status"] for r in before} <= {"interrupted"}

    resumed = ws.cli("resume", batch[1], timeout=120)
    assert resumed.code == 0, resumed.stderr
    lines = {line["row"]: line for line in lines_of(resumed.stdout)}
    assert sorted(lines) == [1, 2, 3, 4]
    assert {r["id"] for r in before} <= {line["run"] for line in lines.values()}
    assert len(ws.runs()) == 4
    for row, line in lines.items():
        jobs = server.jobs_of(line["run"])
        assert len(jobs) == 1, (row, jobs)
        assert line["merge_fields"]["wait"]["id"] == jobs[0]["id"]
