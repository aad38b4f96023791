"""Waiting for a job, and its events and checkpoints, over real HTTP against the fake API."""

from __future__ import annotations

import time

import pytest

from steprun.runtime.errors import StepError

from .conftest import MakeContext
from .fakeapi import FakeOpenAI
from .faultserver import FaultServer, Reply, Reset
from .stepschemas import run_step
from .test_client import assert_no_key

pytestmark = pytest.mark.anyio

WAIT = "openai.wait_for_fine_tuning_job"
FAST = {"poll_interval": "10s", "max_poll_interval": "20s"}
METRICS = {
    "message": "Step 10/100: training loss=1.20",
    "type": "metrics",
    "data": {
        "step": 10,
        "total_steps": 100,
        "train_loss": 1.2034,
        "train_mean_token_accuracy": 0.5,
    },
}


async def test_wait_polls_with_backoff_and_reports_progress_until_success(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    job_id = fake_api.make_job()["id"]
    fake_api.plan(
        job_id,
        {"status": "queued"},
        {"status": "running", "_events": [METRICS]},
        {"status": "running"},
        {"status": "running"},
        {
            "status": "succeeded",
            "trained_tokens": 12345,
            "finished_at": fake_api.now,
            "fine_tuned_model": "ft:gpt-4o-mini-2024-07-18:org::abc123",
        },
    )
    harness = make_context(fault_server.base_url, level="info")
    job = await run_step(WAIT, {"job_id": job_id, **FAST}, harness.context)
    assert job == fake_api.jobs[job_id] and job["status"] == "succeeded"
    assert harness.sleeps == [10, 15, 20, 20]
    lines = harness.lines("info")
    assert lines[0].startswith(f"{job_id}: queued")
    assert lines[1].startswith(
        f"{job_id}: running · step 10/100, train_loss 1.203, train_mean_token_accuracy 0.5"
    )
    assert lines[2].startswith(f"{job_id}: succeeded · 12,345 trained tokens")
    assert len(lines) == 3  # unchanged progress is not repeated at info
    assert "wait_deadline" in harness.checkpoints[0]


async def test_wait_for_a_failed_job_takes_the_error_exit_with_its_error_and_the_job(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    job_id = fake_api.make_job()["id"]
    reason = {
        "code": "invalid_training_file",
        "param": "training_file",
        "message": "The file has 3 examples; at least 10 are required.",
    }
    fake_api.plan(job_id, {"status": "running"}, {"status": "failed", "error": reason})
    harness = make_context(fault_server.base_url)
    with pytest.raises(StepError) as caught:
        await run_step(WAIT, {"job_id": job_id, **FAST}, harness.context)
    error = caught.value.to_dict()
    assert error["type"] == "fine_tuning_job_failed"
    assert (error["code"], error["param"]) == ("invalid_training_file", "training_file")
    assert error["message"] == f"fine-tuning job {job_id} failed: {reason['message']}"
    assert error["job"]["status"] == "failed" and error["job"]["error"] == reason
    assert_no_key(caught.value, harness)


async def test_wait_for_a_cancelled_job_is_an_error(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    job_id = fake_api.make_job()["id"]
    fake_api.plan(job_id, {"status": "cancelled"})
    with pytest.raises(StepError) as caught:
        await run_step(WAIT, {"job_id": job_id}, make_context(fault_server.base_url).context)
    assert caught.value.type == "fine_tuning_job_cancelled"
    assert caught.value.to_dict()["job"]["id"] == job_id


async def test_wait_gives_up_after_max_wait_and_the_job_keeps_running(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    job_id = fake_api.make_job(status="running")["id"]
    harness = make_context(fault_server.base_url, real_sleep=True)
    started = time.monotonic()
    with pytest.raises(StepError) as caught:
        await run_step(
            WAIT, {"job_id": job_id, "max_wait": "0.3s", "poll_interval": 0.1}, harness.context
        )
    assert 0.3 <= time.monotonic() - started < 2
    error = caught.value.to_dict()
    assert (error["type"], error["code"]) == ("timeout", "max_wait_exceeded")
    assert "last status: running" in error["message"] and error["job"]["id"] == job_id
    # It never sleeps past max_wait. (How close to it the sleeps come depends on how long
    # each poll took, which a busy machine stretches: not a thing to pin.)
    assert 0 < sum(harness.sleeps) <= 0.3 + 1e-6


async def test_resumed_wait_keeps_its_original_deadline(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    job_id = fake_api.make_job(status="running")["id"]
    harness = make_context(
        fault_server.base_url, resumed=True, saved={"wait_deadline": time.time() - 1}
    )
    with pytest.raises(StepError) as caught:
        await run_step(WAIT, {"job_id": job_id, "max_wait": "2h"}, harness.context)
    assert caught.value.code == "max_wait_exceeded"
    assert harness.sleeps == [] and harness.checkpoints == []


async def test_wait_rides_out_failed_polls(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    job_id = fake_api.make_job()["id"]
    fake_api.plan(job_id, {"status": "succeeded", "trained_tokens": 10, "finished_at": 1})
    fault_server.script(Reply.error(503, "busy", type="server_error"), Reset())
    harness = make_context(fault_server.base_url, max_retries=0)
    job = await run_step(WAIT, {"job_id": job_id, **FAST}, harness.context)
    assert job["status"] == "succeeded"
    assert [line.split(" (")[0] for line in harness.lines("warn")] == [
        f"could not check fine-tuning job {job_id}"
    ] * 2
    assert_no_key(None, harness)


async def test_wait_stops_after_too_many_failed_polls(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    job_id = fake_api.make_job()["id"]
    fault_server.script(*[Reply.error(502, "bad gateway")] * 5)
    harness = make_context(fault_server.base_url, max_retries=0)
    with pytest.raises(StepError) as caught:
        await run_step(WAIT, {"job_id": job_id}, harness.context)
    assert caught.value.status == 502
    assert len(fault_server.requests) == 5


async def test_wait_for_an_unknown_job_fails_at_once(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    harness = make_context(fault_server.base_url)
    with pytest.raises(StepError) as caught:
        await run_step(WAIT, {"job_id": "ftjob-missing"}, harness.context)
    assert caught.value.status == 404 and harness.sleeps == []


async def test_wait_for_a_legacy_job(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    job_id = fake_api._create_legacy({"training_file": "file-1"})["id"]
    fake_api.plan(
        job_id,
        {"status": "running", "_events": [{"message": "Completed epoch 1/4"}]},
        {"status": "succeeded", "fine_tuned_model": "curie:ft-org-2023-01-01"},
    )
    harness = make_context(fault_server.base_url)
    job = await run_step(WAIT, {"job_id": job_id}, harness.context)
    assert job["status"] == "succeeded"
    assert any("running · Completed epoch 1/4" in line for line in harness.lines("info"))
    assert all(r.path == f"/v1/fine-tunes/{job_id}" for r in fault_server.requests)


async def test_wait_for_a_failed_legacy_job_reports_its_error_event(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    job_id = fake_api._create_legacy({"training_file": "file-1"})["id"]
    fake_api.plan(
        job_id,
        {
            "status": "failed",
            "_events": [
                {
                    "message": "Fine-tune failed: training file has too few examples",
                    "level": "error",
                },
                {"message": "Job failed"},
            ],
        },
    )
    with pytest.raises(StepError) as caught:
        await run_step(WAIT, {"job_id": job_id}, make_context(fault_server.base_url).context)
    assert caught.value.message.endswith("Fine-tune failed: training file has too few examples")


# -- events and checkpoints -------------------------------------------------------------------


async def test_events_one_page_and_all_pages(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    job_id = fake_api.make_job()["id"]
    for n in range(4):
        fake_api.add_event(job_id, f"event {n}")
    context = make_context(fault_server.base_url).context
    page = await run_step("openai.list_fine_tuning_events", {"job_id": job_id, "limit": 2}, context)
    assert [e["message"] for e in page["data"]] == ["event 3", "event 2"]
    assert page["has_more"] is True
    every = await run_step(
        "openai.list_fine_tuning_events", {"job_id": job_id, "limit": 2, "all": True}, context
    )
    assert [e["message"] for e in every["data"]] == [
        "event 3",
        "event 2",
        "event 1",
        "event 0",
        f"Created fine-tuning job: {job_id}",
    ]
    assert every["has_more"] is False


async def test_events_of_a_legacy_job(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    job_id = fake_api._create_legacy({"training_file": "file-1"})["id"]
    fake_api.add_event(job_id, "Fine-tune started")
    events = await run_step(
        "openai.list_fine_tuning_events",
        {"job_id": job_id},
        make_context(fault_server.base_url).context,
    )
    assert [e["message"] for e in events["data"]] == [
        f"Created fine-tune: {job_id}",
        "Fine-tune started",
    ]
    assert fault_server.requests[0].target == f"/v1/fine-tunes/{job_id}/events"


async def test_paging_a_legacy_job_s_events_is_refused_before_any_request(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    with pytest.raises(StepError) as caught:
        await run_step(
            "openai.list_fine_tuning_events",
            {"job_id": "ft-abc", "limit": 5},
            make_context(fault_server.base_url).context,
        )
    assert (caught.value.code, caught.value.info.param) == ("unsupported_by_legacy_api", "limit")
    assert fault_server.requests == []


async def test_checkpoints_all_pages(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    job_id = fake_api.make_job()["id"]
    made = [
        fake_api.add_checkpoint(job_id, step, train_loss=1 / step)["id"] for step in (100, 200, 300)
    ]
    harness = make_context(fault_server.base_url)
    listing = await run_step(
        "openai.list_fine_tuning_checkpoints",
        {"job_id": job_id, "limit": 2, "all": True},
        harness.context,
    )
    assert [c["id"] for c in listing["data"]] == made[::-1]
    assert (listing["first_id"], listing["last_id"]) == (made[2], made[0])
    assert [dict(r.query).get("after") for r in fault_server.requests] == [None, made[1]]


async def test_checkpoints_raw_result(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    job_id = fake_api.make_job()["id"]
    raw = await run_step(
        "openai.list_fine_tuning_checkpoints",
        {"job_id": job_id, "result_format": "raw"},
        make_context(fault_server.base_url).context,
    )
    assert raw["status"] == 200 and raw["body"]["data"] == []
    assert raw["headers"]["x-request-id"].startswith("req_")


async def test_checkpoints_of_a_legacy_job_are_refused(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    with pytest.raises(StepError) as caught:
        await run_step(
            "openai.list_fine_tuning_checkpoints",
            {"job_id": "ft-abc"},
            make_context(fault_server.base_url).context,
        )
    assert caught.value.code == "unsupported_by_legacy_api"
    assert fault_server.requests == []
