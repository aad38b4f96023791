"""Together's own Python SDK against the backend's Together dialect (``/together/v1``).

``steprun serve-local`` runs in its own process; the SDK uploads a training file its own
way (an upload URL, a PUT, a preprocess call), reads the model's limits, creates a LoRA
fine-tuning job, follows it to ``completed`` and asks the fine-tuned model.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from together import Together

from tests.local.conftest import EXAMPLES
from tests.local.sdk import KEY, serve_local

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client() -> Iterator[Together]:
    with serve_local() as url:
        yield Together(api_key=KEY, base_url=url.removesuffix("/v1") + "/together", max_retries=0)


def test_together_sdk_fine_tunes_and_asks(client: Together) -> None:
    uploaded = client.files.upload(EXAMPLES / "support.jsonl", purpose="fine-tune")
    assert uploaded.id.startswith("file-")
    assert uploaded.filename == "support.jsonl"
    job = client.fine_tuning.create(
        training_file=uploaded.id,
        model="meta-llama/Meta-Llama-3.1-8B-Instruct-Reference",
        n_epochs=2,
        lora=True,
        lora_r=8,
        lora_alpha=16,
        suffix="support",
    )
    assert job.status in ("pending", "queued", "running")
    deadline = time.monotonic() + 60
    while (done := client.fine_tuning.retrieve(job.id)).status not in (
        "completed",
        "error",
        "cancelled",
    ):
        assert time.monotonic() < deadline, done.status
        time.sleep(0.5)
    assert done.status == "completed"
    assert done.model_output_name
    events = client.fine_tuning.list_events(job.id).data
    assert events and events[-1].type == "job_complete"
    assert client.fine_tuning.list_checkpoints(job.id).data
    assert job.id in [j.id for j in client.fine_tuning.list().data]
    answer = client.chat.completions.create(
        model=done.model_output_name,
        messages=[{"role": "user", "content": "How do I reset my password?"}],
    )
    assert answer.choices[0].message.content
