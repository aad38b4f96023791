"""openai.download_file against the local backend over HTTP (issue 10, item 5): a job's
result file as rows, the legacy classification metrics, binary-safe saving, the size limit."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from steprun.runtime.errors import StepError
from steprun.runtime.local import LocalBackend
from steprun.steps.openai.download import DOWNLOAD_FILE
from tests.local.conftest import EXAMPLES

from .conftest import MakeContext
from .localbackend import Clock, served
from .stepschemas import config_errors

pytestmark = pytest.mark.anyio


class Backend:
    def __init__(self, origin: str, http: httpx.AsyncClient, clock: Clock) -> None:
        self.base_url = origin + "/v1"
        self.http = http
        self.clock = clock

    async def upload(self, content: bytes, name: str, purpose: str = "fine-tune") -> str:
        response = await self.http.post(
            self.base_url + "/files", files={"file": (name, content)}, data={"purpose": purpose}
        )
        assert response.status_code == 200, response.text
        return str(response.json()["id"])

    async def finished(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        job = (await self.http.post(self.base_url + path, json=body)).json()
        self.clock.now += 60
        done: dict[str, Any] = (await self.http.get(f"{self.base_url}{path}/{job['id']}")).json()
        assert done["status"] == "succeeded", done
        return done


@pytest.fixture
async def backend() -> AsyncIterator[Backend]:
    clock = Clock()
    with served(LocalBackend(job_seconds=5, clock=clock).app) as origin:
        async with httpx.AsyncClient() as http:
            yield Backend(origin, http, clock)


async def download(backend: Backend, make_context: MakeContext, **config: Any) -> Any:
    assert not config_errors("openai.download_file", config)
    harness = make_context(backend.base_url, client=backend.http, step_id="download")
    return await DOWNLOAD_FILE.run(config, harness.context)


async def test_a_jobs_step_metrics_become_rows(backend: Backend, make_context: MakeContext) -> None:
    training = await backend.upload((EXAMPLES / "support.jsonl").read_bytes(), "support.jsonl")
    job = await backend.finished(
        "/fine_tuning/jobs", {"model": "gpt-4o-mini", "training_file": training}
    )
    [result] = job["result_files"]
    output = await download(backend, make_context, file_id=result)
    assert (output["filename"], output["format"]) == ("step_metrics.csv", "csv")
    rows = output["rows"]
    assert len(rows) == job["hyperparameters"]["n_epochs"] * 36
    assert rows[0]["step"] == 1
    assert isinstance(rows[0]["train_loss"], float)
    assert rows[0]["valid_loss"] is None  # no validation file: an empty cell
    assert rows[-1]["train_loss"] < rows[0]["train_loss"]


async def test_the_legacy_classification_metrics_can_be_read(
    backend: Backend, make_context: MakeContext
) -> None:
    data = (EXAMPLES / "support_legacy.jsonl").read_bytes()
    training = await backend.upload(data, "train.jsonl")
    fine_tune = await backend.finished(
        "/fine-tunes",
        {
            "training_file": training,
            "validation_file": training,
            "model": "ada",
            "compute_classification_metrics": True,
            "classification_n_classes": 4,
        },
    )
    [result] = fine_tune["result_files"]
    rows = (await download(backend, make_context, file_id=result["id"]))["rows"]
    scored = [row for row in rows if row["classification/accuracy"] is not None]
    assert len(scored) == fine_tune["hyperparams"]["n_epochs"]
    assert all(0 < row["classification/weighted_f1_score"] < 1 for row in scored)


async def test_save_to_keeps_the_bytes_exactly(
    backend: Backend, make_context: MakeContext, tmp_path: Path
) -> None:
    content = bytes(range(256)) * 64 + os.urandom(4096)
    file_id = await backend.upload(content, "blob.bin", purpose="user_data")
    output = await download(
        backend, make_context, file_id=file_id, save_to=str(tmp_path / "out" / "blob.bin")
    )
    saved = Path(output["path"])
    assert saved.read_bytes() == content
    assert output["bytes"] == len(content)
    assert [p.name for p in saved.parent.iterdir()] == ["blob.bin"]  # no temporary left
    # The official SDK reads the same bytes.
    with openai.OpenAI(api_key="unused", base_url=backend.base_url) as sdk:
        assert sdk.files.content(file_id).read() == content


async def test_binary_content_without_save_to_is_refused(
    backend: Backend, make_context: MakeContext
) -> None:
    file_id = await backend.upload(b"\x89PNG\r\n\x1a\n\x00\xff", "image.png", purpose="user_data")
    with pytest.raises(StepError) as caught:
        await download(backend, make_context, file_id=file_id)
    assert caught.value.code == "binary_content"


async def test_jsonl_and_the_size_limit(
    backend: Backend, make_context: MakeContext, tmp_path: Path
) -> None:
    data = (EXAMPLES / "support.jsonl").read_bytes()
    file_id = await backend.upload(data, "support.jsonl")
    rows = (await download(backend, make_context, file_id=file_id))["rows"]
    assert rows[0]["messages"][0]["role"] == "system"
    with pytest.raises(StepError) as caught:
        await download(backend, make_context, file_id=file_id, max_bytes=100)
    assert caught.value.code == "file_too_large"
    target = tmp_path / "support.jsonl"
    with pytest.raises(StepError):
        await download(backend, make_context, file_id=file_id, max_bytes=100, save_to=str(target))
    assert not target.exists() and not list(tmp_path.iterdir())  # nothing half-written
