"""The official ``openai`` package runs a whole fine-tuning lifecycle against the backend
served over HTTP in its own process, as ``steprun serve-local`` serves it."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.local.conftest import EXAMPLES
from tests.local.sdk import KEY, sdk_client, serve_local, wait_for

RESET = (
    'Open lumen.app/login, click "Forgot password?" and enter the email you signed up with. '
    "We send a reset link that is valid for 30 minutes; if it does not arrive, check your "
    "spam folder."
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def served() -> Iterator[str]:
    with serve_local() as url:
        yield url


@pytest.fixture(scope="module")
def client(served: str) -> Iterator[openai.OpenAI]:
    with sdk_client(served) as sdk:
        yield sdk


def test_ready_line_names_the_real_port(served: str) -> None:
    assert served.startswith("http://127.0.0.1:")
    assert served.endswith("/v1")
    assert int(served.rsplit(":", 1)[1].split("/")[0]) > 0


def test_chat_fine_tuning_lifecycle(client: openai.OpenAI) -> None:
    with (EXAMPLES / "support.jsonl").open("rb") as handle:
        file = client.files.create(file=handle, purpose="fine-tune")
    assert file.purpose == "fine-tune"
    job = client.fine_tuning.jobs.create(
        model="gpt-4o-mini-2024-07-18",
        training_file=file.id,
        suffix="support-bot",
        seed=42,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}},
        metadata={"flow": "sdk-test"},
    )
    assert job.status == "validating_files"
    done = wait_for(client, job.id)
    assert done.status == "succeeded"
    assert done.fine_tuned_model.startswith("ft:gpt-4o-mini-2024-07-18:steprun-local:support-bot:")
    assert done.trained_tokens and done.trained_tokens > 0

    # Auto-pagination follows `after` through every page.
    events = list(client.fine_tuning.jobs.list_events(job.id, limit=10))
    assert len(events) > 10
    assert events[-1].message == f"Created fine-tuning job: {job.id}"
    metrics = [e for e in events if e.type == "metrics"]
    assert metrics
    assert isinstance(metrics[0].data, dict) and metrics[0].data["train_loss"] > 0

    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert [c.step_number for c in checkpoints] == [72, 36]

    listed = client.fine_tuning.jobs.list(metadata={"flow": "sdk-test"})
    assert [j.id for j in listed.data] == [job.id]

    reply = client.chat.completions.create(
        model=done.fine_tuned_model,
        messages=[{"role": "user", "content": "How do I reset my password?"}],
        temperature=0,
    )
    assert reply.choices[0].message.content == RESET

    deleted = client.models.delete(done.fine_tuned_model)
    assert deleted.deleted is True
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(
            model=done.fine_tuned_model, messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.code == "model_not_found"


def test_completion_model_lifecycle_with_streaming(client: openai.OpenAI) -> None:
    with (EXAMPLES / "support_legacy.jsonl").open("rb") as handle:
        file = client.files.create(file=handle, purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="babbage-002", training_file=file.id)
    model = wait_for(client, job.id).fine_tuned_model
    prompt = "Customer: How do I reset my password?\nAgent:\n\n###\n\n"
    whole = client.completions.create(
        model=model, prompt=prompt, max_tokens=100, stop=[" END"], temperature=0
    )
    assert whole.choices[0].text == f" {RESET}"
    assert whole.usage is not None and whole.usage.completion_tokens > 0
    stream = client.completions.create(
        model=model, prompt=prompt, max_tokens=100, stop=[" END"], temperature=0, stream=True
    )
    pieces = [chunk.choices[0].text for chunk in stream]
    assert "".join(pieces) == f" {RESET}"
    assert len(pieces) > 10


def test_cancel(client: openai.OpenAI) -> None:
    with (EXAMPLES / "support.jsonl").open("rb") as handle:
        file = client.files.create(file=handle, purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=file.id)
    cancelled = client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled"
    assert client.fine_tuning.jobs.retrieve(job.id).status == "cancelled"


def test_the_sdk_retries_a_rate_limit_as_told(client: openai.OpenAI, served: str) -> None:
    control = served.removesuffix("/v1") + "/_steprun/faults"
    fault = {"kind": "status", "status": 429, "retry_after_ms": 20, "path": "/v1/models"}
    headers = {"authorization": f"Bearer {KEY}"}
    httpx.post(control, json=fault, headers=headers).raise_for_status()
    assert client.models.list().data
    assert httpx.get(control, headers=headers).json()["data"] == []


def test_a_wrong_key_is_an_authentication_error(served: str) -> None:
    with (
        openai.OpenAI(api_key="sk-wrong", base_url=served, max_retries=0) as sdk,
        pytest.raises(openai.AuthenticationError) as caught,
    ):
        sdk.models.list()
    assert caught.value.code == "invalid_api_key"
