"""openai.upload_file against the embedded backend: uploads, the check, and never twice."""

from __future__ import annotations

import json
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from steprun.runtime.authorizations import LOCAL_BASE_URL
from steprun.runtime.errors import StepError
from steprun.runtime.local import LocalBackend
from steprun.runtime.schemas import SchemaRegistry
from steprun.steps.openai.files import PURPOSES, STEP_TYPES, UPLOAD_FILE, form_fields
from tests.contract import spec_document, validate_request, validate_response

from .conftest import CANARY_KEY, Harness, MakeContext
from .localbackend import mounted, served

pytestmark = pytest.mark.anyio

ROOT = Path(__file__).resolve().parents[3]
EXAMPLES = ROOT / "examples" / "data"
# Loaded and validated the engine's way: shared definitions resolve through its registry.
SCHEMAS = SchemaRegistry()
SCHEMA = SCHEMAS.builtin("openai.upload_file.schema.json") or {}
VALIDATOR = SCHEMAS.validator(SCHEMA)


def chat_file(path: Path, count: int = 12) -> Path:
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"What is code word {i}?"},
                {"role": "assistant", "content": f"Code word {i} is word{i}."},
            ]
        }
        for i in range(count)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


@pytest.fixture
def backend() -> LocalBackend:
    # The real clock: the step compares the server's created_at with its own start time.
    return LocalBackend(job_seconds=1)


@pytest.fixture
async def local_http(backend: LocalBackend) -> AsyncIterator[httpx.AsyncClient]:
    async with mounted(backend) as client:
        yield client


@pytest.fixture
def local(make_context: MakeContext, local_http: httpx.AsyncClient, tmp_path: Path) -> Any:
    """``local(**options)``: a harness whose context talks to the in-process backend."""

    def make(**options: Any) -> Harness:
        harness = make_context(
            LOCAL_BASE_URL,
            provider="local",
            api_key=None,
            client=local_http,
            step_id="upload",
            **options,
        )
        harness.context.base_dir = tmp_path
        return harness

    return make


async def listed(http: httpx.AsyncClient, base_url: str = LOCAL_BASE_URL) -> list[dict[str, Any]]:
    response = await http.get(base_url + "/files")
    validate_response("current", "GET", "/files", response.status_code, response.json())
    data: list[dict[str, Any]] = response.json()["data"]
    return data


# --- uploads -------------------------------------------------------------------------------


async def test_uploads_a_checked_training_file_and_returns_the_file_object(
    local: Any, local_http: httpx.AsyncClient, tmp_path: Path
) -> None:
    (tmp_path / "data").mkdir()
    source = EXAMPLES / "support.jsonl"
    (tmp_path / "data" / "support.jsonl").write_bytes(source.read_bytes())
    harness = local()
    output = await UPLOAD_FILE.run(
        {"file": "data/support.jsonl", "purpose": "fine-tune"}, harness.context
    )
    validate_response("current", "POST", "/files", 200, output)
    # The user's name first, then this execution's tag, then the extension.
    assert re.fullmatch(r"support\.steprun-[0-9a-f]{16}\.jsonl", output["filename"])
    assert output["bytes"] == source.stat().st_size
    assert output["purpose"] == "fine-tune"
    content = await local_http.get(f"{LOCAL_BASE_URL}/files/{output['id']}/content")
    assert content.content == source.read_bytes()
    info = harness.lines("info")
    assert any("36 chat examples checked" in line for line in info)
    assert any(
        line.startswith(f"uploading support.jsonl as {output['filename']} (")
        and "for fine-tune" in line
        for line in info
    )
    assert info[-1].startswith(f"uploaded support.jsonl as {output['id']}")
    # It recorded the tagged name before sending, for a resumed run to find this upload.
    assert harness.checkpoints[-1]["filename"] == output["filename"]
    assert harness.checkpoints[-1]["bytes"] == source.stat().st_size


async def test_a_file_that_fails_the_check_is_not_uploaded(
    local: Any, local_http: httpx.AsyncClient, tmp_path: Path
) -> None:
    path = chat_file(tmp_path / "train.jsonl")
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"messages": [{"role": "user", "content": "no answer"}]}\n')
    harness = local()
    with pytest.raises(StepError) as caught:
        await UPLOAD_FILE.run({"file": "train.jsonl", "purpose": "fine-tune"}, harness.context)
    error = caught.value.to_dict()
    assert error["type"] == "invalid_training_data"
    assert error["problems"] == [
        {
            "line": 13,
            "message": "messages: has no assistant message: each example needs at least one",
        }
    ]
    assert "set check: false" in error["message"]
    assert await listed(local_http) == []


async def test_a_fine_tune_file_not_named_jsonl_is_refused_before_the_upload(
    local: Any, local_http: httpx.AsyncClient, tmp_path: Path
) -> None:
    chat_file(tmp_path / "train.txt")
    with pytest.raises(StepError) as caught:
        await UPLOAD_FILE.run({"file": "train.txt", "purpose": "fine-tune"}, local().context)
    assert caught.value.code == "invalid_file_name"
    assert await listed(local_http) == []
    # Named .jsonl on the server, it goes through.
    output = await UPLOAD_FILE.run(
        {"file": "train.txt", "purpose": "fine-tune", "filename": "train.jsonl"}, local().context
    )
    assert output["filename"].startswith("train.steprun-")


async def test_check_false_uploads_what_the_check_would_refuse(
    local: Any, local_http: httpx.AsyncClient, tmp_path: Path
) -> None:
    chat_file(tmp_path / "small.jsonl", count=3)  # too few examples for a training file
    output = await UPLOAD_FILE.run(
        {"file": "small.jsonl", "purpose": "fine-tune", "check": False}, local().context
    )
    assert [f["id"] for f in await listed(local_http)] == [output["id"]]


async def test_a_validation_file_passes_with_a_lower_minimum(local: Any, tmp_path: Path) -> None:
    chat_file(tmp_path / "valid.jsonl", count=3)
    output = await UPLOAD_FILE.run(
        {"file": "valid.jsonl", "purpose": "fine-tune", "min_examples": 1}, local().context
    )
    assert output["bytes"] == (tmp_path / "valid.jsonl").stat().st_size


async def test_other_purposes_are_not_checked_and_expiry_is_sent(
    local: Any, tmp_path: Path
) -> None:
    (tmp_path / "batch.jsonl").write_text('{"custom_id": "1"}\n', encoding="utf-8")
    output = await UPLOAD_FILE.run(
        {
            "file": "batch.jsonl",
            "purpose": "batch",
            "filename": "requests.jsonl",
            "expires_after": {"anchor": "created_at", "seconds": 7200},
        },
        local().context,
    )
    assert output["filename"].startswith("requests.steprun-")
    assert output["expires_at"] == output["created_at"] + 7200


async def test_raw_result_has_status_headers_and_body(local: Any, tmp_path: Path) -> None:
    chat_file(tmp_path / "train.jsonl")
    output = await UPLOAD_FILE.run(
        {"file": "train.jsonl", "purpose": "fine-tune", "result_format": "raw"}, local().context
    )
    assert output["status"] == 200
    assert output["headers"]["x-request-id"]
    assert output["body"]["object"] == "file"


async def test_a_missing_file_is_an_error_before_any_request(
    local: Any, local_http: httpx.AsyncClient
) -> None:
    with pytest.raises(StepError) as caught:
        await UPLOAD_FILE.run({"file": "nope.jsonl", "purpose": "fine-tune"}, local().context)
    assert caught.value.code == "file_not_found"
    assert await listed(local_http) == []


@pytest.mark.parametrize(
    "config",
    [
        {"file": "x.jsonl", "purpose": "fine-tune"},
        {
            "file": "x.jsonl",
            "purpose": "batch",
            "expires_after": {"anchor": "created_at", "seconds": 3600},
        },
        {"file": "x.jsonl", "purpose": "user_data", "expires_after": {"seconds": 2592000}},
        *({"file": "x", "purpose": purpose} for purpose in PURPOSES),
    ],
)
def test_form_fields_match_the_multipart_request_schema(config: dict[str, Any]) -> None:
    assert not list(VALIDATOR.iter_errors(config))
    fields: dict[str, Any] = form_fields(config)
    # Multipart is flat: the SDK (and we) write the nested object as expires_after[key].
    body: dict[str, Any] = {"file": b"...", "purpose": fields.pop("purpose")}
    if fields:
        body["expires_after"] = {
            "anchor": fields.pop("expires_after[anchor]"),
            "seconds": int(fields.pop("expires_after[seconds]")),
        }
    assert not fields
    validate_request("current", "POST", "/files", body, content_type="multipart/form-data")


def test_every_purpose_of_the_current_spec_is_offered() -> None:
    spec_purposes = spec_document("current")["components"]["schemas"]["CreateFileRequest"][
        "properties"
    ]["purpose"]["enum"]
    assert sorted(PURPOSES) == sorted(spec_purposes)
    assert sorted(SCHEMA["properties"]["purpose"]["enum"]) == sorted(spec_purposes)


# --- never twice ---------------------------------------------------------------------------


async def test_a_resumed_upload_adopts_the_file_its_interrupted_attempt_uploaded(
    local: Any, local_http: httpx.AsyncClient, tmp_path: Path
) -> None:
    chat_file(tmp_path / "train.jsonl")
    crashed = local()
    first = await UPLOAD_FILE.run({"file": "train.jsonl", "purpose": "fine-tune"}, crashed.context)
    # The run died before recording the result; resumed, the step finds that upload.
    harness = local(resumed=True, saved=crashed.checkpoints[-1])
    output = await UPLOAD_FILE.run(
        {"file": "train.jsonl", "purpose": "fine-tune", "result_format": "raw"}, harness.context
    )
    assert output["body"] == first
    assert output["status"] == 200
    assert [f["id"] for f in await listed(local_http)] == [first["id"]]
    assert any(f"adopting {first['id']}" in line for line in harness.lines("info"))


async def test_a_resumed_upload_ignores_files_that_are_not_its_own(
    local: Any, local_http: httpx.AsyncClient, tmp_path: Path
) -> None:
    chat_file(tmp_path / "train.jsonl")
    chat_file(tmp_path / "other.jsonl", count=13)  # different size
    other = await UPLOAD_FILE.run({"file": "other.jsonl", "purpose": "fine-tune"}, local().context)
    old = await UPLOAD_FILE.run({"file": "train.jsonl", "purpose": "fine-tune"}, local().context)
    # Same name and size, but uploaded long before this attempt started: not its own.
    harness = local(resumed=True, saved={"started_at": int(time.time()) + 3600})
    output = await UPLOAD_FILE.run(
        {"file": "train.jsonl", "purpose": "fine-tune", "filename": "other.jsonl"},
        harness.context,
    )
    assert output["id"] not in (other["id"], old["id"])
    assert len(await listed(local_http)) == 3


async def test_an_upload_whose_answer_is_lost_is_adopted_not_repeated(
    make_context: MakeContext, tmp_path: Path
) -> None:
    # A real socket: the backend stores the file, then breaks the connection mid-answer.
    backend = LocalBackend(
        job_seconds=1,
        api_key=CANARY_KEY,
        faults=[{"kind": "drop", "method": "POST", "path": "/v1/files", "times": 1}],
    )
    chat_file(tmp_path / "train.jsonl")
    with served(backend.app) as origin:
        async with httpx.AsyncClient() as http:
            harness = make_context(origin + "/v1", client=http, step_id="upload")
            harness.context.base_dir = tmp_path
            output = await UPLOAD_FILE.run(
                {"file": "train.jsonl", "purpose": "fine-tune"}, harness.context
            )
            files = (
                await http.get(
                    origin + "/v1/files", headers={"Authorization": f"Bearer {CANARY_KEY}"}
                )
            ).json()["data"]
    assert [f["id"] for f in files] == [output["id"]]
    assert any(
        "this execution uploaded it although no answer said so" in line
        for line in harness.lines("info")
    )
    assert harness.sleeps == []  # adopted at once, nothing re-sent
    assert CANARY_KEY not in harness.log_text()


async def test_an_upload_refused_with_a_5xx_is_never_sent_again_and_names_its_file(
    local: Any, backend: LocalBackend, local_http: httpx.AsyncClient, tmp_path: Path
) -> None:
    # A 503 that stored nothing: no file shows within the settle window (its sleeps are
    # recorded, not slept), and the step says what to look for instead of re-sending.
    backend.add_fault(
        {"kind": "status", "status": 503, "method": "POST", "path": "/v1/files", "times": 1}
    )
    chat_file(tmp_path / "train.jsonl")
    harness = local()
    with pytest.raises(StepError) as caught:
        await UPLOAD_FILE.run({"file": "train.jsonl", "purpose": "fine-tune"}, harness.context)
    error = caught.value.to_dict()
    assert error["type"] == "outcome_unknown" and error["status"] == 503
    name = harness.checkpoints[-1]["filename"]
    assert error["look_for"] == {"filename": name, "bytes": 1530, "purpose": "fine-tune"}
    assert f"a fine-tune file named {name} (1530 bytes) did not appear" in error["message"]
    assert await listed(local_http) == []


async def test_a_resumed_upload_never_adopts_another_runs_file_of_the_same_name_and_size(
    local: Any, local_http: httpx.AsyncClient, tmp_path: Path
) -> None:
    # Issue #8: runs A and B upload a/train.jsonl and b/train.jsonl, same size, different
    # bytes. B's first attempt never got its file to the server (refused, then killed);
    # resumed, B used to adopt A's file, matched on name, size, purpose and time.
    for run, word in (("a", "alpha"), ("b", "bravo")):
        (tmp_path / run).mkdir()
        chat_file(tmp_path / run / "train.jsonl")
        text = (tmp_path / run / "train.jsonl").read_text().replace("word", word[:4])
        (tmp_path / run / "train.jsonl").write_text(text)
    a_bytes, b_bytes = ((tmp_path / r / "train.jsonl").read_bytes() for r in "ab")
    assert len(a_bytes) == len(b_bytes) and a_bytes != b_bytes
    upload_a = await UPLOAD_FILE.run(
        {"file": "a/train.jsonl", "purpose": "fine-tune"}, local(run_id="run-a").context
    )
    killed = local(run_id="run-b")
    killed.context.base_dir = tmp_path
    backend_refuses = {"kind": "status", "status": 503, "method": "POST", "path": "/v1/files"}
    await local_http.post(
        LOCAL_BASE_URL.removesuffix("/v1") + "/_steprun/faults",
        json={**backend_refuses, "times": 1},
    )
    with pytest.raises(StepError):
        await UPLOAD_FILE.run({"file": "b/train.jsonl", "purpose": "fine-tune"}, killed.context)
    resumed = local(run_id="run-b", resumed=True, saved=killed.checkpoints[-1])
    upload_b = await UPLOAD_FILE.run(
        {"file": "b/train.jsonl", "purpose": "fine-tune"}, resumed.context
    )
    assert upload_b["id"] != upload_a["id"]
    content = await local_http.get(f"{LOCAL_BASE_URL}/files/{upload_b['id']}/content")
    assert content.content == b_bytes
    assert not any("adopting" in line for line in resumed.lines("info"))


async def test_a_wrong_key_fails_without_showing_the_key(
    make_context: MakeContext, tmp_path: Path
) -> None:
    backend = LocalBackend(job_seconds=1, api_key="sk-the-right-one-0000")
    chat_file(tmp_path / "train.jsonl")
    async with mounted(backend) as http:
        harness = make_context(LOCAL_BASE_URL, client=http, step_id="upload")
        harness.context.base_dir = tmp_path
        with pytest.raises(StepError) as caught:
            await UPLOAD_FILE.run({"file": "train.jsonl", "purpose": "fine-tune"}, harness.context)
    assert caught.value.status == 401
    assert CANARY_KEY not in json.dumps(caught.value.to_dict()) + harness.log_text()


# --- declaration -----------------------------------------------------------------------------


def test_declaration_and_schema() -> None:
    assert STEP_TYPES == [UPLOAD_FILE]
    assert UPLOAD_FILE.problems() == []
    assert UPLOAD_FILE.effect == "reconcile"
    Draft202012Validator.check_schema(SCHEMA)
    for name, prop in SCHEMA["properties"].items():
        assert prop.get("title") and prop.get("description"), name
    validator = VALIDATOR
    for bad in (
        {"file": "x"},
        {"file": "x", "purpose": "fine_tune"},
        {"file": "x", "purpose": "batch", "filename": "a/b.jsonl"},
        {"file": "x", "purpose": "batch", "expires_after": {"seconds": 60}},
    ):
        assert list(validator.iter_errors(bad)), bad
