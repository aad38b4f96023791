"""The durable-run commands as a user meets them: runs, show, resume, cancel.

Real processes against a real ``serve-local``; the run store is in each test's folder.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.runtime.durable_support import (
    REPO,
    LocalServer,
    Workspace,
    in_wait,
    reap_children,
    serve_local,
    wait_for,
)

pytestmark = pytest.mark.slow

HELLO = REPO / "examples" / "hello.yaml"


@pytest.fixture(autouse=True)
def _reap() -> Iterator[None]:
    """No steprun child outlives its test, even one that failed half-way."""
    yield
    reap_children()


@pytest.fixture(scope="session")
def fast_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    with serve_local(tmp_path_factory.mktemp("serve-local-fast"), 2.0) as found:
        yield found


@pytest.fixture(scope="session")
def slow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalServer]:
    """Jobs that outlive every test: there is always a running job to cancel."""
    with serve_local(tmp_path_factory.mktemp("serve-local-slow"), 120.0) as found:
        yield found


# -- runs and show -----------------------------------------------------------------------


def test_runs_and_show_describe_a_resumed_run_and_never_show_its_secret(
    fast_server: LocalServer, tmp_path: Path
) -> None:
    ws = Workspace(tmp_path / "canary", fast_server)
    canary = "sk-canary-" + secrets.token_hex(16)
    args = ws.fine_tune(api_key=canary)
    outputs: list[str] = []

    killed = ws.cli(
        *args,
        "--report",
        "report-1.jsonl",
        env={"STEPRUN_FAILPOINT": "step-finished-before-commit@job"},
    )
    assert killed.code == -9, killed.stderr
    run_id = ws.runs()[0]["id"]
    resumed = ws.cli("resume", run_id, "--report", "report-2.jsonl")
    assert resumed.code == 0, resumed.stderr
    listed = ws.cli("runs")
    listed_json = ws.cli("runs", "--json")
    shown = ws.cli("show", run_id)
    shown_json = ws.cli("show", run_id[:12], "--json")  # a prefix is enough
    for done in (killed, resumed, listed, listed_json, shown, shown_json):
        assert done.code in (0, -9), done.stderr
        outputs += [done.stdout, done.stderr]

    runs = listed_json.json()
    assert len(runs) == 1
    assert {"id", "flow", "status", "current_step", "started", "updated"} <= set(runs[0])
    assert (runs[0]["id"], runs[0]["flow"], runs[0]["status"]) == (
        run_id,
        "support-bot-fine-tune",
        "succeeded",
    )
    assert run_id in listed.stdout and "succeeded" in listed.stdout

    detail = shown_json.json()
    assert detail["id"] == run_id
    steps = [(s["step"], s["status"]) for s in detail["steps"]]
    # The killed attempt of `job` stays in the history, unfinished; its resumed attempt
    # adopted the job instead of creating another.
    assert steps == [
        ("check", "succeeded"),
        ("upload", "succeeded"),
        ("upload_validation", "succeeded"),
        ("job", "started"),
        ("job", "succeeded"),
        ("wait", "succeeded"),
        ("ask", "succeeded"),
        ("answer", "succeeded"),
    ]
    assert [s["attempt"] for s in detail["steps"] if s["step"] == "job"] == [1, 2]
    assert all(s["duration_ms"] >= 0 for s in detail["steps"] if s["status"] == "succeeded")
    assert detail["merge_fields"]["job"]["id"] == detail["merge_fields"]["wait"]["id"]
    assert len(fast_server.jobs_of(run_id)) == 1

    text = shown.stdout
    assert f"run {run_id}" in text and "succeeded" in text
    for step in ("check", "upload", "job", "wait", "ask", "answer"):  # human durations
        assert any(
            line.startswith(step) and re.search(r"  \d+(\.\d+)?(ms|s)\b", line)
            for line in text.splitlines()
        ), text
    assert "unfinished" in text  # the killed attempt
    assert '"fine_tuned_model": "ft:' in text  # the merge fields, as JSON

    # The key was in the authorizations file and in every request: nowhere else.
    reports = [(ws.root / f"report-{n}.jsonl").read_text(encoding="utf-8") for n in (1, 2)]
    assert reports[1].strip(), "the resumed run wrote no report"
    for text in outputs + reports:
        assert canary not in text
    stored = [p for p in ws.state.parent.iterdir() if p.name.startswith("runs.db")]
    assert stored
    for path in stored:
        assert canary.encode() not in path.read_bytes(), path


def test_resuming_a_succeeded_or_unknown_run_exits_2_and_says_why(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / "done")
    done = ws.cli("run", HELLO)
    assert done.code == 0, done.stderr
    run_id = ws.runs()[0]["id"]

    again = ws.cli("resume", run_id)
    assert again.code == 2
    assert f"run {run_id} already succeeded; there is nothing to resume" in again.stderr
    assert len(ws.attempts(run_id)) == len(ws.show(run_id)["steps"])  # nothing re-ran

    unknown = ws.cli("resume", "run_nope")
    assert unknown.code == 2
    assert "no run 'run_nope'" in unknown.stderr and "steprun runs" in unknown.stderr


# -- cancel ------------------------------------------------------------------------------


def test_cancel_stops_a_crashed_run_for_good_and_leaves_its_job_alone(
    slow_server: LocalServer, tmp_path: Path
) -> None:
    ws = Workspace(tmp_path / "crashed", slow_server)
    killed = ws.cli(*ws.fine_tune(), env={"STEPRUN_FAILPOINT": "step-finished-after-commit@job"})
    assert killed.code == -9
    run_id = ws.runs()[0]["id"]
    (job,) = slow_server.jobs_of(run_id)

    cancelled = ws.cli("cancel", run_id)

    assert cancelled.code == 0, cancelled.stderr
    outcome = cancelled.json()
    assert outcome == {"run_id": run_id, "status": "cancelled", "cancelled_jobs": []}
    assert ws.runs()[0]["status"] == "cancelled"
    assert slow_server.job(job["id"])["status"] not in ("cancelled", "failed")
    refused = ws.cli("resume", run_id)
    assert refused.code == 2 and "was cancelled" in refused.stderr
    assert ws.runs()[0]["status"] == "cancelled"


def test_cancel_jobs_cancels_the_job_of_a_run_killed_mid_wait_or_mid_create(
    slow_server: LocalServer, tmp_path: Path
) -> None:
    def mid_wait() -> tuple[Workspace, str]:
        ws = Workspace(tmp_path / "mid-wait", slow_server)
        child = ws.spawn(*ws.fine_tune())
        wait_for(lambda: child.process.poll() is not None or in_wait(ws)(child), "the wait")
        child.kill()
        return ws, ws.runs()[0]["id"]

    def mid_create() -> tuple[Workspace, str]:
        # The job exists but the run never recorded it: cancel must find it by its tag.
        ws = Workspace(tmp_path / "mid-create", slow_server)
        failpoint = {"STEPRUN_FAILPOINT": "step-finished-before-commit@job"}
        assert ws.cli(*ws.fine_tune(), env=failpoint).code == -9
        return ws, ws.runs()[0]["id"]

    with ThreadPoolExecutor(2) as pool:
        killed = [pool.submit(mid_wait), pool.submit(mid_create)]
    for future in killed:
        ws, run_id = future.result()
        (job,) = slow_server.jobs_of(run_id)
        assert slow_server.job(job["id"])["status"] in ("validating_files", "queued", "running")

        cancelled = ws.cli("cancel", run_id, "--cancel-jobs")

        assert cancelled.code == 0, cancelled.stderr
        outcome = cancelled.json()
        assert outcome["status"] == "cancelled"
        assert [(j["job_id"], j["status"]) for j in outcome["cancelled_jobs"]] == [
            (job["id"], "cancelled")
        ]
        assert slow_server.job(job["id"])["status"] == "cancelled"
        assert len(slow_server.jobs_of(run_id)) == 1


def test_a_live_run_asked_to_cancel_stops_at_its_wait(
    slow_server: LocalServer, tmp_path: Path
) -> None:
    ws = Workspace(tmp_path / "live", slow_server)
    child = ws.spawn(*ws.fine_tune())
    wait_for(lambda: child.process.poll() is not None or in_wait(ws)(child), "the wait")
    run_id = ws.runs()[0]["id"]
    asked = time.monotonic()

    cancelled = ws.cli("cancel", run_id)

    assert cancelled.code == 0, cancelled.stderr
    assert f"to stop run {run_id}" in cancelled.stderr
    assert cancelled.json()["status"] == "cancelled"
    code = child.wait(30)
    assert time.monotonic() - asked < 10  # at its next poll, not when the job ends
    assert code == 1, child.stderr()
    assert f"run {run_id} cancelled at step 'wait'" in child.stderr()
    run = ws.runs()[0]
    assert run["status"] == "cancelled" and run["current_step"] is None
    wait_attempt = [a for a in ws.attempts(run_id) if a["step_id"] == "wait"][-1]
    assert json.loads(wait_attempt["report"])["error"]["code"] == "run_cancelled"
