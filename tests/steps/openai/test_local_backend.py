"""The job steps against the embedded backend (runtime/local), mounted in-process as the
engine mounts it: the steps and the backend must agree on every request and answer."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from steprun.runtime.authorizations import LOCAL_BASE_URL, LOCAL_ORIGIN
from steprun.runtime.errors import StepError
from steprun.runtime.local import LocalBackend
from steprun.steps.openai.client import OpenAIClient
from steprun.steps.openai.jobs import EXECUTION_KEY, RUN_KEY

from ... import contract
from .conftest import Harness, MakeContext
from .stepschemas import run_step

pytestmark = pytest.mark.anyio

JOB_SECONDS = 60.0
CHAT = "\n".join(
    json.dumps(
        {
            "messages": [
                {"role": "system", "content": "You are a support bot."},
                {"role": "user", "content": f"How do I reset password {n}?"},
                {
                    "role": "assistant",
                    "content": f"Open settings, then security, then reset ({n}).",
                },
            ]
        }
    )
    for n in range(12)
).encode()
COMPLETIONS = "\n".join(
    json.dumps({"prompt": f"Question {n} ->", "completion": f" answer {n}\n"}) for n in range(12)
).encode()


@dataclass
class Local:
    backend: LocalBackend
    http: httpx.AsyncClient
    clock: list[float]
    responses: list[httpx.Response]

    def context(self, make_context: MakeContext, **kwargs: Any) -> Harness:
        harness = make_context(
            LOCAL_BASE_URL, api_key=None, provider="local", client=self.http, **kwargs
        )

        # Sleeping moves the backend's clock instead: a 10-minute job takes no time.
        async def sleep(seconds: float) -> None:
            harness.sleeps.append(seconds)
            self.clock[0] += seconds

        harness.context._sleep = sleep
        return harness

    async def upload(self, content: bytes, name: str = "train.jsonl") -> str:
        response = await self.http.post(
            LOCAL_BASE_URL + "/files",
            files={"file": (name, content)},
            data={"purpose": "fine-tune"},
        )
        assert response.status_code == 200, response.text
        file_id: str = response.json()["id"]
        return file_id


@pytest.fixture
async def local() -> AsyncIterator[Local]:
    clock = [time.time()]
    backend = LocalBackend(job_seconds=JOB_SECONDS, clock=lambda: clock[0])
    responses: list[httpx.Response] = []

    async def record(response: httpx.Response) -> None:
        await response.aread()
        responses.append(response)

    async with httpx.AsyncClient(
        mounts={LOCAL_ORIGIN: httpx.ASGITransport(app=backend.app)},
        event_hooks={"response": [record]},
    ) as http:
        yield Local(backend, http, clock, responses)
    # Every answer the backend gave the steps matches the shared spec.
    for response in responses:
        if response.status_code < 400 and not response.request.url.path.startswith("/v1/files"):
            contract.validate_httpx_response(response)


async def test_lifecycle_create_list_wait_events_checkpoints(
    local: Local, make_context: MakeContext
) -> None:
    training_file = await local.upload(CHAT)
    harness = local.context(make_context)
    job = await run_step(
        "openai.create_fine_tuning_job",
        {
            "training_file": training_file,
            "model": "gpt-4o-mini-2024-07-18",
            "suffix": "bot",
            "metadata": {"team": "support"},
            "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}},
        },
        harness.context,
    )
    assert job["status"] == "validating_files"
    assert job["metadata"]["team"] == "support" and job["metadata"][RUN_KEY] == "run-0001"

    listing = await run_step(
        "openai.list_fine_tuning_jobs", {"metadata": {RUN_KEY: "run-0001"}}, harness.context
    )
    assert [j["id"] for j in listing["data"]] == [job["id"]]

    done = await run_step("openai.wait_for_fine_tuning_job", {"job_id": job["id"]}, harness.context)
    assert done["status"] == "succeeded" and done["fine_tuned_model"]
    assert sum(harness.sleeps) >= JOB_SECONDS * 0.9
    # A local job takes seconds: polled from 1 s up to 5 s, not OpenAI's 15 s to 2 min.
    assert harness.sleeps[:3] == [1.0, 1.5, 2.25] and max(harness.sleeps) == 5.0
    assert any("train_loss" in line for line in harness.lines("info"))

    events = await run_step(
        "openai.list_fine_tuning_events",
        {"job_id": job["id"], "limit": 3, "all": True},
        harness.context,
    )
    assert events["data"][0]["message"] == "The job has successfully completed"
    checkpoints = await run_step(
        "openai.list_fine_tuning_checkpoints",
        {"job_id": job["id"], "limit": 1, "all": True},
        harness.context,
    )
    assert checkpoints["data"] and not checkpoints["has_more"]

    with pytest.raises(StepError) as caught:
        await run_step("openai.cancel_fine_tuning_job", {"job_id": job["id"]}, harness.context)
    assert caught.value.code == "job_already_finished"


async def test_pause_resume_and_cancel_twice(local: Local, make_context: MakeContext) -> None:
    training_file = await local.upload(CHAT)
    harness = local.context(make_context)
    job = await run_step(
        "openai.create_fine_tuning_job",
        {"training_file": training_file, "model": "gpt-4o-mini-2024-07-18"},
        harness.context,
    )
    local.clock[0] += JOB_SECONDS * 0.4  # training has started
    config = {"job_id": job["id"]}
    for step, status in [
        ("openai.pause_fine_tuning_job", "paused"),
        ("openai.pause_fine_tuning_job", "paused"),
        ("openai.resume_fine_tuning_job", "running"),
        ("openai.resume_fine_tuning_job", "running"),
        ("openai.cancel_fine_tuning_job", "cancelled"),
        ("openai.cancel_fine_tuning_job", "cancelled"),
    ]:
        assert (await run_step(step, config, harness.context))["status"] == status, step


async def test_dropped_create_leaves_exactly_one_job(
    local: Local, make_context: MakeContext
) -> None:
    training_file = await local.upload(CHAT)
    local.backend.add_fault(
        {"kind": "drop", "method": "POST", "path": "/v1/fine_tuning/jobs", "times": 1}
    )
    harness = local.context(make_context)
    job = await run_step(
        "openai.create_fine_tuning_job",
        {"training_file": training_file, "model": "gpt-4o-mini-2024-07-18"},
        harness.context,
    )
    listing = await OpenAIClient(harness.context).request("GET", "/fine_tuning/jobs")
    assert [j["id"] for j in listing.body["data"]] == [job["id"]]
    assert job["metadata"][EXECUTION_KEY] == harness.checkpoints[0][EXECUTION_KEY]
    assert "looking for a fine-tuning job with metadata" in harness.lines("warn")[0]


async def test_failed_job_takes_the_error_exit_with_the_backend_s_error(
    local: Local, make_context: MakeContext
) -> None:
    training_file = await local.upload(CHAT)
    local.backend.add_fault({"kind": "job_failure", "at": "running", "times": 1})
    harness = local.context(make_context)
    job = await run_step(
        "openai.create_fine_tuning_job",
        {"training_file": training_file, "model": "gpt-4o-mini-2024-07-18"},
        harness.context,
    )
    with pytest.raises(StepError) as caught:
        await run_step("openai.wait_for_fine_tuning_job", {"job_id": job["id"]}, harness.context)
    error = caught.value.to_dict()
    assert error["type"] == "fine_tuning_job_failed"
    assert error["job"]["error"]["message"] in error["message"]
    assert error["code"] == error["job"]["error"]["code"]


async def test_legacy_lifecycle(local: Local, make_context: MakeContext) -> None:
    training_file = await local.upload(COMPLETIONS)
    harness = local.context(make_context)
    job = await run_step(
        "openai.create_fine_tuning_job",
        {
            "api": "legacy",
            "training_file": training_file,
            "model": "curie",
            "n_epochs": 2,
            "suffix": "legacy-bot",
        },
        harness.context,
    )
    assert job["object"] == "fine-tune" and job["id"].startswith("ft-")
    fetched = await run_step(
        "openai.retrieve_fine_tuning_job", {"job_id": job["id"]}, harness.context
    )
    assert fetched["id"] == job["id"]
    done = await run_step("openai.wait_for_fine_tuning_job", {"job_id": job["id"]}, harness.context)
    assert done["status"] == "succeeded" and "legacy-bot" in done["fine_tuned_model"]
    events = await run_step(
        "openai.list_fine_tuning_events", {"job_id": job["id"]}, harness.context
    )
    assert events["data"][-1]["message"] == "Fine-tune succeeded"
    listing = await run_step("openai.list_fine_tuning_jobs", {"api": "legacy"}, harness.context)
    assert [j["id"] for j in listing["data"]] == [job["id"]]


async def test_legacy_dropped_create_leaves_exactly_one_job(
    local: Local, make_context: MakeContext
) -> None:
    training_file = await local.upload(COMPLETIONS)
    local.backend.add_fault(
        {"kind": "drop", "method": "POST", "path": "/v1/fine-tunes", "times": 1}
    )
    harness = local.context(make_context)
    job = await run_step(
        "openai.create_fine_tuning_job",
        {"api": "legacy", "training_file": training_file, "model": "curie"},
        harness.context,
    )
    listing = await OpenAIClient(harness.context).request("GET", "/fine-tunes")
    assert [j["id"] for j in listing.body["data"]] == [job["id"]]


async def test_rate_limit_and_malformed_answers_from_the_backend(
    local: Local, make_context: MakeContext
) -> None:
    training_file = await local.upload(CHAT)
    harness = local.context(make_context)
    local.backend.add_fault(
        {
            "kind": "status",
            "status": 429,
            "retry_after": 3,
            "method": "POST",
            "path": "/v1/fine_tuning/jobs",
            "times": 1,
        }
    )
    job = await run_step(
        "openai.create_fine_tuning_job",
        {"training_file": training_file, "model": "gpt-4o-mini-2024-07-18"},
        harness.context,
    )
    assert harness.sleeps == [3.0]
    local.backend.add_fault(
        {"kind": "malformed", "method": "GET", "path": "/v1/fine_tuning/jobs/*", "times": 1}
    )
    with pytest.raises(StepError) as caught:
        await run_step("openai.retrieve_fine_tuning_job", {"job_id": job["id"]}, harness.context)
    assert caught.value.code == "malformed_json"
    # The fault's half body is not for the contract check at teardown.
    malformed = local.responses.pop()
    assert malformed.request.url.path == f"/v1/fine_tuning/jobs/{job['id']}"
