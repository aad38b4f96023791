"""Fixtures for the real trainer's tests: they train steprun-tiny for real, so they need
the ``steprun[train]`` extra (CI installs it; without it they are skipped)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.local.conftest import EXAMPLES
from tests.local.sdk import sdk_client, serve_local

for _module in ("torch", "transformers", "peft", "trl", "datasets"):
    pytest.importorskip(_module)

FINAL = ("succeeded", "failed", "cancelled")
SYSTEM = (
    "You are Lumen's support assistant. Lumen is a note-taking and team wiki app. "
    "Answer in two or three friendly, precise sentences."
)


@pytest.fixture(scope="session")
def trainer_state(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("trainer-state")


@pytest.fixture(scope="session")
def served_trainer(trainer_state: Path) -> Iterator[str]:
    """``steprun serve-local --trainer transformers`` with a state folder, for the session."""
    with serve_local(1.0, "--trainer", "transformers", "--state", str(trainer_state)) as url:
        yield url


@pytest.fixture(scope="session")
def client(served_trainer: str) -> Iterator[openai.OpenAI]:
    with sdk_client(served_trainer) as sdk:
        yield sdk


def upload(client: openai.OpenAI, content: bytes, name: str = "train.jsonl") -> str:
    return client.files.create(file=(name, content), purpose="fine-tune").id


def support_file(client: openai.OpenAI) -> str:
    return upload(client, (EXAMPLES / "support.jsonl").read_bytes(), "support.jsonl")


def wait_until(
    client: openai.OpenAI, job_id: str, done: Any, *, timeout: float = 600, what: str = ""
) -> Any:
    """Poll the job until ``done(job)``; the job then."""
    deadline = time.monotonic() + timeout
    while True:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if done(job):
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job.status}: waited for {what}"
        assert job.status not in FINAL, f"job ended {job.status} ({job.error}) before {what}"
        time.sleep(0.2)


def finished(client: openai.OpenAI, job_id: str, timeout: float = 900) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in FINAL:
            return job
        assert time.monotonic() < deadline, f"job {job_id} still {job.status}"
        time.sleep(0.3)


def all_events(client: openai.OpenAI, job_id: str) -> list[Any]:
    """Every event of a job, oldest first."""
    return list(reversed(list(client.fine_tuning.jobs.list_events(job_id, limit=100))))


def metric_steps(client: openai.OpenAI, job_id: str) -> list[int]:
    return [e.data["step"] for e in all_events(client, job_id) if e.type == "metrics"]


def preference_lines(count: int) -> bytes:
    """DPO data from the example: the real answer preferred to a curt one."""
    lines = []
    for line in (EXAMPLES / "support.jsonl").read_text(encoding="utf-8").splitlines()[:count]:
        messages = json.loads(line)["messages"]
        lines.append(
            json.dumps(
                {
                    "input": {"messages": messages[:-1]},
                    "preferred_output": [messages[-1]],
                    "non_preferred_output": [
                        {"role": "assistant", "content": "No idea, ask someone else."}
                    ],
                }
            )
        )
    return ("\n".join(lines) + "\n").encode()
