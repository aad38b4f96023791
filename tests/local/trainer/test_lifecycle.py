"""The official ``openai`` package runs a real fine-tuning lifecycle against
``steprun serve-local --trainer transformers``: steprun-tiny trained with TRL in a child
process, events and checkpoints from the trainer, answers from the weights."""

from __future__ import annotations

import json

import openai
import pytest

from steprun.runtime.local.trainer import tiny
from tests.local.conftest import EXAMPLES
from tests.local.trainer.conftest import (
    SYSTEM,
    all_events,
    finished,
    support_file,
    upload,
)

pytestmark = pytest.mark.slow


def test_a_base_model_the_trainer_does_not_have_is_refused(client: openai.OpenAI) -> None:
    file_id = support_file(client)
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(model="gpt-4o-mini-2024-07-18", training_file=file_id)
    assert caught.value.code == "model_not_available"
    assert "steprun-tiny" in caught.value.message


def test_data_the_tokenizer_cannot_train_on_fails_the_job_with_its_cause(
    client: openai.OpenAI,
) -> None:
    # Chat lines with no assistant turn: nothing to learn, found while validating files.
    line = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]}
    file_id = upload(client, ("\n".join([json.dumps(line)] * 10) + "\n").encode())
    job = client.fine_tuning.jobs.create(model="steprun-tiny", training_file=file_id)
    done = finished(client, job.id)
    assert done.status == "failed"
    assert done.error.code == "invalid_training_file"
    assert "line 1 of" in done.error.message and "no assistant message" in done.error.message
    assert done.fine_tuned_model is None


def test_the_openai_sdk_runs_a_real_fine_tuning_lifecycle(
    client: openai.OpenAI, tmp_path_factory: pytest.TempPathFactory
) -> None:
    training = support_file(client)
    validation = upload(client, (EXAMPLES / "support_validation.jsonl").read_bytes())
    job = client.fine_tuning.jobs.create(
        model="steprun-tiny",
        training_file=training,
        validation_file=validation,
        suffix="sdk",
        seed=7,
        method={
            "type": "supervised",
            "supervised": {"hyperparameters": {"n_epochs": 2, "batch_size": 8}},
        },
    )
    assert job.status == "validating_files"
    assert job.hyperparameters.n_epochs == 2
    done = finished(client, job.id)
    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model.startswith("ft:steprun-tiny:steprun-local:sdk:")
    assert done.hyperparameters.learning_rate_multiplier == 1.0

    # Real token counts: the tokenizer's, with the chat template, for every epoch.
    folder = tiny.ensure(tmp_path_factory.mktemp("tiny"))
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    per_epoch = 0
    for line in (EXAMPLES / "support.jsonl").read_text(encoding="utf-8").splitlines():
        messages = json.loads(line)["messages"]
        per_epoch += len(tokenizer.apply_chat_template(messages, tokenize=True)["input_ids"])
    assert done.trained_tokens == 2 * per_epoch

    events = all_events(client, job.id)
    messages = [e.message for e in events]
    assert messages[0] == f"Created fine-tuning job: {job.id}"
    assert "Files validated, moving job to queued state" in messages
    assert messages[-1] == "The job has successfully completed"
    metrics = [e.data for e in events if e.type == "metrics"]
    assert [m["step"] for m in metrics] == list(range(1, 11))  # 36 examples / 8, 2 epochs
    assert all(m["total_steps"] == 10 and m["train_loss"] > 0 for m in metrics)
    assert all(0 <= m["train_mean_token_accuracy"] <= 1 for m in metrics)
    assert "valid_loss" in metrics[-1]

    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert [c.step_number for c in checkpoints] == [10, 5]
    assert checkpoints[0].fine_tuned_model_checkpoint == done.fine_tuned_model
    assert checkpoints[1].fine_tuned_model_checkpoint == f"{done.fine_tuned_model}:ckpt-step-5"
    assert checkpoints[1].metrics.train_loss == metrics[4]["train_loss"]

    result = client.files.content(done.result_files[0]).text.splitlines()
    assert result[0] == "step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy"
    assert [row.split(",")[0] for row in result[1:]] == [str(s) for s in range(1, 11)]

    # Answers come from the weights: usage counts the tokenizer's tokens, greedy decoding
    # streams the same text, the earlier checkpoint is a model of its own.
    question = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "How do I reset my password?"},
    ]
    reply = client.chat.completions.create(
        model=done.fine_tuned_model,
        messages=question,
        max_tokens=24,
        temperature=0,
        logprobs=True,
        top_logprobs=3,
    )
    choice = reply.choices[0]
    prompt = tokenizer.apply_chat_template(question, add_generation_prompt=True, tokenize=True)
    assert reply.usage.prompt_tokens == len(prompt["input_ids"])
    assert reply.usage.completion_tokens == len(choice.logprobs.content)
    assert "".join(t.token for t in choice.logprobs.content) == choice.message.content
    assert all(len(t.top_logprobs) == 3 and t.logprob <= 0 for t in choice.logprobs.content)
    # Greedy: the chosen token is the most likely one.
    assert all(t.logprob >= t.top_logprobs[0].logprob - 1e-4 for t in choice.logprobs.content)

    stream = client.chat.completions.create(
        model=done.fine_tuned_model,
        messages=question,
        max_tokens=24,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert streamed == choice.message.content
    assert chunks[-1].usage.completion_tokens == reply.usage.completion_tokens

    sampled = [
        client.chat.completions.create(
            model=checkpoints[1].fine_tuned_model_checkpoint,
            messages=question,
            max_tokens=16,
            temperature=1.0,
            n=2,
            seed=11,
        )
        for _ in range(2)
    ]
    assert [c.message.content for c in sampled[0].choices] == [
        c.message.content for c in sampled[1].choices
    ]

    stopped = client.chat.completions.create(
        model=done.fine_tuned_model, messages=question, max_tokens=24, temperature=0, stop=["e"]
    )
    assert "e" not in stopped.choices[0].message.content
    assert stopped.choices[0].message.content == choice.message.content.split("e")[0]

    with pytest.raises(openai.NotFoundError):
        client.completions.create(model=done.fine_tuned_model, prompt="hi", max_tokens=4)
    assert done.fine_tuned_model in [m.id for m in client.models.list().data]
    assert client.models.delete(done.fine_tuned_model).deleted
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model=done.fine_tuned_model, messages=question)
