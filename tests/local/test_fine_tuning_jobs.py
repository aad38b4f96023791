"""/v1/fine_tuning/jobs: OpenAI's create checks, the lifecycle on the clock, events,
checkpoints, results, listing, cancel, pause and resume."""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

import httpx
import pytest

from tests.local.conftest import (
    JOB_SECONDS,
    CreateJob,
    FakeClock,
    Upload,
    chat_lines,
    completion_lines,
    error_of,
)

MODEL_NAME = re.compile(r"^ft:gpt-4o-mini-2024-07-18:steprun-local:support-bot:[A-Za-z0-9]{8}$")


def job_at(api: httpx.Client, clock: FakeClock, job_id: str, seconds: float) -> dict[str, Any]:
    clock.advance(seconds)
    return dict(api.get(f"/v1/fine_tuning/jobs/{job_id}").json())


def events_of(api: httpx.Client, job_id: str) -> list[dict[str, Any]]:
    """Every event of a job, oldest first, following the pagination."""
    found: list[dict[str, Any]] = []
    after = None
    while True:
        params: dict[str, Any] = {"limit": 100}
        if after:
            params["after"] = after
        page = api.get(f"/v1/fine_tuning/jobs/{job_id}/events", params=params).json()
        found += page["data"]
        if not page["has_more"]:
            return list(reversed(found))
        after = page["data"][-1]["id"]


# --- create checks -----------------------------------------------------------------------------


def create_error(api: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    response = api.post("/v1/fine_tuning/jobs", json=body)
    assert response.status_code == 400, response.text
    return error_of(response)


def test_unknown_training_file(api: httpx.Client) -> None:
    error = create_error(api, {"model": "gpt-4o-mini", "training_file": "file-nope"})
    assert error == {
        "message": "invalid training_file: file-nope",
        "type": "invalid_request_error",
        "param": "training_file",
        "code": None,
    }


def test_training_file_with_the_wrong_purpose(api: httpx.Client, upload: Upload) -> None:
    file = upload(chat_lines(12), purpose="assistants")
    error = create_error(api, {"model": "gpt-4o-mini", "training_file": file["id"]})
    assert error["message"] == (
        f"File '{file['id']}' has purpose 'assistants', but must have purpose 'fine-tune'"
    )
    assert error["param"] == "training_file"


@pytest.mark.parametrize("model", ["gpt-4", "gpt-3.5-turbo-instruct", "curie", "no-such-model"])
def test_model_that_cannot_be_fine_tuned(api: httpx.Client, upload: Upload, model: str) -> None:
    file = upload(chat_lines(12))
    error = create_error(api, {"model": model, "training_file": file["id"]})
    assert error["message"] == f"Model {model} is not available for fine-tuning or does not exist."
    assert (error["param"], error["code"]) == ("model", "model_not_available")


def test_suffix_too_long(api: httpx.Client, upload: Upload) -> None:
    file = upload(chat_lines(12))
    body = {"model": "gpt-4o-mini", "training_file": file["id"], "suffix": "s" * 65}
    error = create_error(api, body)
    assert error["message"] == (
        "Invalid 'suffix': string too long. Expected a string with maximum length 64, "
        "but got a string with length 65 instead."
    )
    assert (error["param"], error["code"]) == ("suffix", "string_above_max_length")


def test_fewer_than_ten_examples(api: httpx.Client, upload: Upload) -> None:
    file = upload(chat_lines(4))
    error = create_error(api, {"model": "gpt-4o-mini", "training_file": file["id"]})
    assert error["message"] == (
        f"{file['id']} has 4 example(s), but must have at least 10 examples"
    )
    assert (error["param"], error["code"]) == ("training_file", "invalid_n_examples")


def test_prompt_completion_data_does_not_fit_a_chat_model(
    api: httpx.Client, upload: Upload
) -> None:
    file = upload(completion_lines(12))
    error = create_error(api, {"model": "gpt-4o-mini", "training_file": file["id"]})
    assert error["message"] == (
        f"File {file['id']} format is not compatible with model gpt-4o-mini-2024-07-18"
    )


def test_chat_data_does_not_fit_a_completion_model(api: httpx.Client, upload: Upload) -> None:
    file = upload(chat_lines(12))
    error = create_error(api, {"model": "babbage-002", "training_file": file["id"]})
    assert error["message"] == f"File {file['id']} format is not compatible with model babbage-002"


def test_validation_file_is_checked_too(api: httpx.Client, upload: Upload) -> None:
    train = upload(chat_lines(12))
    body = {"model": "gpt-4o-mini", "training_file": train["id"], "validation_file": "file-x"}
    assert create_error(api, body)["message"] == "invalid validation_file: file-x"


def test_missing_model_is_named(api: httpx.Client) -> None:
    error = create_error(api, {"training_file": "file-x"})
    assert error["message"] == "Missing required parameter: 'model'."
    assert error["code"] == "missing_required_parameter"


def test_unrecognized_argument(api: httpx.Client, upload: Upload) -> None:
    file = upload(chat_lines(12))
    body = {"model": "gpt-4o-mini", "training_file": file["id"], "epochs": 3}
    assert create_error(api, body)["message"] == "Unrecognized request argument supplied: epochs"


@pytest.mark.parametrize(
    ("hyper", "message"),
    [
        ({"n_epochs": 0}, "Invalid 'method.supervised.hyperparameters.n_epochs': integer below"),
        ({"n_epochs": "many"}, "Invalid type for 'method.supervised.hyperparameters.n_epochs'"),
        ({"learning_rate_multiplier": 0}, "decimal below minimum value. Expected a value > 0"),
        ({"batch_size": 257}, "integer above maximum value. Expected a value <= 256"),
    ],
)
def test_hyperparameters_are_range_checked(
    api: httpx.Client, upload: Upload, hyper: dict[str, Any], message: str
) -> None:
    file = upload(chat_lines(12))
    body = {
        "model": "gpt-4o-mini",
        "training_file": file["id"],
        "method": {"type": "supervised", "supervised": {"hyperparameters": hyper}},
    }
    assert message in create_error(api, body)["message"]


def test_metadata_is_limited_to_sixteen_keys(api: httpx.Client, upload: Upload) -> None:
    file = upload(chat_lines(12))
    body = {
        "model": "gpt-4o-mini",
        "training_file": file["id"],
        "metadata": {f"k{i}": "v" for i in range(17)},
    }
    assert create_error(api, body)["code"] == "object_above_max_properties"


def test_invalid_json_body(api: httpx.Client) -> None:
    response = api.post(
        "/v1/fine_tuning/jobs", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert error_of(response)["message"].startswith("We could not parse the JSON body")


# --- lifecycle ---------------------------------------------------------------------------------


def test_a_new_job_is_validating_its_files_with_auto_hyperparameters(
    api: httpx.Client, create_job: CreateJob, clock: FakeClock
) -> None:
    job = create_job(suffix="support-bot", seed=7, metadata={"team": "support"})
    assert job["id"].startswith("ftjob-")
    assert job["status"] == "validating_files"
    assert job["model"] == "gpt-4o-mini-2024-07-18"
    assert job["organization_id"] == "org-steprun-local"
    assert job["fine_tuned_model"] is None
    assert job["finished_at"] is None
    assert job["trained_tokens"] is None
    assert job["seed"] == 7
    assert job["metadata"] == {"team": "support"}
    # The spec: null unless the job is running (issue 10).
    assert job["estimated_finish"] is None
    assert job_at(api, clock, job["id"], JOB_SECONDS * 0.15)["estimated_finish"] is None
    assert job_at(api, clock, job["id"], JOB_SECONDS * 0.1)["estimated_finish"] == int(
        job["created_at"] + JOB_SECONDS
    )
    assert job["hyperparameters"] == {
        "batch_size": "auto",
        "learning_rate_multiplier": "auto",
        "n_epochs": "auto",
    }
    assert job["method"]["type"] == "supervised"


def test_job_moves_through_its_states_on_the_clock(
    api: httpx.Client, create_job: CreateJob, clock: FakeClock
) -> None:
    job = create_job()
    seen = [job["status"]]
    # Files validated at 10% of the job's time, training from 20%, done at 100%.
    for fraction in (0.05, 0.1, 0.1, 0.5, 0.249):
        seen.append(job_at(api, clock, job["id"], JOB_SECONDS * fraction)["status"])
    assert seen == [
        "validating_files",
        "validating_files",
        "queued",
        "running",
        "running",
        "running",
    ]
    assert job_at(api, clock, job["id"], JOB_SECONDS * 0.01)["status"] == "succeeded"


def test_jobs_created_at_different_times_each_finish_on_their_own_clock(
    api: httpx.Client, create_job: CreateJob, clock: FakeClock
) -> None:
    first = create_job()
    clock.advance(JOB_SECONDS * 0.6)
    second = create_job()  # created while the first runs, so it ends later
    assert job_at(api, clock, first["id"], JOB_SECONDS * 0.5)["status"] == "succeeded"
    assert api.get(f"/v1/fine_tuning/jobs/{second['id']}").json()["status"] == "running"
    third = create_job()  # created after the first finished
    assert job_at(api, clock, second["id"], JOB_SECONDS * 0.5)["status"] == "succeeded"
    assert api.get(f"/v1/fine_tuning/jobs/{third['id']}").json()["status"] == "running"
    assert job_at(api, clock, third["id"], JOB_SECONDS * 0.5)["status"] == "succeeded"


def test_running_job_shows_resolved_hyperparameters(
    api: httpx.Client, create_job: CreateJob, clock: FakeClock
) -> None:
    job = create_job()
    running = job_at(api, clock, job["id"], JOB_SECONDS * 0.5)
    # 12 examples: at least 100 examples seen means ceil(100 / 12) = 9 epochs.
    assert running["hyperparameters"] == {
        "batch_size": 1,
        "learning_rate_multiplier": 1.8,
        "n_epochs": 9,
    }


def test_succeeded_job_has_model_tokens_result_file(
    api: httpx.Client, finished_job: dict[str, Any], clock: FakeClock
) -> None:
    job = finished_job
    assert MODEL_NAME.match(job["fine_tuned_model"])
    assert job["finished_at"] == int(clock.now - 1)
    assert job["estimated_finish"] is None
    assert job["error"] is None
    assert job["trained_tokens"] > 0
    assert job["trained_tokens"] % job["hyperparameters"]["n_epochs"] == 0
    [result_id] = job["result_files"]
    result = api.get(f"/v1/files/{result_id}").json()
    assert (result["purpose"], result["filename"]) == ("fine-tune-results", "step_metrics.csv")
    rows = list(csv.DictReader(io.StringIO(api.get(f"/v1/files/{result_id}/content").text)))
    assert list(rows[0]) == [
        "step",
        "train_loss",
        "train_accuracy",
        "valid_loss",
        "valid_mean_token_accuracy",
    ]
    # 36 examples, 3 epochs, batch size 1.
    assert [int(row["step"]) for row in rows] == list(range(1, 36 * 3 + 1))
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])


def test_fine_tuned_model_is_listed_after_success(
    api: httpx.Client, finished_job: dict[str, Any]
) -> None:
    ids = [m["id"] for m in api.get("/v1/models").json()["data"]]
    assert finished_job["fine_tuned_model"] in ids


def test_events_tell_the_story_in_order(api: httpx.Client, finished_job: dict[str, Any]) -> None:
    events = events_of(api, finished_job["id"])
    messages = [e["message"] for e in events if e["type"] == "message"]
    assert messages[:4] == [
        f"Created fine-tuning job: {finished_job['id']}",
        f"Validating training file: {finished_job['training_file']}",
        "Files validated, moving job to queued state",
        "Fine-tuning job started",
    ]
    assert messages[-4:] == [
        "New fine-tuned model created",
        "Evaluating model against our usage policies",
        "Usage policy evaluations completed, model is now enabled for sampling",
        "The job has successfully completed",
    ]
    assert [e["created_at"] for e in events] == sorted(e["created_at"] for e in events)
    assert all(e["id"].startswith("ftevent-") and e["level"] == "info" for e in events)


def test_metrics_events_carry_step_and_train_loss(
    api: httpx.Client, finished_job: dict[str, Any]
) -> None:
    metrics = [e for e in events_of(api, finished_job["id"]) if e["type"] == "metrics"]
    assert [e["data"]["step"] for e in metrics] == list(range(1, 109))
    first = metrics[0]
    assert first["message"] == f"Step 1/108: training loss={first['data']['train_loss']:.2f}"
    assert set(first["data"]) == {"step", "train_loss", "train_mean_token_accuracy", "total_steps"}
    assert metrics[-1]["data"]["train_loss"] < first["data"]["train_loss"]


def test_event_ids_are_stable_and_paginate_newest_first(
    api: httpx.Client, finished_job: dict[str, Any]
) -> None:
    url = f"/v1/fine_tuning/jobs/{finished_job['id']}/events"
    first = api.get(url, params={"limit": 3}).json()
    assert first["has_more"] is True
    assert first["data"][0]["message"] == "The job has successfully completed"
    again = api.get(url, params={"limit": 3}).json()
    assert [e["id"] for e in again["data"]] == [e["id"] for e in first["data"]]
    second = api.get(url, params={"limit": 3, "after": first["data"][-1]["id"]}).json()
    assert second["data"][0]["message"] == "New fine-tuned model created"


def test_events_grow_while_the_job_runs(
    api: httpx.Client, create_job: CreateJob, clock: FakeClock
) -> None:
    job = create_job()
    counts = []
    for _ in range(4):
        counts.append(len(events_of(api, job["id"])))
        clock.advance(JOB_SECONDS / 4)
    assert counts == sorted(counts)
    assert counts[0] == 2
    assert counts[-1] > counts[1]


def test_one_checkpoint_per_epoch_the_last_being_the_model(
    api: httpx.Client, finished_job: dict[str, Any]
) -> None:
    page = api.get(f"/v1/fine_tuning/jobs/{finished_job['id']}/checkpoints").json()
    checkpoints = page["data"]
    assert [c["step_number"] for c in checkpoints] == [108, 72, 36]
    assert checkpoints[0]["fine_tuned_model_checkpoint"] == finished_job["fine_tuned_model"]
    assert checkpoints[1]["fine_tuned_model_checkpoint"] == (
        finished_job["fine_tuned_model"] + ":ckpt-step-72"
    )
    assert all(c["id"].startswith("ftckpt_") for c in checkpoints)
    assert all(c["fine_tuning_job_id"] == finished_job["id"] for c in checkpoints)
    assert checkpoints[0]["metrics"]["step"] == 108
    assert (page["first_id"], page["last_id"]) == (checkpoints[0]["id"], checkpoints[-1]["id"])


def test_checkpoints_of_the_last_three_epochs_appear_as_they_end(
    api: httpx.Client, create_job: CreateJob, clock: FakeClock
) -> None:
    job = create_job()  # 12 examples: 9 epochs of 12 steps
    url = f"/v1/fine_tuning/jobs/{job['id']}/checkpoints"
    assert api.get(url).json()["data"] == []
    # Training runs from 20% to 90% of the job's time; epoch 8 ends at 20 + 70 * 8/9 %.
    clock.advance(JOB_SECONDS * 0.85)
    midway = api.get(url).json()["data"]
    assert [c["step_number"] for c in midway] == [96, 84]
    clock.advance(JOB_SECONDS)
    # OpenAI keeps the checkpoints of the last 3 epochs, not one per epoch (issue 10).
    done = api.get(url).json()["data"]
    assert [c["step_number"] for c in done] == [108, 96, 84]
    events = [e["message"] for e in events_of(api, job["id"])]
    assert [m for m in events if m.startswith("Checkpoint created")] == [
        "Checkpoint created at step 84",
        "Checkpoint created at step 96",
    ]


def test_validation_file_adds_validation_metrics(
    api: httpx.Client, create_job: CreateJob, upload: Upload, clock: FakeClock
) -> None:
    validation = upload(chat_lines(3), filename="valid.jsonl")
    job = create_job(validation_file=validation["id"])
    clock.advance(JOB_SECONDS + 1)
    events = events_of(api, job["id"])
    assert events[1]["message"].endswith(f"and validation file: {validation['id']}")
    metrics = next(e for e in events if e["type"] == "metrics")
    assert "valid_loss" in metrics["data"]
    assert ", validation loss=" in metrics["message"]
    checkpoint = api.get(f"/v1/fine_tuning/jobs/{job['id']}/checkpoints").json()["data"][0]
    assert "full_valid_loss" in checkpoint["metrics"]


def test_explicit_hyperparameters_are_used(
    api: httpx.Client, create_job: CreateJob, clock: FakeClock
) -> None:
    hyper = {"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 0.5}
    job = create_job(method={"type": "supervised", "supervised": {"hyperparameters": hyper}})
    done = job_at(api, clock, job["id"], JOB_SECONDS + 1)
    assert done["hyperparameters"] == hyper
    page = api.get(f"/v1/fine_tuning/jobs/{job['id']}/checkpoints").json()
    # 12 examples in batches of 4: 3 steps per epoch.
    assert [c["step_number"] for c in page["data"]] == [6, 3]


def test_a_completion_model_trains_on_prompt_completion_data(
    api: httpx.Client, create_job: CreateJob, upload: Upload, clock: FakeClock
) -> None:
    file = upload(completion_lines(12))
    job = create_job(file["id"], model="babbage-002", suffix="sums")
    done = job_at(api, clock, job["id"], JOB_SECONDS + 1)
    assert done["fine_tuned_model"].startswith("ft:babbage-002:steprun-local:sums:")


def test_model_name_without_suffix_has_an_empty_suffix_field(
    api: httpx.Client, create_job: CreateJob, clock: FakeClock
) -> None:
    job = create_job()
    done = job_at(api, clock, job["id"], JOB_SECONDS + 1)
    assert re.match(
        r"^ft:gpt-4o-mini-2024-07-18:steprun-local::[A-Za-z0-9]{8}$", done["fine_tuned_model"]
    )


def test_a_fine_tuned_model_can_be_trained_further(
    api: httpx.Client, create_job: CreateJob, finished_job: dict[str, Any], clock: FakeClock
) -> None:
    job = create_job(model=finished_job["fine_tuned_model"], suffix="more")
    assert job["model"] == finished_job["fine_tuned_model"]
    done = job_at(api, clock, job["id"], JOB_SECONDS + 1)
    assert done["fine_tuned_model"].startswith("ft:gpt-4o-mini-2024-07-18:steprun-local:more:")


def test_dpo_trains_on_preference_data(
    api: httpx.Client, create_job: CreateJob, upload: Upload, clock: FakeClock
) -> None:
    rows = [
        {
            "input": {"messages": [{"role": "user", "content": f"Hi {i}"}]},
            "preferred_output": [{"role": "assistant", "content": f"Hello {i}!"}],
            "non_preferred_output": [{"role": "assistant", "content": "Go away."}],
        }
        for i in range(10)
    ]
    file = upload("".join(json.dumps(row) + "\n" for row in rows).encode())
    method = {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2}}}
    job = create_job(file["id"], method=method)
    assert job["method"]["dpo"]["hyperparameters"]["beta"] == 0.2
    assert job_at(api, clock, job["id"], JOB_SECONDS + 1)["status"] == "succeeded"


# --- list, cancel, pause, resume --------------------------------------------------------------


def test_list_is_newest_first_with_pagination_and_metadata_filter(
    api: httpx.Client, create_job: CreateJob, upload: Upload, clock: FakeClock
) -> None:
    file = upload(chat_lines(12))["id"]
    made = []
    for i in range(3):
        made.append(create_job(file, metadata={"run": str(i), "team": "a" if i else "b"})["id"])
        clock.advance(1)
    first = api.get("/v1/fine_tuning/jobs", params={"limit": 2}).json()
    assert [j["id"] for j in first["data"]] == [made[2], made[1]]
    assert first["has_more"] is True
    rest = api.get("/v1/fine_tuning/jobs", params={"after": made[1]}).json()
    assert [j["id"] for j in rest["data"]] == [made[0]]
    filtered = api.get("/v1/fine_tuning/jobs", params={"metadata[team]": "a"}).json()
    assert [j["id"] for j in filtered["data"]] == [made[2], made[1]]
    both = api.get("/v1/fine_tuning/jobs", params={"metadata[team]": "a", "metadata[run]": "1"})
    assert [j["id"] for j in both.json()["data"]] == [made[1]]
    bare = create_job(file)["id"]
    without = api.get("/v1/fine_tuning/jobs", params={"metadata": "null"}).json()
    assert [j["id"] for j in without["data"]] == [bare]


def test_cancel_stops_the_job(api: httpx.Client, create_job: CreateJob, clock: FakeClock) -> None:
    job = create_job()
    clock.advance(JOB_SECONDS * 0.5)
    cancelled = api.post(f"/v1/fine_tuning/jobs/{job['id']}/cancel").json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["finished_at"] == int(clock.now)
    later = job_at(api, clock, job["id"], JOB_SECONDS)
    assert (later["status"], later["fine_tuned_model"]) == ("cancelled", None)
    messages = [e["message"] for e in events_of(api, job["id"])]
    assert messages[-1] == "Fine-tuning job cancelled"
    assert "The job has successfully completed" not in messages


def test_cancel_of_a_finished_job_is_refused(
    api: httpx.Client, finished_job: dict[str, Any]
) -> None:
    response = api.post(f"/v1/fine_tuning/jobs/{finished_job['id']}/cancel")
    assert response.status_code == 400
    assert error_of(response)["message"] == f"Job has already completed: {finished_job['id']}"


def test_unknown_job_is_404(api: httpx.Client) -> None:
    response = api.get("/v1/fine_tuning/jobs/ftjob-missing")
    assert response.status_code == 404
    assert error_of(response)["code"] == "fine_tune_not_found"


def test_pause_freezes_progress_and_resume_continues_it(
    api: httpx.Client, create_job: CreateJob, clock: FakeClock
) -> None:
    job = create_job()
    clock.advance(JOB_SECONDS * 0.5)
    paused = api.post(f"/v1/fine_tuning/jobs/{job['id']}/pause").json()
    assert paused["status"] == "paused"
    steps_at_pause = len(events_of(api, job["id"]))
    # Long past the planned end: a paused job neither advances nor finishes.
    assert job_at(api, clock, job["id"], JOB_SECONDS * 3)["status"] == "paused"
    assert len(events_of(api, job["id"])) == steps_at_pause
    resumed = api.post(f"/v1/fine_tuning/jobs/{job['id']}/resume").json()
    assert resumed["status"] == "running"
    # Planned end plus the time spent paused.
    assert resumed["estimated_finish"] == job["created_at"] + int(JOB_SECONDS * 4)
    assert job_at(api, clock, job["id"], JOB_SECONDS * 0.4)["status"] == "running"
    done = job_at(api, clock, job["id"], JOB_SECONDS * 0.2)
    assert done["status"] == "succeeded"
    messages = [e["message"] for e in events_of(api, job["id"])]
    assert messages.index("Fine-tuning job paused") < messages.index("Fine-tuning job resumed")


def test_only_a_running_job_can_be_paused_and_only_a_paused_one_resumed(
    api: httpx.Client, create_job: CreateJob
) -> None:
    job = create_job()
    refused = api.post(f"/v1/fine_tuning/jobs/{job['id']}/pause")
    assert refused.status_code == 400
    assert "it is validating_files" in error_of(refused)["message"]
    assert api.post(f"/v1/fine_tuning/jobs/{job['id']}/resume").status_code == 400
