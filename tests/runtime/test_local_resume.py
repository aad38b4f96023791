"""`provider: local` across processes: the embedded backend keeps its files and jobs
beside the run store, so a run killed during its wait resumes into the same job, and
``cancel --cancel-jobs`` reaches that job (issue 9). Through the real CLI."""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from steprun.runtime import Runtime
from steprun.runtime.local import LocalBackend
from steprun.runtime.runtime import RunResult
from tests.runtime.durable_support import (
    EXAMPLE,
    EXAMPLE_DATA,
    Workspace,
    in_wait,
    reap_children,
    wait_for,
)

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _reap() -> Iterator[None]:
    yield
    reap_children()


def _ledger(ws: Workspace) -> dict[str, Any]:
    """The ledger of the backend state the CLI left beside the run store (read here)."""
    backend = LocalBackend(state_dir=ws.state.parent / "local-backend")
    try:
        with TestClient(backend.app) as client:
            ledger: dict[str, Any] = client.get("/_steprun/ledger").json()
    finally:
        backend.close()
    return ledger


def _killed_in_wait(ws: Workspace, flow: Path) -> str:
    """`steprun run FLOW`, SIGKILLed once its wait step has polled the job; the run id."""
    child = ws.spawn("run", flow)
    wait_for(lambda: child.process.poll() is not None or in_wait(ws)(child), "the wait")
    child.kill()
    assert child.process.returncode == -9, child.stderr()
    run_id = child.run_id()
    assert run_id is not None, child.stderr()
    return run_id


def _example_with_jobs_of(ws: Workspace, seconds: int) -> Path:
    """The example flow (on its local backend) with jobs that take ``seconds``."""
    text = EXAMPLE.read_text(encoding="utf-8")
    assert "    job_seconds: 4 " in text, "the example's job_seconds changed; update this test"
    shutil.copytree(EXAMPLE_DATA, ws.root / "data")
    flow = ws.root / "fine_tune.yaml"
    flow.write_text(text.replace("    job_seconds: 4 ", f"    job_seconds: {seconds} "))
    return flow


def test_a_run_killed_during_its_wait_resumes_into_the_same_job(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    run_id = _killed_in_wait(ws, EXAMPLE)  # the example as shipped, on its local backend

    resumed = ws.cli("resume", run_id)

    assert resumed.code == 0, resumed.stderr
    assert "Could not find" not in resumed.stderr
    fields = resumed.json()
    (job,) = _ledger(ws)["jobs"]
    assert fields["job"]["id"] == fields["wait"]["id"] == job["id"]
    assert fields["wait"]["status"] == "succeeded"
    assert (job["metadata"] or {}).get("steprun_run_id") == run_id
    assert ws.runs()[0]["status"] == "succeeded"


def test_a_simulated_job_keeps_its_own_clock_across_the_restart(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    run_id = _killed_in_wait(ws, _example_with_jobs_of(ws, 6))
    resumed = ws.cli("resume", run_id)
    assert resumed.code == 0, resumed.stderr
    job = resumed.json()["wait"]
    # It ended when it was planned to, however long the restart took: 6 s after its
    # creation (whole seconds, as the API gives them).
    assert job["finished_at"] - job["created_at"] in (5, 6, 7)


def test_cancel_jobs_reaches_the_job_of_a_killed_local_run(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    run_id = _killed_in_wait(ws, _example_with_jobs_of(ws, 600))
    (job,) = _ledger(ws)["jobs"]
    assert job["status"] in ("validating_files", "queued", "running")

    cancelled = ws.cli("cancel", run_id, "--cancel-jobs")

    assert cancelled.code == 0, cancelled.stderr
    outcome = cancelled.json()
    assert outcome["status"] == "cancelled"
    assert [(j["job_id"], j["status"]) for j in outcome["cancelled_jobs"]] == [
        (job["id"], "cancelled")
    ]
    (after,) = _ledger(ws)["jobs"]
    assert (after["id"], after["status"]) == (job["id"], "cancelled")


def test_an_authorization_may_name_the_state_folder(tmp_path: Path) -> None:

    shutil.copyfile(EXAMPLE_DATA / "support.jsonl", tmp_path / "support.jsonl")
    flow = tmp_path / "upload.yaml"
    flow.write_text(
        "flow: upload\n"
        "authorization: here\n"
        "authorizations:\n"
        "  here: {provider: local, state: backend-state}\n"
        "steps:\n"
        "  - id: upload\n"
        "    type: openai.upload_file\n"
        "    config: {file: support.jsonl, purpose: fine-tune}\n"
    )

    async def main() -> RunResult:
        async with Runtime(autoload=False) as runtime:
            return (await runtime.run(flow)).raise_for_status()

    result = asyncio.run(main())
    file_id = result.merge_fields["upload"]["id"]
    assert (tmp_path / "backend-state" / "files" / file_id).is_file()
    assert (tmp_path / "backend-state" / "backend.db").is_file()
