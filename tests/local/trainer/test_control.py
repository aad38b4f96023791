"""Cancel, pause and resume a real training; DPO on preference data."""

from __future__ import annotations

import math
import time

import openai
import pytest

from tests.local.trainer.conftest import (
    all_events,
    finished,
    metric_steps,
    preference_lines,
    support_file,
    upload,
    wait_until,
)

pytestmark = pytest.mark.slow


def _job(client: openai.OpenAI, n_epochs: int, **more: object) -> str:
    hyper = {"n_epochs": n_epochs, "batch_size": 8, **more}
    job = client.fine_tuning.jobs.create(
        model="steprun-tiny",
        training_file=support_file(client),
        seed=3,
        method={"type": "supervised", "supervised": {"hyperparameters": hyper}},
    )
    return job.id


def _training(client: openai.OpenAI, job_id: str, steps: int = 1) -> None:
    """Wait until the job has reported ``steps`` training steps."""
    wait_until(
        client,
        job_id,
        lambda job: job.status == "running" and len(metric_steps(client, job_id)) >= steps,
        what=f"{steps} training step(s)",
    )


def test_cancel_stops_a_running_training_within_ten_seconds(client: openai.OpenAI) -> None:
    job_id = _job(client, n_epochs=50)
    _training(client, job_id)
    asked = time.monotonic()
    cancelled = client.fine_tuning.jobs.cancel(job_id)
    assert cancelled.status == "cancelled"
    assert time.monotonic() - asked < 10
    steps = metric_steps(client, job_id)
    time.sleep(2)  # a training that still ran would report more steps by now
    assert metric_steps(client, job_id) == steps
    assert steps[-1] < 250
    job = client.fine_tuning.jobs.retrieve(job_id)
    assert job.status == "cancelled" and job.fine_tuned_model is None
    assert all_events(client, job_id)[-1].message == "Fine-tuning job cancelled"


def test_pause_stops_at_a_checkpoint_and_resume_continues_from_it(client: openai.OpenAI) -> None:
    job_id = _job(client, n_epochs=3)
    _training(client, job_id, steps=2)
    assert client.fine_tuning.jobs.pause(job_id).status == "paused"
    wait_until(
        client,
        job_id,
        lambda job: any("paused at step" in e.message for e in all_events(client, job_id)),
        what="the training to stop at its checkpoint",
    )
    paused_at = metric_steps(client, job_id)[-1]
    time.sleep(1)
    assert metric_steps(client, job_id)[-1] == paused_at  # it really stopped
    assert client.fine_tuning.jobs.retrieve(job_id).status == "paused"

    assert client.fine_tuning.jobs.resume(job_id).status != "paused"
    done = finished(client, job_id)
    assert done.status == "succeeded", done.error
    messages = [e.message for e in all_events(client, job_id)]
    assert f"Training continues from checkpoint-{paused_at}" in messages
    # Step numbers continue where the pause left them: each step once, none again.
    assert metric_steps(client, job_id) == list(range(1, 16))


def test_a_dpo_job_trains_on_preference_data_and_reports_the_dpo_loss(
    client: openai.OpenAI,
) -> None:
    file_id = upload(client, preference_lines(12), "preferences.jsonl")
    job = client.fine_tuning.jobs.create(
        model="steprun-tiny",
        training_file=file_id,
        seed=5,
        method={
            "type": "dpo",
            "dpo": {"hyperparameters": {"n_epochs": 2, "batch_size": 4, "beta": 0.1}},
        },
    )
    done = finished(client, job.id)
    assert done.status == "succeeded", done.error
    assert done.method.type == "dpo"
    metrics = [e.data for e in all_events(client, job.id) if e.type == "metrics"]
    assert [m["step"] for m in metrics] == list(range(1, 7))
    # DPO's loss starts at log 2: the LoRA adapter starts at zero, so the policy is the
    # reference model and every preference margin is 0, and -log(sigmoid(0)) = log 2.
    assert metrics[0]["train_loss"] == pytest.approx(math.log(2), abs=1e-3)
    assert all("train_reward_accuracy" in m for m in metrics)
    reply = client.chat.completions.create(
        model=done.fine_tuned_model,
        messages=[{"role": "user", "content": "How do I reset my password?"}],
        max_tokens=8,
    )
    assert reply.usage.completion_tokens >= 1
