"""/v1/fine-tunes: the 2023 API, its model names, its events and their SSE stream."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from steprun.runtime.local import LocalBackend
from tests.contract import validate_sse
from tests.local.conftest import (
    EXAMPLES,
    JOB_SECONDS,
    FakeClock,
    Mount,
    Upload,
    chat_lines,
    check_response,
    error_of,
)


@pytest.fixture
def legacy_file(upload: Upload) -> str:
    return str(upload(EXAMPLES / "support_legacy.jsonl")["id"])


def create(api: httpx.Client, **body: Any) -> httpx.Response:
    return api.post("/v1/fine-tunes", json=body)


def test_create_returns_a_pending_fine_tune_with_its_first_event(
    api: httpx.Client, legacy_file: str
) -> None:
    fine_tune = create(api, training_file=legacy_file, suffix="support").json()
    assert fine_tune["id"].startswith("ft-")
    assert fine_tune["object"] == "fine-tune"
    assert (fine_tune["model"], fine_tune["status"]) == ("curie", "pending")
    assert fine_tune["fine_tuned_model"] is None
    assert fine_tune["hyperparams"] == {
        "n_epochs": 4,
        "batch_size": 1,
        "prompt_loss_weight": 0.01,
        "learning_rate_multiplier": 0.05,
    }
    assert [f["id"] for f in fine_tune["training_files"]] == [legacy_file]
    assert fine_tune["events"] == [
        {
            "object": "fine-tune-event",
            "created_at": fine_tune["created_at"],
            "level": "info",
            "message": f"Created fine-tune: {fine_tune['id']}",
        }
    ]


def test_lifecycle_ends_with_a_legacy_model_name_and_result_file(
    api: httpx.Client, legacy_file: str, clock: FakeClock
) -> None:
    fine_tune = create(api, training_file=legacy_file, model="davinci", suffix="support").json()
    clock.advance(JOB_SECONDS * 0.5)
    assert api.get(f"/v1/fine-tunes/{fine_tune['id']}").json()["status"] == "running"
    clock.advance(JOB_SECONDS)
    done = api.get(f"/v1/fine-tunes/{fine_tune['id']}").json()
    assert done["status"] == "succeeded"
    finished = time.gmtime(fine_tune["created_at"] + JOB_SECONDS)
    assert done["fine_tuned_model"] == (
        "davinci:ft-steprun-local:support-" + time.strftime("%Y-%m-%d-%H-%M-%S", finished)
    )
    [result] = done["result_files"]
    assert result["purpose"] == "fine-tune-results"
    messages = [e["message"] for e in done["events"]]
    assert messages[:4] == [
        f"Created fine-tune: {fine_tune['id']}",
        messages[1],
        "Fine-tune enqueued. Queue number: 0",
        "Fine-tune started",
    ]
    assert re.fullmatch(r"Fine-tune costs \$\d+\.\d\d", messages[1])
    assert [m for m in messages if m.startswith("Completed epoch")] == [
        f"Completed epoch {i}/4" for i in range(1, 5)
    ]
    assert messages[-3:] == [
        f"Uploaded model: {done['fine_tuned_model']}",
        f"Uploaded result file: {result['id']}",
        "Fine-tune succeeded",
    ]


def test_model_name_without_suffix(api: httpx.Client, legacy_file: str, clock: FakeClock) -> None:
    fine_tune = create(api, training_file=legacy_file, model="ada").json()
    clock.advance(JOB_SECONDS + 1)
    name = api.get(f"/v1/fine-tunes/{fine_tune['id']}").json()["fine_tuned_model"]
    assert re.fullmatch(r"ada:ft-steprun-local-\d{4}(-\d\d){5}", name)


def test_legacy_model_answers_completions(
    api: httpx.Client, legacy_file: str, clock: FakeClock
) -> None:
    fine_tune = create(api, training_file=legacy_file).json()
    clock.advance(JOB_SECONDS + 1)
    model = api.get(f"/v1/fine-tunes/{fine_tune['id']}").json()["fine_tuned_model"]
    prompt = "Customer: How do I cancel my subscription?\nAgent:\n\n###\n\n"
    body = {"model": model, "prompt": prompt, "max_tokens": 100, "stop": [" END"]}
    text = api.post("/v1/completions", json={**body, "temperature": 0}).json()
    assert text["choices"][0]["text"].startswith(" Go to Settings → Billing and click Cancel")


def test_list_leaves_out_events(api: httpx.Client, legacy_file: str) -> None:
    made = [create(api, training_file=legacy_file).json()["id"] for _ in range(2)]
    listed = api.get("/v1/fine-tunes").json()
    assert [f["id"] for f in listed["data"]] == made
    assert all("events" not in f for f in listed["data"])


def test_events_list(api: httpx.Client, legacy_file: str, clock: FakeClock) -> None:
    fine_tune = create(api, training_file=legacy_file).json()
    clock.advance(JOB_SECONDS * 0.3)
    events = api.get(f"/v1/fine-tunes/{fine_tune['id']}/events").json()
    assert events["object"] == "list"
    assert events["data"][-1]["message"] == "Fine-tune started"


def test_cancel(api: httpx.Client, legacy_file: str, clock: FakeClock) -> None:
    fine_tune = create(api, training_file=legacy_file).json()
    clock.advance(JOB_SECONDS * 0.5)
    cancelled = api.post(f"/v1/fine-tunes/{fine_tune['id']}/cancel").json()
    assert cancelled["status"] == "cancelled"
    assert cancelled["events"][-1]["message"] == "Fine-tune cancelled"
    again = api.post(f"/v1/fine-tunes/{fine_tune['id']}/cancel")
    assert again.status_code == 400


def test_only_legacy_base_models(api: httpx.Client, legacy_file: str) -> None:
    response = create(api, training_file=legacy_file, model="gpt-4o-mini")
    assert response.status_code == 400
    assert error_of(response)["message"] == (
        "Invalid base model: gpt-4o-mini (model must be one of ada, babbage, curie, davinci) "
        "or a fine-tuned model created by your organization: org-steprun-local"
    )


def test_chat_data_is_not_prompt_completion(api: httpx.Client, upload: Upload) -> None:
    file = upload(chat_lines(12))
    response = create(api, training_file=file["id"])
    assert (
        error_of(response)["message"]
        == f"File {file['id']} format is not compatible with model curie"
    )


def test_legacy_suffix_is_limited_to_forty_characters(api: httpx.Client, legacy_file: str) -> None:
    response = create(api, training_file=legacy_file, suffix="x" * 41)
    assert error_of(response)["code"] == "string_above_max_length"


def test_jobs_of_one_api_are_not_visible_in_the_other(api: httpx.Client, legacy_file: str) -> None:
    fine_tune = create(api, training_file=legacy_file).json()
    assert api.get(f"/v1/fine_tuning/jobs/{fine_tune['id']}").status_code == 404
    assert api.get("/v1/fine_tuning/jobs").json()["data"] == []


def test_stream_of_a_finished_fine_tune_sends_all_events_then_done(
    api: httpx.Client, legacy_file: str, clock: FakeClock
) -> None:
    fine_tune = create(api, training_file=legacy_file).json()
    clock.advance(JOB_SECONDS + 1)
    response = api.get(f"/v1/fine-tunes/{fine_tune['id']}/events", params={"stream": "true"})
    chunks = validate_sse("legacy", "GET", "/fine-tunes/{fine_tune_id}/events", response.text)
    assert chunks[-1]["message"] == "Fine-tune succeeded"
    plain = api.get(f"/v1/fine-tunes/{fine_tune['id']}/events").json()["data"]
    assert chunks == plain


@pytest.fixture
def live(mount: Mount, server_url: str) -> Iterator[httpx.Client]:
    """A backend on the real clock with short jobs (responses read as they arrive, so the
    test validates them itself)."""
    mount.app = LocalBackend(job_seconds=0.8).app
    with httpx.Client(base_url=server_url, timeout=10) as client:
        yield client
    mount.app = None


def test_stream_follows_a_running_fine_tune_as_it_happens(live: httpx.Client) -> None:
    content = (EXAMPLES / "support_legacy.jsonl").read_bytes()
    uploaded = live.post(
        "/v1/files", files={"file": ("l.jsonl", content)}, data={"purpose": "fine-tune"}
    )
    created = live.post("/v1/fine-tunes", json={"training_file": uploaded.json()["id"]})
    for response in (uploaded, created):
        check_response(response)
    fine_tune = created.json()
    arrivals = []
    text = ""
    with live.stream(
        "GET", f"/v1/fine-tunes/{fine_tune['id']}/events", params={"stream": "true"}
    ) as response:
        for line in response.iter_lines():
            text += line + "\n"
            if line.startswith("data: ") and line != "data: [DONE]":
                arrivals.append((time.monotonic(), json.loads(line[6:])["message"]))
    validate_sse("legacy", "GET", "/fine-tunes/{fine_tune_id}/events", text)
    assert arrivals[0][1] == f"Created fine-tune: {fine_tune['id']}"
    assert arrivals[-1][1] == "Fine-tune succeeded"
    # Events arrived while the job ran, not all at once at the end.
    assert arrivals[-1][0] - arrivals[0][0] > 0.3
