"""/v1/files: upload, list, retrieve, content, delete, and OpenAI's upload checks."""

from __future__ import annotations

import httpx

from tests.local.conftest import EXAMPLES, FakeClock, Upload, chat_lines, error_of


def test_upload_returns_a_processed_file_object(upload: Upload, clock: FakeClock) -> None:
    file = upload(EXAMPLES / "support.jsonl")
    assert file["id"].startswith("file-")
    assert file["object"] == "file"
    assert file["filename"] == "support.jsonl"
    assert file["purpose"] == "fine-tune"
    assert file["bytes"] == (EXAMPLES / "support.jsonl").stat().st_size
    assert file["created_at"] == int(clock.now)
    assert file["status"] == "processed"


def test_content_returns_the_uploaded_bytes(api: httpx.Client, upload: Upload) -> None:
    data = chat_lines(3)
    file = upload(data)
    response = api.get(f"/v1/files/{file['id']}/content")
    assert response.status_code == 200
    assert response.content == data


def test_retrieve_and_delete(api: httpx.Client, upload: Upload) -> None:
    file = upload(chat_lines(1))
    assert api.get(f"/v1/files/{file['id']}").json() == file
    deleted = api.delete(f"/v1/files/{file['id']}")
    assert deleted.json() == {"id": file["id"], "object": "file", "deleted": True}
    gone = api.get(f"/v1/files/{file['id']}")
    assert gone.status_code == 404
    assert error_of(gone) == {
        "message": f"No such File object: {file['id']}",
        "type": "invalid_request_error",
        "param": "id",
        "code": None,
    }


def test_list_is_newest_first_and_paginates_with_after(
    api: httpx.Client, upload: Upload, clock: FakeClock
) -> None:
    ids = []
    for _ in range(3):
        ids.append(upload(chat_lines(1))["id"])
        clock.advance(1)
    first = api.get("/v1/files", params={"limit": 2}).json()
    assert [f["id"] for f in first["data"]] == [ids[2], ids[1]]
    assert (first["first_id"], first["last_id"], first["has_more"]) == (ids[2], ids[1], True)
    rest = api.get("/v1/files", params={"limit": 2, "after": first["last_id"]}).json()
    assert [f["id"] for f in rest["data"]] == [ids[0]]
    assert rest["has_more"] is False
    ascending = api.get("/v1/files", params={"order": "asc"}).json()
    assert [f["id"] for f in ascending["data"]] == ids


def test_list_filters_by_purpose(api: httpx.Client, upload: Upload) -> None:
    tuned = upload(chat_lines(1))
    upload(b"{}", filename="batch.jsonl", purpose="batch")
    listed = api.get("/v1/files", params={"purpose": "fine-tune"}).json()
    assert [f["id"] for f in listed["data"]] == [tuned["id"]]


def test_empty_list_has_null_ids(api: httpx.Client) -> None:
    listed = api.get("/v1/files").json()
    assert listed == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }


def test_batch_files_expire_after_thirty_days(upload: Upload) -> None:
    file = upload(b"{}", filename="batch.jsonl", purpose="batch")
    assert file["expires_at"] == file["created_at"] + 30 * 24 * 3600


def test_expires_after_sets_the_expiry(api: httpx.Client) -> None:
    response = api.post(
        "/v1/files",
        files={"file": ("notes.txt", b"hello")},
        data={
            "purpose": "user_data",
            "expires_after[anchor]": "created_at",
            "expires_after[seconds]": "7200",
        },
    )
    file = response.json()
    assert file["expires_at"] == file["created_at"] + 7200


def test_fine_tune_files_must_be_jsonl(api: httpx.Client) -> None:
    response = api.post(
        "/v1/files", files={"file": ("train.csv", b"a,b")}, data={"purpose": "fine-tune"}
    )
    assert response.status_code == 400
    assert error_of(response)["message"] == (
        "Invalid file format for Fine-Tuning API. Must be .jsonl"
    )


def test_fine_tune_files_must_hold_one_json_object_per_line(api: httpx.Client) -> None:
    content = b'{"messages": []}\nnot json\n'
    response = api.post(
        "/v1/files", files={"file": ("train.jsonl", content)}, data={"purpose": "fine-tune"}
    )
    assert response.status_code == 400
    assert "line 2 is not a JSON object" in error_of(response)["message"]


def test_unknown_purpose_lists_the_supported_ones(api: httpx.Client) -> None:
    response = api.post(
        "/v1/files", files={"file": ("a.jsonl", b"{}")}, data={"purpose": "training"}
    )
    assert response.status_code == 400
    error = error_of(response)
    assert error["param"] == "purpose"
    assert error["code"] == "invalid_value"
    assert error["message"].startswith("Invalid value: 'training'. Supported values are:")


def test_missing_purpose_is_named(api: httpx.Client) -> None:
    response = api.post("/v1/files", files={"file": ("a.jsonl", b"{}")})
    assert response.status_code == 400
    assert error_of(response)["message"] == "Missing required parameter: 'purpose'."


def test_upload_needs_multipart(api: httpx.Client) -> None:
    response = api.post("/v1/files", json={"purpose": "fine-tune"})
    assert response.status_code == 400
    assert "expected multipart/form-data" in error_of(response)["message"]


def test_expires_after_needs_both_anchor_and_seconds(api: httpx.Client) -> None:
    response = api.post(
        "/v1/files",
        files={"file": ("notes.txt", b"hello")},
        data={"purpose": "user_data", "expires_after[anchor]": "created_at"},
    )
    assert response.status_code == 400
    assert error_of(response)["message"] == ("Missing required parameter: 'expires_after.seconds'.")


def test_list_limit_is_range_checked(api: httpx.Client) -> None:
    response = api.get("/v1/files", params={"limit": 0})
    assert response.status_code == 400
    assert error_of(response)["code"] == "integer_below_min_value"
    typed = api.get("/v1/files", params={"limit": "ten"})
    assert error_of(typed)["code"] == "invalid_type"
