"""Shutdown awareness through the steps, against the embedded backend served on loopback
with its clock set: the create step's preflight (nothing reaches the create path) and the
request step's warning."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from steprun.runtime.errors import StepError
from steprun.runtime.local import LocalBackend
from steprun.runtime.step import StepContext
from steprun.steps.openai.completions import REQUEST_FINE_TUNED_MODEL

from .conftest import MakeContext
from .fakeapi import FakeOpenAI
from .faultserver import FaultServer, Reply
from .localbackend import Clock, at, fine_tune, mounted, served
from .stepschemas import config_errors, run_step

pytestmark = pytest.mark.anyio

DATA = (Path(__file__).resolve().parents[3] / "examples" / "data" / "support.jsonl").read_bytes()
CREATE = "openai.create_fine_tuning_job"


async def ask_model(config: dict[str, Any], context: StepContext) -> Any:
    assert not config_errors(REQUEST_FINE_TUNED_MODEL.type, config)
    return await REQUEST_FINE_TUNED_MODEL.run(dict(config), context)


class Served:
    def __init__(self, origin: str, clock: Clock, http: httpx.AsyncClient) -> None:
        self.origin, self.clock, self.http = origin, clock, http

    async def upload(self) -> str:
        answer = await self.http.post(
            self.origin + "/v1/files",
            files={"file": ("train.jsonl", DATA)},
            data={"purpose": "fine-tune"},
        )
        return str(answer.json()["id"])

    async def create_requests(self) -> int:
        ledger = (await self.http.get(self.origin + "/_steprun/ledger")).json()
        return int(ledger["create_requests"]["/v1/fine_tuning/jobs"])


@pytest.fixture
def clock() -> Clock:
    return Clock(at("2026-11-29T09:00:00"))


@pytest.fixture
def origin(clock: Clock) -> Iterator[str]:
    with served(LocalBackend(job_seconds=5, clock=clock).app) as url:
        yield url


@pytest.fixture
async def backend(origin: str, clock: Clock) -> AsyncIterator[Served]:
    async with httpx.AsyncClient() as http:
        yield Served(origin, clock, http)


async def test_models_report_shutdown_dates_and_the_backend_clock_dates_its_answers(
    backend: Served,
) -> None:
    backend.clock.now = at("2027-01-10T12:00:00")
    answer = await backend.http.get(backend.origin + "/v1/models/gpt-4o-mini")
    assert answer.json()["shutdown_date"] == "2027-01-14"
    assert answer.headers["date"] == "Sun, 10 Jan 2027 12:00:00 GMT"
    assert answer.headers.get_list("date") == ["Sun, 10 Jan 2027 12:00:00 GMT"]


async def test_today_a_model_with_46_days_left_is_fine_tuned(
    backend: Served, make_context: MakeContext
) -> None:
    file_id = await backend.upload()
    harness = make_context(backend.origin + "/v1", client=backend.http)
    job = await run_step(
        CREATE,
        {"training_file": file_id, "model": "gpt-4o-mini-2024-07-18"},
        harness.context,
    )
    assert job["status"] == "validating_files"
    assert await backend.create_requests() == 1
    assert any("2027-01-14 (46 days left)" in line for line in harness.lines("info"))


async def test_a_base_model_within_min_days_left_is_refused_before_any_create(
    backend: Served, make_context: MakeContext
) -> None:
    file_id = await backend.upload()
    backend.clock.now = at("2026-12-20T08:00:00")  # 25 days before 2027-01-14
    harness = make_context(backend.origin + "/v1", client=backend.http)
    config = {"training_file": file_id, "model": "gpt-4o-mini-2024-07-18"}
    with pytest.raises(StepError) as caught:
        await run_step(CREATE, config, harness.context)
    message = caught.value.message
    assert caught.value.code == "model_shutting_down"
    assert "shuts down on 2027-01-14, 25 day(s) from today (2026-12-20)" in message
    assert "within min_days_left (30)" in message
    assert "another provider" in message and "local trainer" in message
    assert await backend.create_requests() == 0
    # A user who accepts the risk lowers the threshold.
    job = await run_step(CREATE, {**config, "min_days_left": 20}, harness.context)
    assert job["model"] == "gpt-4o-mini-2024-07-18"
    assert await backend.create_requests() == 1


async def test_a_base_model_that_shuts_down_before_a_job_could_finish_is_refused(
    backend: Served, make_context: MakeContext
) -> None:
    file_id = await backend.upload()
    backend.clock.now = at("2026-10-23T01:00:00")  # gpt-4.1-nano's shutdown day
    harness = make_context(backend.origin + "/v1", client=backend.http)
    config = {"training_file": file_id, "model": "gpt-4.1-nano", "min_days_left": 0}
    with pytest.raises(StepError) as caught:
        await run_step(CREATE, config, harness.context)
    assert "shuts down on 2026-10-23, 0 day(s) from today" in caught.value.message
    assert "before the job could finish" in caught.value.message
    assert await backend.create_requests() == 0


async def test_openai_fine_tuning_closed_from_2027_01_06(
    backend: Served, make_context: MakeContext
) -> None:
    file_id = await backend.upload()
    backend.clock.now = at("2027-01-06T00:00:01")
    harness = make_context(backend.origin + "/v1", client=backend.http)
    config = {"training_file": file_id, "model": "gpt-4o-mini-2024-07-18", "min_days_left": 0}
    with pytest.raises(StepError) as caught:
        await run_step(CREATE, config, harness.context)
    assert caught.value.code == "fine_tuning_closed"
    assert caught.value.message.startswith(
        "openai creates no fine-tuning jobs since 2027-01-06 (today is 2027-01-06)"
    )
    assert "another provider" in caught.value.message
    assert await backend.create_requests() == 0


async def test_openai_closing_does_not_apply_to_another_openai_compatible_server(
    fault_server: FaultServer, fake_api: FakeOpenAI, make_context: MakeContext
) -> None:
    # A compatible server (no openai-version header) after 2027-01-06: its own fine-tuning
    # is open, and a base model without a shutdown date is fine.
    model = {"id": "llama-3.1-8b", "object": "model", "created": 1, "owned_by": "meta"}
    fault_server.script(Reply.json(model, date="Mon, 01 Feb 2027 00:00:00 GMT"))
    harness = make_context(fault_server.base_url)
    job = await run_step(
        CREATE, {"training_file": "file-train", "model": "llama-3.1-8b"}, harness.context
    )
    assert job["model"] == "llama-3.1-8b" and fake_api.creates == 1


async def test_the_embedded_backend_is_not_subject_to_openai_shutdowns(
    make_context: MakeContext,
) -> None:
    clock = Clock(at("2027-03-01T00:00:00"))  # after the closing and the shutdown
    backend = LocalBackend(job_seconds=5, clock=clock)
    async with mounted(backend) as http:
        harness = make_context(
            "http://local.steprun.invalid/v1", client=http, provider="local", api_key=None
        )
        upload = await http.post(
            "http://local.steprun.invalid/v1/files",
            files={"file": ("train.jsonl", DATA)},
            data={"purpose": "fine-tune"},
        )
        config = {"training_file": upload.json()["id"], "model": "gpt-4o-mini-2024-07-18"}
        job = await run_step(CREATE, config, harness.context)
    assert job["status"] == "validating_files"


async def test_asking_a_fine_tune_whose_base_shuts_down_within_30_days_warns(
    backend: Served, make_context: MakeContext
) -> None:
    backend.clock.now = at("2026-11-20T00:00:00")
    model = await fine_tune(backend.http, backend.clock, DATA, origin=backend.origin)
    ask = {"model": model, "mode": "chat", "prompt": "How do I reset my password?"}
    quiet = make_context(backend.origin + "/v1", client=backend.http, step_id="ask")
    await ask_model(ask, quiet.context)  # 2026-11-20: 55 days left
    assert quiet.lines("warn") == []
    backend.clock.now = at("2026-12-26T00:00:00")
    warned = make_context(backend.origin + "/v1", client=httpx.AsyncClient(), step_id="ask")
    answer = await ask_model(ask, warned.context)
    assert answer["choices"][0]["message"]["content"]
    (warning,) = warned.lines("warn")
    assert f"{model} shuts down with its base gpt-4o-mini-2024-07-18 on 2027-01-14" in warning
    assert "(19 days left)" in warning
    await warned.context.http.aclose()


def test_the_cli_run_refuses_a_closed_provider_and_the_ledger_shows_no_create(
    tmp_path: Path,
) -> None:
    """The real CLI in a subprocess, against the backend served here with its clock set."""
    (tmp_path / "train.jsonl").write_bytes(DATA)
    clock = Clock(at("2027-01-10T10:00:00"))
    with served(LocalBackend(job_seconds=5, clock=clock).app) as origin:
        (tmp_path / "flow.yaml").write_text(
            "flow: late\n"
            "authorization: openai\n"
            "authorizations:\n"
            f"  openai: {{provider: openai, base_url: '{origin}/v1', max_retries: 0}}\n"
            "steps:\n"
            "  - id: upload\n"
            "    type: openai.upload_file\n"
            "    config: {file: train.jsonl, purpose: fine-tune}\n"
            "  - id: job\n"
            "    type: openai.create_fine_tuning_job\n"
            "    config: {training_file: '{{ upload.id }}', model: gpt-4o-mini-2024-07-18}\n",
            encoding="utf-8",
        )
        env = {**os.environ, "STEPRUN_STATE": str(tmp_path / "runs.db")}
        done = subprocess.run(
            [str(Path(sys.executable).parent / "steprun"), "run", str(tmp_path / "flow.yaml")],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        ledger = httpx.get(origin + "/_steprun/ledger").json()
    assert done.returncode == 1, done.stderr
    assert "openai creates no fine-tuning jobs since 2027-01-06 (today is 2027-01-10)" in (
        done.stderr
    )
    assert "Traceback" not in done.stderr
    assert ledger["create_requests"]["/v1/fine_tuning/jobs"] == 0
    assert ledger["jobs"] == []
