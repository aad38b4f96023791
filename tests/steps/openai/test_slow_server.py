"""Never pay twice against a slow server: the embedded backend under uvicorn on loopback,
whose ``latency`` fault reads a request, waits, then processes it even after its client
gave up (as a real API does). The create and upload steps run with real sleeps.

Before the settle window, a create that timed out looked once, found nothing (the server
was still waiting) and sent the request again: two jobs with the same tags (issue #8).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from steprun.runtime.errors import StepError
from steprun.runtime.local import LocalBackend
from steprun.steps.openai.files import UPLOAD_FILE
from steprun.steps.openai.jobs import EXECUTION_KEY, RUN_KEY, STEP_KEY
from steprun.steps.openai.reconcile import settle_window

from .conftest import CANARY_KEY, MakeContext
from .localbackend import served
from .stepschemas import run_step
from .test_files import chat_file

pytestmark = pytest.mark.anyio

CREATE = "openai.create_fine_tuning_job"
JOBS = "/v1/fine_tuning/jobs"
TIMEOUT = 1.0  # the authorization's timeout in these tests
AUTH = {"Authorization": f"Bearer {CANARY_KEY}"}


@pytest.fixture
def backend() -> LocalBackend:
    return LocalBackend(job_seconds=60, api_key=CANARY_KEY)


@pytest.fixture
def origin(backend: LocalBackend) -> Iterator[str]:
    with served(backend.app) as found:
        yield found


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


async def ledger_jobs(http: httpx.AsyncClient, origin: str) -> list[dict[str, Any]]:
    ledger = (await http.get(origin + "/_steprun/ledger", headers=AUTH)).json()
    jobs: list[dict[str, Any]] = ledger["jobs"]
    return jobs


async def training_file(http: httpx.AsyncClient, origin: str, tmp_path: Path) -> str:
    path = chat_file(tmp_path / "train.jsonl")
    answer = await http.post(
        origin + "/v1/files",
        files={"file": ("train.jsonl", path.read_bytes())},
        data={"purpose": "fine-tune"},
        headers=AUTH,
    )
    return str(answer.json()["id"])


def slow(backend: LocalBackend, path: str, seconds: float) -> None:
    backend.add_fault(
        {"kind": "latency", "seconds": seconds, "method": "POST", "path": path, "times": 1}
    )


async def test_a_create_slower_than_its_timeout_makes_exactly_one_job_every_time(
    backend: LocalBackend,
    origin: str,
    http: httpx.AsyncClient,
    make_context: MakeContext,
    tmp_path: Path,
) -> None:
    config = {"training_file": await training_file(http, origin, tmp_path), "model": "gpt-4o-mini"}
    for round in range(3):
        slow(backend, JOBS, TIMEOUT + 1.5)
        harness = make_context(
            origin + "/v1",
            client=http,
            auth_timeout=TIMEOUT,
            max_retries=2,
            run_id=f"run-{round}",
            real_sleep=True,
        )
        job = await run_step(CREATE, config, harness.context)
        warning = harness.lines("warn")[0]
        assert f"no answer to POST /fine_tuning/jobs from {origin} within 1s" in warning
        assert f"for up to {settle_window(TIMEOUT):g}s" in warning
        assert "not sent again" in warning
        mine = [
            j for j in await ledger_jobs(http, origin) if j["metadata"][RUN_KEY] == f"run-{round}"
        ]
        assert [j["id"] for j in mine] == [job["id"]], mine
    # Every create request the server ever received made one job: none was sent twice.
    assert len(await ledger_jobs(http, origin)) == 3


async def test_a_create_slower_than_the_settle_window_ends_outcome_unknown_with_one_job(
    backend: LocalBackend,
    origin: str,
    http: httpx.AsyncClient,
    make_context: MakeContext,
    tmp_path: Path,
) -> None:
    config = {"training_file": await training_file(http, origin, tmp_path), "model": "gpt-4o-mini"}
    latency = TIMEOUT + settle_window(TIMEOUT) + 1.5
    slow(backend, JOBS, latency)
    sent = time.monotonic()
    harness = make_context(
        origin + "/v1", client=http, auth_timeout=TIMEOUT, max_retries=2, real_sleep=True
    )
    with pytest.raises(StepError) as caught:
        await run_step(CREATE, config, harness.context)
    error = caught.value.to_dict()
    assert (error["type"], error["code"]) == ("outcome_unknown", "outcome_unknown")
    tags = error["look_for"]["metadata"]
    assert set(tags) == {RUN_KEY, STEP_KEY, EXECUTION_KEY}
    assert f"{EXECUTION_KEY}={tags[EXECUTION_KEY]}" in error["message"]
    assert await ledger_jobs(http, origin) == []  # given up before the server acted
    # The server finishes the request it kept: exactly the one job the error named.
    await asyncio.sleep(max(0.0, sent + latency + 0.5 - time.monotonic()))
    for _ in range(50):
        jobs = await ledger_jobs(http, origin)
        if jobs:
            break
        await asyncio.sleep(0.1)
    assert [j["metadata"] for j in jobs] == [tags]


async def test_a_slow_upload_adopts_only_its_own_file_or_names_it(
    backend: LocalBackend,
    origin: str,
    http: httpx.AsyncClient,
    make_context: MakeContext,
    tmp_path: Path,
) -> None:
    # Another run's file of the same name and size is on the server already.
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    chat_file(tmp_path / "a" / "train.jsonl")
    chat_file(tmp_path / "b" / "train.jsonl")
    mine = (tmp_path / "b" / "train.jsonl").read_text().replace("word", "wort")
    (tmp_path / "b" / "train.jsonl").write_text(mine)
    other = await training_file(http, origin, tmp_path / "a")

    def upload_b() -> Any:
        harness = make_context(
            origin + "/v1", client=http, auth_timeout=TIMEOUT, step_id="upload", real_sleep=True
        )
        harness.context.base_dir = tmp_path
        return harness, UPLOAD_FILE.run(
            {"file": "b/train.jsonl", "purpose": "fine-tune"}, harness.context
        )

    # Slower than the timeout, within the settle window: its own upload is adopted.
    slow(backend, "/v1/files", TIMEOUT + 1.5)
    harness, running = upload_b()
    output = await running
    assert output["id"] != other and output["filename"].startswith("train.steprun-")
    content = await http.get(f"{origin}/v1/files/{output['id']}/content", headers=AUTH)
    assert content.text == mine
    assert any(f"adopting {output['id']}" in line for line in harness.lines("info"))
    assert f"a fine-tune file named {output['filename']}" in harness.lines("warn")[0]

    # Slower than the window: nothing adopted; the error names the file that may still
    # arrive, and it is the only one that does.
    latency = TIMEOUT + settle_window(TIMEOUT) + 1.5
    slow(backend, "/v1/files", latency)
    sent = time.monotonic()
    harness, running = upload_b()
    with pytest.raises(StepError) as caught:
        await running
    error = caught.value.to_dict()
    assert error["type"] == "outcome_unknown"
    name = error["look_for"]["filename"]
    assert f"a fine-tune file named {name}" in error["message"]
    await asyncio.sleep(max(0.0, sent + latency + 0.5 - time.monotonic()))
    files = (await http.get(origin + "/v1/files", headers=AUTH)).json()["data"]
    for _ in range(50):
        if len(files) == 3:
            break
        await asyncio.sleep(0.1)
        files = (await http.get(origin + "/v1/files", headers=AUTH)).json()["data"]
    assert sorted(f["filename"] for f in files) == sorted(["train.jsonl", output["filename"], name])
