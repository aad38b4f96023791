"""`steprun serve` on loopback: every route, the token, limits, runs, events, callbacks."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_spec_validator import validate
from standardwebhooks.webhooks import Webhook

from .conftest import CANARY, TOKEN, Receiver, Service

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "examples" / "data" / "support.jsonl"


def fine_tune_flow(*, job_seconds_wait: str = "2m") -> str:
    return f"""
flow: service-fine-tune
authorization: local_api
steps:
  - id: upload
    type: openai.upload_file
    config: {{file: "{DATA}", purpose: fine-tune}}
  - id: job
    type: openai.create_fine_tuning_job
    config: {{training_file: "{{{{ upload.id }}}}", model: gpt-4o-mini-2024-07-18}}
  - id: wait
    type: openai.wait_for_fine_tuning_job
    config: {{job_id: "{{{{ job.id }}}}", max_wait: {job_seconds_wait}, poll_interval: 1}}
  - id: ask
    type: openai.request_fine_tuned_model
    config:
      model: "{{{{ wait.fine_tuned_model }}}}"
      mode: chat
      prompt: How do I reset my password?
      max_tokens: 40
"""


def test_every_route_but_health_needs_the_token(service: Service) -> None:
    routes = [
        ("GET", "/openapi.json"),
        ("POST", "/v1/steps/core.set"),
        ("POST", "/v1/runs"),
        ("GET", "/v1/runs"),
        ("GET", "/v1/runs/run_x"),
        ("POST", "/v1/runs/run_x/cancel"),
        ("GET", "/v1/runs/run_x/events"),
    ]
    for token in (None, "wrong-" + TOKEN, TOKEN[:-1]):
        with service.client(token) as client:
            for method, path in routes:
                response = client.request(method, path, json={})
                assert response.status_code == 401, (token, method, path)
                assert response.headers["www-authenticate"] == "Bearer"
                assert response.json()["error"]["type"] == "unauthorized"
    with service.client(None) as client:
        assert client.get("/health").json() == {"status": "ok"}


def test_the_openapi_document_is_valid_and_has_one_operation_per_step_type(
    service: Service,
) -> None:
    with service.client() as client:
        document = client.get("/openapi.json").json()
    validate(document)  # openapi-spec-validator: raises on any problem
    assert document["openapi"].startswith("3.1")
    from steprun.runtime import Runtime

    catalog = set(Runtime(autoload=False).step_types)
    operations = {
        p.removeprefix("/v1/steps/") for p in document["paths"] if p.startswith("/v1/steps/")
    }
    assert operations == catalog
    text = json.dumps(document)
    refs = {part.split('"')[0] for part in text.split('"$ref": "')[1:]}
    assert refs and all(r.startswith("#/components/schemas/") for r in refs), refs
    create = document["paths"]["/v1/steps/openai.create_fine_tuning_job"]["post"]
    config = create["requestBody"]["content"]["application/json"]["schema"]["properties"]["config"]
    target = document["components"]["schemas"][config["$ref"].rsplit("/", 1)[-1]]
    assert "training_file" in target["properties"]


def test_one_step_over_http(service: Service) -> None:
    with service.client() as client:
        ok = client.post("/v1/steps/core.set", json={"config": {"values": {"a": 1}}})
        assert ok.status_code == 200
        assert ok.json()["status"] == "succeeded" and ok.json()["output"] == {"a": 1}
        bad = client.post("/v1/steps/core.set", json={"config": {"valuez": 1}})
        assert bad.status_code == 400 and bad.json()["status"] == "invalid"
        failed = client.post("/v1/steps/core.fail", json={"config": {"message": "stop"}})
        assert failed.status_code == 200 and failed.json()["status"] == "failed"
        jobs = client.post(
            "/v1/steps/openai.list_fine_tuning_jobs",
            json={"config": {}, "authorization": "local_api"},
        )
        assert jobs.json()["status"] == "succeeded", jobs.json()
        unknown = client.post(
            "/v1/steps/core.set", json={"config": {"value": 1}, "authorization": "nope"}
        )
        assert unknown.status_code == 400
        assert "local_api" in unknown.json()["error"]["message"]
        assert CANARY not in ok.text + bad.text + jobs.text + unknown.text


def test_malformed_and_oversized_requests_are_refused_as_json(service: Service) -> None:
    with service.client() as client:
        cases = [
            client.post("/v1/steps/core.set", content=b"{nope"),
            client.post("/v1/steps/core.set", json=[1]),
            client.post("/v1/steps/core.set", json={"config": 1}),
            client.post("/v1/steps/core.set", json={"config": {}, "extra": 1}),
            client.post("/v1/runs", json={"flow": 3}),
            client.post("/v1/runs", json={"flow": "flow: x", "callback_url": "file:///etc"}),
            client.get("/v1/runs", params={"limit": "lots"}),
        ]
        for response in cases:
            assert response.status_code == 400, response.text
            assert response.json()["error"]["message"]
        big = client.post("/v1/steps/core.set", content=b"{" + b" " * (3 * 1024 * 1024) + b"}")
        assert big.status_code == 413
        assert client.get("/v1/runs/run_nothing").status_code == 404
        assert client.get("/v1/nowhere").status_code == 404


def test_an_invalid_flow_is_refused_with_every_problem(service: Service) -> None:
    with service.client() as client:
        response = client.post(
            "/v1/runs",
            json={
                "flow": "flow: x\nsteps:\n  - id: a\n    type: core.nope\n"
                "  - id: b\n    type: core.set\n    config: {}\n"
            },
        )
    assert response.status_code == 400
    problems = response.json()["error"]["problems"]
    assert len(problems) >= 2


def test_a_run_over_http_with_live_events_and_a_signed_retried_callback(
    service: Service, receiver: Receiver
) -> None:
    receiver.fail_first = 1  # the first delivery gets a 500: the service must retry
    with service.client() as client:
        accepted = client.post(
            "/v1/runs", json={"flow": fine_tune_flow(), "callback_url": receiver.url}
        )
        assert accepted.status_code == 202, accepted.text
        run_id = accepted.json()["id"]
        events: list[tuple[str, Any]] = []
        with client.stream("GET", f"/v1/runs/{run_id}/events", timeout=120) as stream:
            assert stream.headers["content-type"].startswith("text/event-stream")
            event = None
            for line in stream.iter_lines():
                if line.startswith("event: "):
                    event = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    data = line.removeprefix("data: ")
                    events.append((event or "", json.loads(data) if event != "log" else data))
        run = service.wait_for(run_id, "succeeded", "failed")
    assert run["status"] == "succeeded", run
    assert [s["step"] for s in run["steps"]] == ["upload", "job", "wait", "ask"]
    assert run["merge_fields"]["ask"]["choices"][0]["message"]["content"]
    reports = [d for e, d in events if e == "report" and d["kind"] == "step"]
    assert [r["step"] for r in reports] == ["upload", "job", "wait", "ask"]
    assert any(e == "log" for e, _ in events)
    assert events[-1] == ("end", {"status": "succeeded"})
    assert CANARY not in json.dumps(run) + json.dumps(events)

    deadline = time.monotonic() + 30
    while len(receiver.deliveries) < 2:
        assert time.monotonic() < deadline, receiver.deliveries
        time.sleep(0.1)
    (first, _body1, status1), (second, body2, status2) = receiver.deliveries[:2]
    assert (status1, status2) == (500, 204)
    assert first["webhook-id"] == second["webhook-id"] == f"msg_{run_id}"
    payload = Webhook(service.secret).verify(body2, second)
    assert payload["type"] == "run.succeeded"
    assert payload["data"]["id"] == run_id
    with pytest.raises(Exception, match="signature"):
        Webhook(service.secret).verify(body2.replace(b"succeeded", b"failed"), second)
    time.sleep(1.5)
    assert len(receiver.deliveries) == 2  # delivered: no more attempts


def test_cancel_stops_a_waiting_run(service: Service, backend: str) -> None:
    flow = fine_tune_flow(job_seconds_wait="30s")
    origin = backend
    # Hold every job retrieve for long enough that the wait is clearly still running.
    httpx.post(
        f"{origin}/_steprun/faults",
        headers={"authorization": f"Bearer {CANARY}"},
        json={
            "faults": [
                {
                    "path": "/v1/fine_tuning/jobs/*",
                    "method": "GET",
                    "kind": "latency",
                    "seconds": 0.5,
                    "times": 1000,
                }
            ]
        },
    ).raise_for_status()
    try:
        with service.client() as client:
            run_id = client.post("/v1/runs", json={"flow": flow}).json()["id"]
            service.wait_for(run_id, "running")
            deadline = time.monotonic() + 30
            while client.get(f"/v1/runs/{run_id}").json()["current_step"] != "wait":
                assert time.monotonic() < deadline
                time.sleep(0.1)
            stopped = client.post(f"/v1/runs/{run_id}/cancel")
            assert stopped.status_code == 200, stopped.text
        run = service.wait_for(run_id, "cancelled", "failed", "succeeded")
        assert run["status"] == "cancelled"
    finally:
        httpx.delete(f"{origin}/_steprun/faults", headers={"authorization": f"Bearer {CANARY}"})
