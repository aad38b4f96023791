"""openai.list_models and openai.record_answers through the steps, against the embedded
backend served on loopback (its clock set), with a recorder that sees every chat request."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from steprun.runtime.errors import StepError
from steprun.runtime.local import LocalBackend
from steprun.runtime.schemas import SchemaRegistry
from steprun.steps.openai.models_list import LIST_MODELS
from steprun.steps.openai.record import RECORD_ANSWERS

from .conftest import MakeContext
from .localbackend import Clock, at, fine_tune, served

pytestmark = pytest.mark.anyio

DATA = Path(__file__).resolve().parents[3] / "examples" / "data"
TRAINING = (DATA / "support.jsonl").read_bytes()
GOLDEN = DATA / "support_validation.jsonl"
GOLDEN_SIZE = sum(1 for line in GOLDEN.read_text().splitlines() if line.strip())
SCHEMAS = SchemaRegistry()


def check_config(step_type: str, config: dict[str, Any]) -> None:
    schema = SCHEMAS.builtin(f"{step_type}.schema.json") or {}
    errors = [e.message for e in SCHEMAS.validator(schema).iter_errors(config)]
    assert not errors, errors


class Recorder:
    """Wraps the backend: the last user message of every chat request, and how many were
    in flight at most."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.asked: list[str] = []
        self.in_flight = 0
        self.most_in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/v1/chat/completions":
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = json.loads(b"".join(chunks))
        self.asked.append(body["messages"][-1]["content"])
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        try:
            await self.app(scope, replay, send)
        finally:
            self.in_flight -= 1


@pytest.fixture
def clock() -> Clock:
    return Clock(at("2026-12-01T00:00:00"))


@pytest.fixture
def backend(clock: Clock) -> LocalBackend:
    return LocalBackend(job_seconds=5, clock=clock)


@pytest.fixture
def recorder(backend: LocalBackend) -> Recorder:
    return Recorder(backend.app)


@pytest.fixture
def origin(recorder: Recorder) -> Iterator[str]:
    with served(recorder) as url:
        yield url


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient() as client:
        yield client


async def test_list_models_gives_each_fine_tune_its_base_shutdown_date_and_days_left(
    origin: str, clock: Clock, http: httpx.AsyncClient, make_context: MakeContext
) -> None:
    openai_tune = await fine_tune(http, clock, TRAINING, origin=origin)
    own_tune = await fine_tune(http, clock, TRAINING, model="steprun-tiny", origin=origin)
    clock.now = at("2026-12-01T10:00:00")
    harness = make_context(origin + "/v1", client=http, step_id="models")
    check_config("openai.list_models", {})
    listed = await LIST_MODELS.run({}, harness.context)
    assert listed["today"] == "2026-12-01"
    rows = {row["id"]: row for row in listed["data"]}
    # Soonest shutdown first, no date last; each model's checkpoints are models too.
    order = [row["id"].split(":ckpt-step-")[0] for row in listed["data"]]
    assert order == sorted(order, key=[openai_tune, own_tune].index)
    assert set(order) == {openai_tune, own_tune}
    assert rows[openai_tune]["shutdown_date"] == "2027-01-14"
    assert rows[openai_tune]["days_left"] == 44
    assert rows[openai_tune]["base_model"] == "gpt-4o-mini-2024-07-18"
    assert (rows[own_tune]["shutdown_date"], rows[own_tune]["days_left"]) == (None, None)
    assert f"{openai_tune}: shuts down 2027-01-14 (44 days left)" in harness.lines("info")
    soon = await LIST_MODELS.run({"within_days": 60}, harness.context)
    assert {row["id"].split(":ckpt-step-")[0] for row in soon["data"]} == {openai_tune}
    everything = await LIST_MODELS.run({"fine_tuned_only": False}, harness.context)
    assert "gpt-4.1-nano" in {row["id"] for row in everything["data"]}


async def test_record_answers_writes_one_line_per_prompt_within_the_concurrency_bound(
    origin: str,
    recorder: Recorder,
    backend: LocalBackend,
    http: httpx.AsyncClient,
    make_context: MakeContext,
    tmp_path: Path,
) -> None:
    backend.add_fault(
        {"kind": "latency", "path": "/v1/chat/completions", "seconds": 0.2, "times": None}
    )
    config = {
        "model": "gpt-4o-mini",
        "file": str(GOLDEN),
        "output": str(tmp_path / "answers.jsonl"),
        "concurrency": 3,
    }
    check_config("openai.record_answers", config)
    harness = make_context(origin + "/v1", client=http, step_id="recorded")
    result = await RECORD_ANSWERS.run(config, harness.context)
    assert result["asked"] == GOLDEN_SIZE and result["already_recorded"] == 0
    assert recorder.most_in_flight == 3
    rows = [json.loads(line) for line in (tmp_path / "answers.jsonl").read_text().splitlines()]
    assert sorted(row["index"] for row in rows) == list(range(GOLDEN_SIZE))
    golden = [json.loads(line) for line in GOLDEN.read_text().splitlines() if line.strip()]
    first = next(row for row in rows if row["index"] == 0)
    assert first["prompt"] == golden[0]["messages"][:-1]  # the prompt without the answer
    assert first["expected"] == golden[0]["messages"][-1]["content"]
    assert first["answer"] and first["model"] == "gpt-4o-mini"
    # Run again: everything is recorded, nothing is asked.
    again = await RECORD_ANSWERS.run(config, harness.context)
    assert (again["asked"], again["already_recorded"]) == (0, GOLDEN_SIZE)
    assert len(recorder.asked) == GOLDEN_SIZE


async def test_after_a_failure_a_second_run_asks_only_what_is_not_recorded(
    origin: str,
    recorder: Recorder,
    backend: LocalBackend,
    http: httpx.AsyncClient,
    make_context: MakeContext,
    tmp_path: Path,
) -> None:
    output = tmp_path / "answers.jsonl"
    config = {"model": "gpt-4o-mini", "file": str(GOLDEN), "output": str(output)}
    config["concurrency"] = 1
    # The fifth request is refused (a permanent error: not retried).
    for _ in range(4):
        backend.add_fault(
            {"kind": "latency", "path": "/v1/chat/completions", "seconds": 0, "times": 1}
        )
    backend.add_fault({"kind": "status", "path": "/v1/chat/completions", "status": 400})
    harness = make_context(origin + "/v1", client=http, step_id="recorded")
    with pytest.raises(StepError) as caught:
        await RECORD_ANSWERS.run(config, harness.context)
    assert f"4 of {GOLDEN_SIZE} answers are recorded in {output}" in caught.value.message
    recorded = [json.loads(line) for line in output.read_text().splitlines()]
    assert len(recorded) == 4
    asked_before = len(recorder.asked)
    # A kill mid-write leaves a torn last line: it is cut off and that prompt asked again.
    with output.open("a", encoding="utf-8") as stream:
        stream.write('{"index": 9, "prompt_sha')
    result = await RECORD_ANSWERS.run(config, harness.context)
    assert (result["asked"], result["already_recorded"]) == (GOLDEN_SIZE - 4, 4)
    asked_now = recorder.asked[asked_before:]
    recorded_prompts = {row["prompt"][-1]["content"] for row in recorded}
    assert len(asked_now) == GOLDEN_SIZE - 4
    assert not recorded_prompts & set(asked_now)  # nothing recorded was asked again
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted(row["index"] for row in rows) == list(range(GOLDEN_SIZE))


async def test_a_file_of_another_model_or_a_bad_golden_set_is_refused_before_asking(
    origin: str,
    recorder: Recorder,
    http: httpx.AsyncClient,
    make_context: MakeContext,
    tmp_path: Path,
) -> None:
    output = tmp_path / "answers.jsonl"
    harness = make_context(origin + "/v1", client=http, step_id="recorded")
    config = {"model": "gpt-4o-mini", "file": str(GOLDEN), "output": str(output)}
    await RECORD_ANSWERS.run(config, harness.context)
    asked = len(recorder.asked)
    with pytest.raises(StepError) as other:
        await RECORD_ANSWERS.run({**config, "model": "gpt-4.1-mini"}, harness.context)
    assert f"{output} holds answers of gpt-4o-mini, not gpt-4.1-mini" in other.value.message
    bad = tmp_path / "golden.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\n{"text": 1}\n')
    with pytest.raises(StepError) as invalid:
        await RECORD_ANSWERS.run(
            {**config, "file": str(bad), "output": str(tmp_path / "b.jsonl")}, harness.context
        )
    assert invalid.value.message.startswith(f"{bad}:2: expected a chat example")
    assert len(recorder.asked) == asked


async def test_record_answers_warns_when_the_model_base_shuts_down_within_30_days(
    origin: str,
    clock: Clock,
    http: httpx.AsyncClient,
    make_context: MakeContext,
    tmp_path: Path,
) -> None:
    model = await fine_tune(http, clock, TRAINING, origin=origin)
    clock.now = at("2027-01-01T00:00:00")
    harness = make_context(origin + "/v1", client=httpx.AsyncClient(), step_id="recorded")
    config = {"model": model, "file": str(GOLDEN), "output": str(tmp_path / "a.jsonl")}
    await RECORD_ANSWERS.run(config, harness.context)
    await harness.context.http.aclose()
    (warning,) = harness.lines("warn")
    assert "on 2027-01-14 (13 days left)" in warning


def test_killed_mid_recording_the_resumed_run_never_asks_a_recorded_prompt_again(
    recorder: Recorder, backend: LocalBackend, origin: str, tmp_path: Path
) -> None:
    """The real CLI: SIGKILL while answers arrive, then `steprun resume`."""
    backend.add_fault(
        {"kind": "latency", "path": "/v1/chat/completions", "seconds": 0.3, "times": None}
    )
    output = tmp_path / "answers.jsonl"
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "flow: record\n"
        "authorization: openai\n"
        "authorizations:\n"
        f"  openai: {{provider: openai, base_url: '{origin}/v1'}}\n"
        "steps:\n"
        "  - id: recorded\n"
        "    type: openai.record_answers\n"
        f"    config: {{model: gpt-4o-mini, file: '{GOLDEN}', output: answers.jsonl,"
        " concurrency: 2}\n",
        encoding="utf-8",
    )
    env = {**os.environ, "STEPRUN_STATE": str(tmp_path / "runs.db")}
    steprun = str(Path(sys.executable).parent / "steprun")
    with (tmp_path / "first.err").open("w") as errors:
        child = subprocess.Popen([steprun, "run", str(flow)], env=env, stderr=errors)
        deadline = time.monotonic() + 60
        while not output.exists() or output.read_text().count("\n") < 4:
            assert child.poll() is None, "the run ended before it could be killed"
            assert time.monotonic() < deadline, "no answers were recorded"
            time.sleep(0.02)
        child.kill()
        child.wait()
    asked_before_kill = len(recorder.asked)
    kept = [json.loads(line) for line in output.read_text().splitlines()]
    assert 4 <= len(kept) < GOLDEN_SIZE
    run_id = (tmp_path / "first.err").read_text().split()[1]

    resumed = subprocess.run(
        [steprun, "resume", run_id], env=env, capture_output=True, text=True, timeout=120
    )

    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["recorded"]["already_recorded"] == len(kept)
    asked_after = recorder.asked[asked_before_kill:]
    assert not {row["prompt"][-1]["content"] for row in kept} & set(asked_after)
    rows = [json.loads(line) for line in output.read_text().splitlines()]
    assert sorted(row["index"] for row in rows) == list(range(GOLDEN_SIZE))
