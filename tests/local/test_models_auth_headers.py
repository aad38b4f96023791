"""Models, the API key, OpenAI's response headers, and errors for what is not there."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from steprun.runtime.local import LocalBackend
from tests.local.conftest import Mount, check_response, error_of

KEY = "sk-steprun-test-0123456789abcdefghijklmnop"


# --- models ------------------------------------------------------------------------------------


def test_models_list_holds_base_models(api: httpx.Client) -> None:
    listed = api.get("/v1/models").json()
    ids = {m["id"] for m in listed["data"]}
    assert {"gpt-4o-mini-2024-07-18", "babbage-002", "davinci-002", "curie"} <= ids
    assert all(m["object"] == "model" for m in listed["data"])


def test_retrieve_a_base_model(api: httpx.Client) -> None:
    model = api.get("/v1/models/gpt-4o-mini").json()
    assert (model["id"], model["object"], model["owned_by"]) == ("gpt-4o-mini", "model", "system")


def test_retrieve_delete_a_fine_tuned_model(
    api: httpx.Client, finished_job: dict[str, Any]
) -> None:
    name = finished_job["fine_tuned_model"]
    model = api.get(f"/v1/models/{name}").json()
    assert (model["id"], model["owned_by"]) == (name, "org-steprun-local")
    deleted = api.delete(f"/v1/models/{name}")
    assert deleted.json() == {"id": name, "object": "model", "deleted": True}
    assert name not in {m["id"] for m in api.get("/v1/models").json()["data"]}
    for response in (
        api.get(f"/v1/models/{name}"),
        api.delete(f"/v1/models/{name}"),
        api.post(
            "/v1/chat/completions",
            json={"model": name, "messages": [{"role": "user", "content": "hi"}]},
        ),
    ):
        assert response.status_code == 404
        assert error_of(response)["code"] == "model_not_found"


def test_base_models_cannot_be_deleted(api: httpx.Client) -> None:
    response = api.delete("/v1/models/gpt-4o-mini")
    assert response.status_code == 403
    assert "only fine-tuned models" in error_of(response)["message"]


# --- headers and generic errors ---------------------------------------------------------------


def test_every_response_has_a_request_id_and_rate_limit_headers(api: httpx.Client) -> None:
    for response in (api.get("/v1/models"), api.get("/v1/files/file-missing")):
        assert re.fullmatch(r"req_[0-9a-f]{32}", response.headers["x-request-id"])
        assert response.headers["openai-version"] == "2020-10-01"
        assert response.headers["openai-organization"] == "steprun-local"
        assert int(response.headers["openai-processing-ms"]) >= 0
        for kind in ("requests", "tokens"):
            assert int(response.headers[f"x-ratelimit-limit-{kind}"]) > 0
            assert int(response.headers[f"x-ratelimit-remaining-{kind}"]) >= 0
            assert re.fullmatch(
                r"\d+(ms|(\.\d+)?s|m\d+s)", response.headers[f"x-ratelimit-reset-{kind}"]
            )


def test_request_ids_differ_and_remaining_requests_count_down(api: httpx.Client) -> None:
    first, second = api.get("/v1/models"), api.get("/v1/models")
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    remaining = [int(r.headers["x-ratelimit-remaining-requests"]) for r in (first, second)]
    assert remaining[1] == remaining[0] - 1


def test_completions_spend_rate_limit_tokens(api: httpx.Client) -> None:
    before = api.get("/v1/models")
    body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}
    after = api.post("/v1/chat/completions", json=body)
    spent = int(before.headers["x-ratelimit-remaining-tokens"]) - int(
        after.headers["x-ratelimit-remaining-tokens"]
    )
    assert spent == after.json()["usage"]["total_tokens"]


def test_unknown_path_and_method_answer_invalid_url(api: httpx.Client) -> None:
    for response, line in (
        (api.get("/v1/nothing"), "GET /v1/nothing"),
        (api.put("/v1/files"), "PUT /v1/files"),
    ):
        assert response.status_code == 404
        assert error_of(response)["message"] == f"Invalid URL ({line})"
        assert "x-request-id" in response.headers


# --- API key -----------------------------------------------------------------------------------


@pytest.fixture
def guarded(mount: Mount, server_url: str) -> Iterator[httpx.Client]:
    mount.app = LocalBackend(api_key=KEY).app
    with httpx.Client(
        base_url=server_url, timeout=10, event_hooks={"response": [check_response]}
    ) as client:
        yield client
    mount.app = None


def test_missing_key_gets_openais_401(guarded: httpx.Client) -> None:
    response = guarded.get("/v1/models")
    assert response.status_code == 401
    error = error_of(response)
    assert error["message"].startswith("You didn't provide an API key.")
    assert (error["type"], error["code"]) == ("invalid_request_error", None)
    assert "x-request-id" in response.headers


def test_wrong_key_is_masked_in_the_401(guarded: httpx.Client) -> None:
    wrong = "sk-proj-WRONGkey0123456789abcdefghijklmnopqrstuvwxyz"
    response = guarded.get("/v1/models", headers={"authorization": f"Bearer {wrong}"})
    assert response.status_code == 401
    error = error_of(response)
    assert error["code"] == "invalid_api_key"
    masked = "sk-proj-" + "*" * (len(wrong) - 12) + wrong[-4:]
    assert error["message"] == (
        f"Incorrect API key provided: {masked}. You can find your API key at "
        "https://platform.openai.com/account/api-keys."
    )
    assert "WRONGkey" not in response.text


def test_short_wrong_key_is_never_shown_whole(guarded: httpx.Client) -> None:
    response = guarded.get("/v1/models", headers={"authorization": "Bearer hunter2"})
    assert "hunter2" not in response.text
    assert "Incorrect API key provided: " in error_of(response)["message"]


def test_right_key_is_let_in_for_the_api_and_the_control_endpoints(
    guarded: httpx.Client,
) -> None:
    headers = {"authorization": f"Bearer {KEY}"}
    assert guarded.get("/v1/models", headers=headers).status_code == 200
    assert guarded.get("/_steprun/ledger", headers=headers).status_code == 200
    assert guarded.get("/_steprun/ledger").status_code == 401
