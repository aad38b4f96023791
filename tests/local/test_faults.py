"""Fault injection and the control API, over real HTTP and in-process."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from steprun.runtime.local import InjectedDisconnect, LocalBackend
from tests.contract import validate_sse
from tests.local.conftest import (
    JOB_SECONDS,
    CreateJob,
    FakeClock,
    Upload,
    chat_lines,
    check_response,
    error_of,
)

JOBS = "/v1/fine_tuning/jobs"


def arm(client: httpx.Client, **fault: Any) -> dict[str, Any]:
    response = client.post("/_steprun/faults", json=fault)
    assert response.status_code == 200, response.text
    [armed] = response.json()["data"]
    return dict(armed)


def ledger(client: httpx.Client) -> dict[str, Any]:
    return dict(client.get("/_steprun/ledger").json())


def job_body(upload: Upload) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "training_file": upload(chat_lines(12))["id"]}


# --- control API -----------------------------------------------------------------------------


def test_faults_are_armed_listed_and_cleared(api: httpx.Client) -> None:
    armed = arm(api, kind="status", status=500, path="/v1/models", times=2)
    assert armed["id"].startswith("fault_")
    assert (armed["kind"], armed["times"], armed["hits"]) == ("status", 2, 0)
    several = api.post(
        "/_steprun/faults",
        json={"faults": [{"kind": "latency", "seconds": 0.01}, {"kind": "malformed"}]},
    )
    assert [f["kind"] for f in several.json()["data"]] == ["latency", "malformed"]
    assert len(api.get("/_steprun/faults").json()["data"]) == 3
    api.delete("/_steprun/faults")
    assert api.get("/_steprun/faults").json()["data"] == []


@pytest.mark.parametrize(
    ("fault", "message"),
    [
        ({"kind": "explode"}, "'kind' must be one of"),
        ({"kind": "status", "status": 200}, "'status' must be an error status"),
        ({"kind": "status", "times": 0}, "'times' must be a positive integer"),
        ({"kind": "latency", "seconds": "long"}, "'seconds' must be a number of seconds"),
        ({"kind": "job_failure", "at": "later"}, "'at' must be one of"),
        ({"kind": "status", "colour": "red"}, "unknown field(s) colour"),
    ],
)
def test_invalid_faults_are_refused_with_a_reason(
    api: httpx.Client, fault: dict[str, Any], message: str
) -> None:
    response = api.post("/_steprun/faults", json=fault)
    assert response.status_code == 400
    assert message in error_of(response)["message"]
    assert api.get("/_steprun/faults").json()["data"] == []


def test_backend_arms_faults_given_at_construction() -> None:
    backend = LocalBackend(faults=[{"kind": "status", "status": 503}])
    assert [f["status"] for f in backend.ctx.faults.views()] == [503]
    with pytest.raises(ValueError, match="'kind' must be one of"):
        backend.add_fault({"kind": "nope"})


# --- status faults ----------------------------------------------------------------------------


def test_rate_limit_with_retry_after_then_the_request_passes(
    api: httpx.Client, upload: Upload
) -> None:
    body = job_body(upload)
    arm(api, kind="status", status=429, retry_after=1, path=JOBS, method="POST")
    limited = api.post(JOBS, json=body)
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "1"
    error = error_of(limited)
    assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")
    assert "Please try again in 1s" in error["message"]
    assert "x-request-id" in limited.headers
    # Refused before processing: no job was created.
    assert ledger(api)["jobs"] == []
    assert api.post(JOBS, json=body).status_code == 200
    assert len(ledger(api)["jobs"]) == 1


def test_retry_after_ms_and_should_retry_headers(api: httpx.Client) -> None:
    arm(api, kind="status", status=429, retry_after_ms=250, should_retry=False)
    response = api.get("/v1/models")
    assert response.headers["retry-after-ms"] == "250"
    assert response.headers["x-should-retry"] == "false"
    assert "retry-after" not in response.headers


def test_insufficient_quota(api: httpx.Client) -> None:
    arm(api, kind="status", status=429, code="insufficient_quota")
    error = error_of(api.get("/v1/models"))
    assert (error["type"], error["code"]) == ("insufficient_quota", "insufficient_quota")
    assert error["message"].startswith("You exceeded your current quota")


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (500, "The server had an error while processing your request. Sorry about that!"),
        (503, "The server is overloaded or not ready yet."),
    ],
)
def test_server_errors(api: httpx.Client, status: int, message: str) -> None:
    arm(api, kind="status", status=status, times=2)
    responses = [api.get("/v1/models") for _ in range(3)]
    assert [r.status_code for r in responses] == [status, status, 200]
    assert error_of(responses[0]) == {
        "message": message,
        "type": "server_error",
        "param": None,
        "code": None,
    }


def test_fault_matches_method_and_path_pattern_and_can_last(api: httpx.Client) -> None:
    arm(api, kind="status", status=503, path="/v1/fine_tuning/jobs/*", method="GET", times=None)
    assert api.get("/v1/models").status_code == 200
    assert api.post("/v1/fine_tuning/jobs/ftjob-x/cancel").status_code == 404
    assert [api.get("/v1/fine_tuning/jobs/ftjob-x").status_code for _ in range(3)] == [503] * 3
    assert api.get("/_steprun/faults").json()["data"][0]["hits"] == 3


def test_message_type_and_code_can_be_overridden(api: httpx.Client) -> None:
    arm(api, kind="status", status=409, message="Busy.", type="conflict", code="busy", param="x")
    assert error_of(api.get("/v1/models")) == {
        "message": "Busy.",
        "type": "conflict",
        "param": "x",
        "code": "busy",
    }


def test_latency_delays_the_answer(api: httpx.Client) -> None:
    arm(api, kind="latency", seconds=0.3)
    started = time.monotonic()
    assert api.get("/v1/models").status_code == 200
    assert time.monotonic() - started >= 0.3


# --- broken connections -----------------------------------------------------------------------


def test_drop_after_processing_creates_the_job_but_the_client_never_hears(
    raw: httpx.Client, upload: Upload
) -> None:
    body = job_body(upload)
    arm(raw, kind="drop", path=JOBS, method="POST")
    with pytest.raises(httpx.RemoteProtocolError):
        raw.post(JOBS, json=body)
    record = ledger(raw)
    assert record["create_requests"][JOBS] == 1
    [job] = record["jobs"]
    retrieved = raw.get(f"{JOBS}/{job['id']}")
    check_response(retrieved)
    assert retrieved.json()["status"] == "validating_files"


@pytest.mark.anyio
async def test_drop_in_process_is_an_httpx_protocol_error(
    inproc: httpx.AsyncClient, backend: LocalBackend
) -> None:
    backend.add_fault({"kind": "drop", "path": "/v1/models"})
    with pytest.raises(httpx.RemoteProtocolError) as caught:
        await inproc.get("/v1/models")
    assert isinstance(caught.value, InjectedDisconnect)
    assert caught.value.request.url.path == "/v1/models"
    assert (await inproc.get("/v1/models")).status_code == 200


def chat_stream_body() -> dict[str, Any]:
    return {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "who are you"}],
        "stream": True,
    }


def test_cut_stream_ends_without_done(raw: httpx.Client) -> None:
    arm(raw, kind="cut_stream", after_chunks=3, path="/v1/chat/completions")
    received = []
    with (
        pytest.raises(httpx.RemoteProtocolError),
        raw.stream("POST", "/v1/chat/completions", json=chat_stream_body()) as response,
    ):
        for line in response.iter_lines():
            if line:
                received.append(line)
    assert len(received) == 3
    assert "data: [DONE]" not in received
    assert json.loads(received[0][6:])["object"] == "chat.completion.chunk"
    whole = raw.post("/v1/chat/completions", json=chat_stream_body())
    validate_sse("current", "POST", "/chat/completions", whole.text)


@pytest.mark.anyio
async def test_cut_stream_in_process(inproc: httpx.AsyncClient, backend: LocalBackend) -> None:
    backend.add_fault({"kind": "cut_stream", "after_chunks": 1})
    with pytest.raises(InjectedDisconnect):
        await inproc.post("/v1/chat/completions", json=chat_stream_body())


def test_malformed_answers_a_json_body_cut_in_half(raw: httpx.Client, upload: Upload) -> None:
    body = job_body(upload)
    arm(raw, kind="malformed", path=JOBS, method="POST")
    response = raw.post(JOBS, json=body)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        response.json()
    assert response.text.startswith('{"object":"fine_tuning.job"')
    assert len(ledger(raw)["jobs"]) == 1


# --- jobs that fail --------------------------------------------------------------------------


def test_job_failure_fails_the_next_job_with_the_given_error(
    api: httpx.Client, create_job: CreateJob, clock: FakeClock
) -> None:
    error = {
        "code": "invalid_training_file",
        "message": "The file is broken.",
        "param": "training_file",
    }
    arm(api, kind="job_failure", error=error)
    failing = create_job()
    passing = create_job()
    clock.advance(JOB_SECONDS * 0.5)
    assert api.get(f"{JOBS}/{failing['id']}").json()["status"] == "running"
    clock.advance(JOB_SECONDS * 0.6)
    failed = api.get(f"{JOBS}/{failing['id']}").json()
    assert failed["status"] == "failed"
    assert failed["error"] == error
    assert failed["fine_tuned_model"] is None
    assert failed["finished_at"] == int(failed["created_at"] + JOB_SECONDS * 0.55)
    newest = api.get(f"{JOBS}/{failing['id']}/events", params={"limit": 1}).json()["data"][0]
    assert (newest["level"], newest["message"]) == ("error", "The file is broken.")
    assert api.get(f"{JOBS}/{passing['id']}").json()["status"] == "succeeded"


def test_job_failure_while_validating_files(
    api: httpx.Client, create_job: CreateJob, clock: FakeClock
) -> None:
    arm(api, kind="job_failure", at="validating_files")
    job = create_job()
    clock.advance(JOB_SECONDS * 0.06)
    failed = api.get(f"{JOBS}/{job['id']}").json()
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == "internal_error"
    assert api.get(f"{JOBS}/{job['id']}/checkpoints").json()["data"] == []


def test_legacy_fine_tune_can_fail_too(api: httpx.Client, upload: Upload, clock: FakeClock) -> None:
    lines = b"".join(
        json.dumps({"prompt": f"q{i}", "completion": f" a{i}"}).encode() + b"\n" for i in range(10)
    )
    arm(api, kind="job_failure", path="/v1/fine-tunes", error={"message": "Out of capacity."})
    fine_tune = api.post("/v1/fine-tunes", json={"training_file": upload(lines)["id"]}).json()
    clock.advance(JOB_SECONDS)
    done = api.get(f"/v1/fine-tunes/{fine_tune['id']}").json()
    assert done["status"] == "failed"
    assert [e["message"] for e in done["events"][-2:]] == ["Out of capacity.", "Fine-tune failed"]


# --- ledger ------------------------------------------------------------------------------------


def test_ledger_counts_every_create_request_and_every_job(
    api: httpx.Client, upload: Upload
) -> None:
    body = job_body(upload)
    arm(api, kind="status", status=500, path=JOBS, method="POST")
    assert api.post(JOBS, json=body).status_code == 500
    assert api.post(JOBS, json={"model": "gpt-4o-mini"}).status_code == 400
    created = api.post(JOBS, json={**body, "metadata": {"run": "r1"}})
    record = ledger(api)
    assert record["create_requests"] == {JOBS: 3, "/v1/fine-tunes": 0}
    [job] = record["jobs"]
    assert job["id"] == created.json()["id"]
    assert job["request_id"] == created.headers["x-request-id"]
    assert (job["api"], job["metadata"], job["status"]) == (
        "fine_tuning",
        {"run": "r1"},
        "validating_files",
    )
