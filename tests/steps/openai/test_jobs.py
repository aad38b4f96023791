"""Fine-tuning job steps over real HTTP: create (and never twice), retrieve, list, cancel,
pause, resume. Every request they send and every answer of the fake API is checked against
the shared OpenAPI files by the ``fake_api`` fixture."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from steprun.runtime.errors import StepError
from steprun.steps.openai.finetuning import infer_api
from steprun.steps.openai.jobs import EXECUTION_KEY, RUN_KEY, STEP_KEY
from steprun.steps.openai.reconcile import SENT_AT_KEY, settle_window

from .conftest import CANARY_KEY, MakeContext
from .fakeapi import FakeOpenAI
from .faultserver import Drop, FaultServer, Reply, Request, Reset
from .stepschemas import STEP_TYPES, run_step
from .test_client import assert_no_key

pytestmark = pytest.mark.anyio

CREATE = "openai.create_fine_tuning_job"
BASE = {"training_file": "file-train", "model": "gpt-4o-mini-2024-07-18"}


# The create step's shutdown preflight asks for the base model first (GET /models/{model}).
MODEL = Reply.json(
    {
        "id": BASE["model"],
        "object": "model",
        "created": 1721172717,
        "owned_by": "system",
        "shutdown_date": "2027-01-14",
    },
    date="Thu, 14 Nov 2026 00:00:00 GMT",
)


def posts(server: FaultServer, path: str = "/v1/fine_tuning/jobs") -> list[Request]:
    return [r for r in server.requests if r.method == "POST" and r.path == path]


def create_then(fake: FakeOpenAI, fault: Reply | Drop) -> Any:
    """A scripted answer: the server creates the job, then the answer is lost."""

    def act(request: Request) -> Reply | Drop:
        fake(request)
        return fault

    return act


def test_effects_are_declared() -> None:
    effects = {name: step.effect for name, step in STEP_TYPES.items()}
    assert effects == {
        "openai.create_fine_tuning_job": "reconcile",
        "openai.retrieve_fine_tuning_job": "none",
        "openai.list_fine_tuning_jobs": "none",
        "openai.cancel_fine_tuning_job": "idempotent",
        "openai.pause_fine_tuning_job": "idempotent",
        "openai.resume_fine_tuning_job": "idempotent",
        "openai.list_fine_tuning_events": "none",
        "openai.list_fine_tuning_checkpoints": "none",
        "openai.wait_for_fine_tuning_job": "none",
    }
    assert {step.version for step in STEP_TYPES.values()} == {"1.0.0"}
    assert all(not step.problems() for step in STEP_TYPES.values())


def test_api_is_inferred_from_the_job_id_unless_named() -> None:
    assert infer_api({}, "ftjob-abc") == "current"
    assert infer_api({}, "ft-AF1WoRqd3aJAHsqc9NY7iL8F") == "legacy"
    assert infer_api({}, "job_123") == "current"  # an OpenAI-compatible server's ids
    assert infer_api({"api": "current"}, "ft-abc") == "current"
    assert infer_api({"api": "legacy"}, "ftjob-abc") == "legacy"


# -- create ------------------------------------------------------------------------------


async def test_create_tags_the_job_and_merges_user_metadata(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    harness = make_context(fault_server.base_url, run_id="run-42", step_id="job")
    config = {**BASE, "suffix": "support-bot", "metadata": {"team": "support"}}
    job = await run_step(CREATE, config, harness.context)
    [post] = posts(fault_server)
    body = post.json()
    execution = body["metadata"][EXECUTION_KEY]
    assert body == {
        **BASE,
        "suffix": "support-bot",
        "metadata": {
            "team": "support",
            RUN_KEY: "run-42",
            STEP_KEY: "job",
            EXECUTION_KEY: execution,
        },
    }
    # The execution tag was recorded, with the time of sending, before the request left.
    [checkpoint] = harness.checkpoints
    assert checkpoint[EXECUTION_KEY] == execution and checkpoint[SENT_AT_KEY] <= time.time()
    assert job == fake_api.jobs[job["id"]]
    assert fake_api.creates == 1
    assert any("created fine-tuning job ftjob-" in line for line in harness.lines("info"))


async def test_create_raw_result_format(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    harness = make_context(fault_server.base_url)
    raw = await run_step(CREATE, {**BASE, "result_format": "raw"}, harness.context)
    assert raw["status"] == 200
    assert raw["headers"]["content-type"] == "application/json"
    assert raw["body"]["object"] == "fine_tuning.job"


async def test_job_created_then_connection_dropped_is_adopted_not_duplicated(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    fault_server.script(MODEL, create_then(fake_api, Drop()))
    harness = make_context(fault_server.base_url)
    job = await run_step(CREATE, BASE, harness.context)
    assert fake_api.creates == 1 and len(fake_api.jobs) == 1
    assert job["id"] in fake_api.jobs
    assert len(posts(fault_server)) == 1
    lookup = next(
        r for r in fault_server.requests if (r.method, r.path) == ("GET", "/v1/fine_tuning/jobs")
    )
    assert dict(lookup.query) | {"limit": "100"} == {
        f"metadata[{RUN_KEY}]": "run-0001",
        f"metadata[{STEP_KEY}]": "job",
        f"metadata[{EXECUTION_KEY}]": harness.checkpoints[0][EXECUTION_KEY],
        "limit": "100",
    }
    assert "the request is not sent again" in harness.lines("warn")[0]
    assert any("found the job an earlier attempt created" in line for line in harness.lines("info"))
    assert harness.sleeps == []
    assert_no_key(None, harness)


async def test_job_created_then_500_is_adopted(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    fault_server.script(MODEL, create_then(fake_api, Reply.error(500, "oops", type="server_error")))
    job = await run_step(CREATE, BASE, make_context(fault_server.base_url).context)
    assert list(fake_api.jobs) == [job["id"]]
    assert len(posts(fault_server)) == 1


async def test_dropped_before_creating_is_never_sent_again_and_names_the_tag(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    # Dropped before the server acted: the client cannot tell, so it looks over the settle
    # window (sleeps are recorded, not slept) and ends with outcome_unknown, never a resend.
    fault_server.script(MODEL, Drop())
    harness = make_context(fault_server.base_url, auth_timeout=10)
    with pytest.raises(StepError) as caught:
        await run_step(CREATE, BASE, harness.context)
    error = caught.value.to_dict()
    assert (error["type"], error["code"]) == ("outcome_unknown", "outcome_unknown")
    execution = harness.checkpoints[0][EXECUTION_KEY]
    assert error["look_for"] == {
        "metadata": {RUN_KEY: "run-0001", STEP_KEY: "job", EXECUTION_KEY: execution}
    }
    assert f"{EXECUTION_KEY}={execution}" in error["message"]
    assert len(posts(fault_server)) == 1 and fake_api.creates == 0
    assert sum(harness.sleeps) == pytest.approx(settle_window(10))
    assert "looking for a fine-tuning job with metadata" in harness.lines("warn")[0]


async def test_reset_before_the_request_is_read_creates_exactly_one_job(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    fault_server.script(Reset())
    await run_step(CREATE, BASE, make_context(fault_server.base_url).context)
    assert fake_api.creates == 1


async def test_a_server_ignoring_the_metadata_filter_cannot_make_us_adopt_a_stranger(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    stranger = fake_api.make_job(metadata={"owner": "someone else"})
    fault_server.script(
        create_then(fake_api, Drop()),
        lambda request: Reply.json({"object": "list", "data": [stranger], "has_more": False}),
    )
    job = await run_step(CREATE, BASE, make_context(fault_server.base_url).context)
    assert job["id"] != stranger["id"] and job["id"] in fake_api.jobs
    assert fake_api.creates == 2  # the stranger's, and ours
    assert len(posts(fault_server)) == 1


async def test_an_earlier_execution_of_the_same_step_is_not_adopted(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    # The flow came back to this step (an error exit looping back): same run, same step.
    await run_step(CREATE, BASE, make_context(fault_server.base_url).context)
    fault_server.script(MODEL, Drop())
    with pytest.raises(StepError) as caught:
        await run_step(CREATE, BASE, make_context(fault_server.base_url).context)
    assert caught.value.code == "outcome_unknown" and fake_api.creates == 1


async def test_resumed_attempt_finds_the_job_of_the_crashed_one_without_posting(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    crashed = make_context(fault_server.base_url)
    first = await run_step(CREATE, BASE, crashed.context)
    fault_server.requests.clear()
    resumed = make_context(fault_server.base_url, resumed=True, saved=dict(crashed.checkpoints[-1]))
    job = await run_step(CREATE, BASE, resumed.context)
    assert job["id"] == first["id"]
    assert posts(fault_server) == [] and fake_api.creates == 1


async def test_resumed_attempt_whose_job_does_not_exist_creates_it(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    harness = make_context(
        fault_server.base_url, resumed=True, saved={EXECUTION_KEY: "0123456789abcdef"}
    )
    job = await run_step(CREATE, BASE, harness.context)
    assert job["metadata"][EXECUTION_KEY] == "0123456789abcdef"
    assert fake_api.creates == 1


async def test_create_when_the_lookup_fails_too_says_a_job_may_exist(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    fault_server.handler = lambda request: (
        Drop() if request.method == "POST" else Reply.error(403, "not allowed to list")
    )
    with pytest.raises(StepError) as caught:
        await run_step(CREATE, BASE, make_context(fault_server.base_url).context)
    assert caught.value.code == "outcome_unknown"
    assert "with metadata steprun_run_id=run-0001" in caught.value.message
    assert "failed (GET /fine_tuning/jobs failed with HTTP 403: not allowed" in caught.value.message
    assert "It may still appear" in caught.value.message
    assert len(posts(fault_server)) == 1


async def test_create_error_carries_the_api_error(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    fault_server.script(
        MODEL,
        Reply.error(
            400, "invalid training_file: file-train", param="training_file", code="invalid_file"
        ),
    )
    harness = make_context(fault_server.base_url)
    with pytest.raises(StepError) as caught:
        await run_step(CREATE, BASE, harness.context)
    assert (caught.value.code, caught.value.info.param, caught.value.status) == (
        "invalid_file",
        "training_file",
        400,
    )
    assert (
        len(fault_server.requests) == 2
    )  # the preflight; a refusal is neither retried nor looked up
    assert_no_key(caught.value, harness)


# -- create, legacy ---------------------------------------------------------------------------

LEGACY = {"api": "legacy", "training_file": "file-train", "model": "curie", "n_epochs": 2}


async def test_legacy_create_sends_the_legacy_request(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    harness = make_context(fault_server.base_url)
    job = await run_step(CREATE, {**LEGACY, "suffix": "x" * 40}, harness.context)
    [post] = posts(fault_server, "/v1/fine-tunes")
    assert post.json() == {
        "training_file": "file-train",
        "model": "curie",
        "n_epochs": 2,
        "suffix": "x" * 40,
    }
    assert job["object"] == "fine-tune"
    assert harness.checkpoints[0]["legacy_started_at"] <= time.time()


async def test_legacy_job_created_then_dropped_is_found_by_its_settings(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    # Someone else's job on the same file, from before this attempt: not ours.
    fake_api.legacy["ft-old"] = {
        **fake_api._create_legacy({"training_file": "file-train", "model": "curie", "n_epochs": 2}),
        "id": "ft-old",
        "created_at": int(time.time()) - 3600,
    }
    fake_api.legacy.pop(next(k for k in fake_api.legacy if k != "ft-old"))
    fake_api.creates = 0
    fault_server.script(create_then(fake_api, Drop()))
    job = await run_step(CREATE, LEGACY, make_context(fault_server.base_url).context)
    assert fake_api.creates == 1
    assert job["id"] != "ft-old" and job["id"] in fake_api.legacy
    assert len(posts(fault_server, "/v1/fine-tunes")) == 1


async def test_legacy_job_with_other_settings_is_not_adopted(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    fault_server.script(Drop())
    fake_api._create_legacy({"training_file": "file-train", "model": "curie", "n_epochs": 7})
    with pytest.raises(StepError) as caught:
        await run_step(CREATE, LEGACY, make_context(fault_server.base_url).context)
    assert caught.value.code == "outcome_unknown"
    assert caught.value.to_dict()["look_for"]["legacy_job"]["training_file"] == "file-train"
    assert fake_api.creates == 1


async def test_legacy_resumed_attempt_finds_its_job(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    crashed = make_context(fault_server.base_url)
    first = await run_step(CREATE, LEGACY, crashed.context)
    resumed = make_context(fault_server.base_url, resumed=True, saved=crashed.checkpoints[-1])
    assert (await run_step(CREATE, LEGACY, resumed.context))["id"] == first["id"]
    assert fake_api.creates == 1


# -- retrieve and list ---------------------------------------------------------------------


@pytest.mark.parametrize("api", [None, "current"])
async def test_retrieve_current_job(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext, api: str | None
) -> None:
    made = fake_api.make_job()
    config = {"job_id": made["id"], **({"api": api} if api else {})}
    job = await run_step(
        "openai.retrieve_fine_tuning_job", config, make_context(fault_server.base_url).context
    )
    assert job == made
    assert fault_server.requests[-1].path == f"/v1/fine_tuning/jobs/{made['id']}"


async def test_retrieve_infers_the_legacy_api_from_the_id(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    made = fake_api._create_legacy({"training_file": "file-1"})
    job = await run_step(
        "openai.retrieve_fine_tuning_job",
        {"job_id": made["id"]},
        make_context(fault_server.base_url).context,
    )
    assert job["id"] == made["id"]
    assert fault_server.requests[-1].path == f"/v1/fine-tunes/{made['id']}"


async def test_retrieve_unknown_job_is_a_404_step_error(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    harness = make_context(fault_server.base_url)
    with pytest.raises(StepError) as caught:
        await run_step("openai.retrieve_fine_tuning_job", {"job_id": "ftjob-nope"}, harness.context)
    assert (caught.value.status, caught.value.code) == (404, "fine_tune_not_found")
    assert caught.value.request_id is not None
    assert_no_key(caught.value, harness)


async def test_list_one_page_with_metadata_filter(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    for n in range(3):
        fake_api.make_job(metadata={"team": "a" if n else "b"})
    listing = await run_step(
        "openai.list_fine_tuning_jobs",
        {"limit": 1, "metadata": {"team": "a"}},
        make_context(fault_server.base_url).context,
    )
    assert [j["metadata"] for j in listing["data"]] == [{"team": "a"}]
    assert listing["has_more"] is True
    assert fault_server.requests[-1].query == [("limit", "1"), ("metadata[team]", "a")]


async def test_list_all_follows_every_page(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    made = [fake_api.make_job()["id"] for _ in range(5)]
    listing = await run_step(
        "openai.list_fine_tuning_jobs",
        {"limit": 2, "all": True},
        make_context(fault_server.base_url).context,
    )
    assert [j["id"] for j in listing["data"]] == made[::-1]
    assert listing["has_more"] is False
    assert [dict(r.query).get("after") for r in fault_server.requests] == [None, made[3], made[1]]


async def test_list_jobs_without_metadata_sends_metadata_null(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    fault_server.script(Reply.json({"object": "list", "data": [], "has_more": False}))
    await run_step(
        "openai.list_fine_tuning_jobs",
        {"metadata": None},
        make_context(fault_server.base_url).context,
    )
    assert fault_server.requests[-1].query == [("metadata", "null")]


async def test_list_broken_paging_is_an_error_not_a_loop(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    job = fake_api.make_job()
    page = Reply.json({"object": "list", "data": [job], "has_more": True})
    fault_server.script(page, page)
    with pytest.raises(StepError) as caught:
        await run_step(
            "openai.list_fine_tuning_jobs",
            {"all": True},
            make_context(fault_server.base_url).context,
        )
    assert caught.value.code == "broken_paging"
    assert len(fault_server.requests) == 2


async def test_list_legacy_jobs(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    fake_api._create_legacy({"training_file": "file-1"})
    listing = await run_step(
        "openai.list_fine_tuning_jobs",
        {"api": "legacy"},
        make_context(fault_server.base_url).context,
    )
    assert [j["object"] for j in listing["data"]] == ["fine-tune"]
    assert fault_server.requests[-1].target == "/v1/fine-tunes"


# -- cancel, pause, resume -------------------------------------------------------------------

CANCEL = "openai.cancel_fine_tuning_job"


async def test_cancel_a_running_job(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    made = fake_api.make_job(status="running")
    job = await run_step(
        CANCEL, {"job_id": made["id"]}, make_context(fault_server.base_url).context
    )
    assert job["status"] == "cancelled"


async def test_cancel_an_already_cancelled_job_succeeds(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    made = fake_api.make_job()
    fake_api.jobs[made["id"]]["status"] = "cancelled"
    harness = make_context(fault_server.base_url)
    job = await run_step(CANCEL, {"job_id": made["id"]}, harness.context)
    assert job["status"] == "cancelled"
    assert [r.method for r in fault_server.requests] == ["POST", "GET"]
    assert any("already cancelled" in line for line in harness.lines("info"))


async def test_cancel_retried_after_a_lost_answer_still_succeeds(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    made = fake_api.make_job(status="running")
    fault_server.script(create_then(fake_api, Drop()))  # cancelled, answer lost
    job = await run_step(
        CANCEL, {"job_id": made["id"]}, make_context(fault_server.base_url).context
    )
    assert job["status"] == "cancelled"


async def test_cancel_a_finished_job_is_an_error_with_the_job(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    made = fake_api.make_job()
    fake_api.jobs[made["id"]]["status"] = "succeeded"
    harness = make_context(fault_server.base_url)
    with pytest.raises(StepError) as caught:
        await run_step(CANCEL, {"job_id": made["id"]}, harness.context)
    error = caught.value.to_dict()
    assert error["code"] == "job_already_finished" and error["status"] == 400
    assert error["job"]["status"] == "succeeded"
    assert "if_finished: succeed" in error["message"]
    assert_no_key(caught.value, harness)


async def test_cancel_a_finished_job_with_if_finished_succeed(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    made = fake_api.make_job()
    fake_api.jobs[made["id"]]["status"] = "failed"
    harness = make_context(fault_server.base_url)
    job = await run_step(CANCEL, {"job_id": made["id"], "if_finished": "succeed"}, harness.context)
    assert job["status"] == "failed"
    assert "had already finished (failed)" in harness.lines("warn")[0]


async def test_cancel_legacy_job(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    made = fake_api._create_legacy({"training_file": "file-1"})
    job = await run_step(
        CANCEL, {"job_id": made["id"]}, make_context(fault_server.base_url).context
    )
    assert job["status"] == "cancelled"
    assert fault_server.requests[0].path == f"/v1/fine-tunes/{made['id']}/cancel"


async def test_cancel_unknown_job_is_the_404(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    with pytest.raises(StepError) as caught:
        await run_step(
            CANCEL, {"job_id": "ftjob-nope"}, make_context(fault_server.base_url).context
        )
    assert caught.value.status == 404
    assert len(fault_server.requests) == 1


async def test_pause_and_resume_are_idempotent(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    made = fake_api.make_job()
    fake_api.jobs[made["id"]]["status"] = "running"
    config = {"job_id": made["id"]}
    context = make_context(fault_server.base_url).context
    assert (await run_step("openai.pause_fine_tuning_job", config, context))["status"] == "paused"
    assert (await run_step("openai.pause_fine_tuning_job", config, context))["status"] == "paused"
    assert (await run_step("openai.resume_fine_tuning_job", config, context))["status"] == "running"
    assert (await run_step("openai.resume_fine_tuning_job", config, context))["status"] == "running"


async def test_pause_a_queued_job_keeps_the_api_refusal(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    made = fake_api.make_job()
    with pytest.raises(StepError) as caught:
        await run_step(
            "openai.pause_fine_tuning_job",
            {"job_id": made["id"]},
            make_context(fault_server.base_url).context,
        )
    assert caught.value.status == 400 and "cannot be paused" in caught.value.message


@pytest.mark.parametrize("step", ["openai.pause_fine_tuning_job", "openai.resume_fine_tuning_job"])
async def test_pause_and_resume_refuse_legacy_jobs_before_any_request(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext, step: str
) -> None:
    with pytest.raises(StepError) as caught:
        await run_step(
            step,
            {"job_id": "ft-AF1WoRqd3aJAHsqc9NY7iL8F"},
            make_context(fault_server.base_url).context,
        )
    assert (caught.value.type, caught.value.code) == ("invalid_config", "unsupported_by_legacy_api")
    assert fault_server.requests == []


async def test_job_id_cannot_escape_its_path_segment(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    with pytest.raises(StepError):
        await run_step(
            "openai.retrieve_fine_tuning_job",
            {"job_id": ".."},
            make_context(fault_server.base_url).context,
        )
    fault_server.script(Reply.error(404, "nope"))
    with pytest.raises(StepError):
        await run_step(
            "openai.retrieve_fine_tuning_job",
            {"job_id": "../files"},
            make_context(fault_server.base_url).context,
        )
    assert fault_server.requests[-1].path == "/v1/fine_tuning/jobs/..%2Ffiles"


def test_canary_key_is_in_the_authorization_header_only() -> None:
    # Guard for the tests above: assert_no_key would pass vacuously with another key.
    assert CANARY_KEY.startswith("sk-canary") and json.dumps(CANARY_KEY)
