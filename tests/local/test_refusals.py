"""What the backend refuses, and how: always a 400 (or 401) in OpenAI's error shape,
never a 404, a 500 or a traceback; and a refused request costs nothing."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from steprun.runtime.local import LocalBackend
from tests.local.conftest import Mount, chat_lines, check_response, error_of

KEY = "sk-steprun-test-0123456789abcdefghijklmnop"


def _invalid_request(response: httpx.Response) -> dict[str, object]:
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["type"] == "invalid_request_error"
    assert set(error) == {"message", "type", "param", "code"}
    return error


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("multipart/form-data", b"no boundary was given"),
        (
            "multipart/form-data; boundary=xyz",
            b"--xyz\r\nContent-Type: text/plain\r\n\r\nno disposition\r\n--xyz--\r\n",
        ),
    ],
)
def test_a_malformed_multipart_body_is_a_400(
    api: httpx.Client, content_type: str, body: bytes
) -> None:
    response = api.post("/v1/files", content=body, headers={"content-type": content_type})
    assert "Could not parse the request body" in str(_invalid_request(response)["message"])


def test_more_than_a_thousand_form_fields_is_a_400(api: httpx.Client) -> None:
    fields = {f"field{i}": "x" for i in range(1001)}
    response = api.post(
        "/v1/files",
        files={"file": ("t.jsonl", chat_lines(1))},
        data={"purpose": "fine-tune", **fields},
    )
    assert "Too many fields" in str(_invalid_request(response)["message"])


@pytest.mark.parametrize("depth", [65, 100_000])
def test_deeply_nested_json_is_a_400(api: httpx.Client, depth: int) -> None:
    body = '{"model": "gpt-4o-mini", "metadata": ' + "[" * depth + "]" * depth + "}"
    response = api.post(
        "/v1/fine_tuning/jobs", content=body, headers={"content-type": "application/json"}
    )
    assert "nested more than 64 levels" in str(_invalid_request(response)["message"])


def test_json_nested_within_the_limit_is_checked_as_usual(api: httpx.Client) -> None:
    body = {"model": "gpt-4o-mini", "training_file": "file-x", "metadata": {"a": [[["deep"]]]}}
    response = api.post("/v1/fine_tuning/jobs", json=body)
    assert "nested" not in str(_invalid_request(response)["message"])


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "latency", "seconds": 1e308},
        {"kind": "latency", "seconds": -1},
        {"kind": "status", "status": 429, "retry_after": 1e308},
    ],
)
def test_absurd_fault_durations_are_a_400(api: httpx.Client, fault: dict[str, object]) -> None:
    response = api.post(
        "/_steprun/faults", content=json.dumps(fault), headers={"content-type": "application/json"}
    )
    assert "must be between 0 and" in str(_invalid_request(response)["message"])
    assert api.get("/_steprun/faults").json()["data"] == []


# --- upload size ----------------------------------------------------------------------------


@pytest.fixture
def small(mount: Mount, server_url: str) -> Iterator[tuple[httpx.Client, LocalBackend]]:
    backend = LocalBackend(max_upload_bytes=4096)
    mount.app = backend.app
    with httpx.Client(
        base_url=server_url, timeout=10, event_hooks={"response": [check_response]}
    ) as client:
        yield client, backend
    mount.app = None


def _leftovers(backend: LocalBackend) -> list[Path]:
    return list((backend.ctx.store.root / "files").iterdir())


def test_an_upload_over_the_limit_is_refused_and_leaves_nothing(
    small: tuple[httpx.Client, LocalBackend],
) -> None:
    client, backend = small
    content = chat_lines(40)
    assert len(content) > 4096
    response = client.post(
        "/v1/files", files={"file": ("t.jsonl", content)}, data={"purpose": "fine-tune"}
    )
    error = _invalid_request(response)
    assert (error["code"], error["param"]) == ("file_too_large", "file")
    assert "4,096 bytes" in str(error["message"])
    assert client.get("/v1/files").json()["data"] == []
    assert _leftovers(backend) == []


def test_an_upload_without_content_length_is_bounded_too(
    small: tuple[httpx.Client, LocalBackend],
) -> None:
    client, backend = small
    boundary = "b0undary"
    parts = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nfine-tune\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="t.jsonl"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()

    def chunked() -> Iterator[bytes]:  # no Content-Length: the body's size is unknown
        yield parts
        for _ in range(200):
            yield chat_lines(4)
        yield f"\r\n--{boundary}--\r\n".encode()

    response = client.post(
        "/v1/files",
        content=chunked(),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    assert _invalid_request(response)["code"] == "file_too_large"
    assert _leftovers(backend) == []


def test_an_upload_within_the_limit_is_kept(small: tuple[httpx.Client, LocalBackend]) -> None:
    client, backend = small
    content = chat_lines(10)
    assert len(content) <= 4096
    file = client.post(
        "/v1/files", files={"file": ("t.jsonl", content)}, data={"purpose": "fine-tune"}
    ).json()
    assert file["bytes"] == len(content)
    assert client.get(f"/v1/files/{file['id']}/content").content == content
    assert [p.name for p in _leftovers(backend)] == [file["id"]]


def test_the_upload_limit_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_upload_bytes must be a positive number"):
        LocalBackend(max_upload_bytes=0)


# --- the API key -----------------------------------------------------------------------------


def test_requests_refused_for_their_key_are_neither_counted_nor_rate_limited(
    mount: Mount, server_url: str
) -> None:
    mount.app = LocalBackend(api_key=KEY).app
    good = {"authorization": f"Bearer {KEY}"}
    with httpx.Client(base_url=server_url, timeout=10) as client:
        first = client.get("/v1/models", headers=good)
        for headers in ({}, {"authorization": "Bearer sk-wrong-0000000000000000000000"}):
            for _ in range(3):
                refused = client.post("/v1/fine_tuning/jobs", json={}, headers=headers)
                assert refused.status_code == 401
        ledger = client.get("/_steprun/ledger", headers=good).json()
        second = client.get("/v1/models", headers=good)
    mount.app = None
    assert ledger["create_requests"]["/v1/fine_tuning/jobs"] == 0
    remaining = [int(r.headers["x-ratelimit-remaining-requests"]) for r in (first, second)]
    assert remaining[1] == remaining[0] - 1
