"""Reinforcement fine-tuning, graders and checkpoint permissions through the official
``openai`` client against ``steprun serve-local`` (issue 10, item 4)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from tests.local.conftest import EXAMPLES
from tests.local.sdk import sdk_client, serve_local, wait_for

pytestmark = pytest.mark.slow

CHECK: dict[str, Any] = {
    "type": "string_check",
    "name": "exact",
    "input": "{{ sample.output_text }}",
    "reference": "{{ item.reference_answer }}",
    "operation": "eq",
}


@pytest.fixture(scope="module")
def client() -> Iterator[openai.OpenAI]:
    with serve_local() as url, sdk_client(url) as sdk:
        yield sdk


def _rft_file(client: openai.OpenAI) -> str:
    rows = [
        {
            "messages": [{"role": "user", "content": f"What is {i} + {i}? Answer with a number."}],
            "reference_answer": str(2 * i),
        }
        for i in range(12)
    ]
    content = "".join(json.dumps(row) + "\n" for row in rows).encode()
    return client.files.create(file=("rft.jsonl", content), purpose="fine-tune").id


def test_o4_mini_fine_tunes_with_reinforcement_only(client: openai.OpenAI) -> None:
    assert client.models.retrieve("o4-mini").id == "o4-mini"
    training = _rft_file(client)
    job = client.fine_tuning.jobs.create(
        model="o4-mini",
        training_file=training,
        method={
            "type": "reinforcement",
            "reinforcement": {
                "grader": CHECK,  # type: ignore[typeddict-item]
                "hyperparameters": {"reasoning_effort": "low", "n_epochs": 1},
            },
        },
    )
    assert job.model == "o4-mini-2025-04-16"
    assert job.method is not None and job.method.reinforcement is not None
    assert job.method.reinforcement.grader.name == "exact"
    done = wait_for(client, job.id)
    assert done.status == "succeeded"
    assert done.fine_tuned_model.startswith("ft:o4-mini-2025-04-16:")
    hyper = done.method.reinforcement.hyperparameters  # type: ignore[union-attr]
    assert hyper is not None and hyper.reasoning_effort == "low"

    with pytest.raises(openai.BadRequestError) as supervised:
        client.fine_tuning.jobs.create(model="o4-mini", training_file=training)
    assert supervised.value.param == "method.type"
    with (EXAMPLES / "support.jsonl").open("rb") as handle:
        chat_file = client.files.create(file=handle, purpose="fine-tune").id
    with pytest.raises(openai.BadRequestError) as not_rft:
        client.fine_tuning.jobs.create(
            model="gpt-4o-mini",
            training_file=chat_file,
            method={"type": "reinforcement", "reinforcement": {"grader": CHECK}},  # type: ignore[typeddict-item]
        )
    assert not_rft.value.param == "method.type"


def test_a_job_with_an_invalid_grader_is_refused(client: openai.OpenAI) -> None:
    broken = {k: v for k, v in CHECK.items() if k != "operation"}
    with pytest.raises(openai.BadRequestError) as caught:
        client.fine_tuning.jobs.create(
            model="o4-mini",
            training_file=_rft_file(client),
            method={"type": "reinforcement", "reinforcement": {"grader": broken}},  # type: ignore[typeddict-item]
        )
    assert caught.value.param == "method.reinforcement.grader.operation"


def test_graders_validate(client: openai.OpenAI) -> None:
    assert client.fine_tuning.alpha.graders.validate(grader=CHECK).grader is not None  # type: ignore[arg-type]
    with pytest.raises(openai.BadRequestError) as missing:
        client.fine_tuning.alpha.graders.validate(grader={**CHECK, "operation": "regex"})  # type: ignore[arg-type]
    assert missing.value.param == "grader.operation"
    with pytest.raises(openai.BadRequestError) as template:
        client.fine_tuning.alpha.graders.validate(
            grader={**CHECK, "input": "{{ os.environ }}"}  # type: ignore[arg-type]
        )
    assert template.value.param == "grader.input"


def _run(client: openai.OpenAI, grader: dict[str, Any], sample: str, item: Any = None) -> Any:
    return client.fine_tuning.alpha.graders.run(
        grader=grader,  # type: ignore[arg-type]
        model_sample=sample,
        item=item if item is not None else {"reference_answer": "4"},
    )


def test_graders_run_string_check_and_text_similarity(client: openai.OpenAI) -> None:
    assert _run(client, CHECK, "4").reward == 1.0
    assert _run(client, CHECK, "5").reward == 0.0
    like = {**CHECK, "operation": "ilike", "reference": "PARIS"}
    assert _run(client, like, "It is Paris, France.").reward == 1.0
    similar = {
        "type": "text_similarity",
        "name": "close",
        "input": "{{ sample.output_text }}",
        "reference": "the cat sat on the mat",
        "evaluation_metric": "rouge_1",
    }
    assert _run(client, similar, "the cat sat on the mat").reward == pytest.approx(1.0)
    partial = _run(client, similar, "a cat on a mat").reward
    assert 0 < partial < 1
    fuzzy = _run(client, {**similar, "evaluation_metric": "fuzzy_match"}, "the cat sat on a mat")
    assert 0.9 < fuzzy.reward < 1
    result = _run(client, CHECK, "4")
    assert result.metadata.name == "exact"
    assert result.metadata.errors.other_error is False


def test_graders_run_multi_with_its_formula(client: openai.OpenAI) -> None:
    multi = {
        "type": "multi",
        "name": "both",
        "graders": {
            "exact": CHECK,
            "close": {
                "type": "text_similarity",
                "name": "close",
                "input": "{{ sample.output_text }}",
                "reference": "{{ item.reference_answer }}",
                "evaluation_metric": "fuzzy_match",
            },
        },
        "calculate_output": "0.5 * exact + 0.5 * close",
    }
    result = _run(client, multi, "4")
    assert result.reward == pytest.approx(1.0)
    assert result.sub_rewards == {"exact": 1.0, "close": 1.0}
    with pytest.raises(openai.BadRequestError) as caught:
        _run(client, {**multi, "calculate_output": "__import__('os')"}, "4")
    assert caught.value.param == "grader.calculate_output"


def test_a_python_grader_is_not_run_and_says_so(client: openai.OpenAI) -> None:
    python = {"type": "python", "name": "code", "source": "def grade(sample, item): return 1"}
    result = _run(client, python, "4")
    assert result.reward == 0.0
    assert result.metadata.errors.python_grader_server_error is True


def test_checkpoint_permissions_create_list_delete(client: openai.OpenAI) -> None:
    with (EXAMPLES / "support.jsonl").open("rb") as handle:
        training = client.files.create(file=handle, purpose="fine-tune").id
    job = client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=training)
    model = wait_for(client, job.id).fine_tuned_model
    earlier = client.fine_tuning.jobs.checkpoints.list(job.id).data[-1]
    checkpoint = earlier.fine_tuned_model_checkpoint
    permissions = client.fine_tuning.checkpoints.permissions
    created = list(permissions.create(checkpoint, project_ids=["proj_abc", "proj_def"]))
    assert [p.project_id for p in created] == ["proj_abc", "proj_def"]
    assert all(p.id.startswith("cp_") for p in created)
    listed = list(permissions.list(checkpoint))
    assert {p.id for p in listed} == {p.id for p in created}
    only = list(permissions.list(checkpoint, project_id="proj_def"))
    assert [p.project_id for p in only] == ["proj_def"]
    deleted = permissions.delete(created[0].id, fine_tuned_model_checkpoint=checkpoint)
    assert (deleted.id, deleted.deleted) == (created[0].id, True)
    assert [p.project_id for p in permissions.list(checkpoint)] == ["proj_def"]
    # The model itself is a checkpoint too; its permissions are its own.
    assert list(permissions.list(model)) == []
    with pytest.raises(openai.NotFoundError):
        list(permissions.list(model + ":ckpt-step-1"))
    with pytest.raises(openai.NotFoundError):
        permissions.delete(created[0].id, fine_tuned_model_checkpoint=checkpoint)
    with pytest.raises(openai.BadRequestError) as caught:
        permissions.create(checkpoint, project_ids=["not-a-project"])
    assert caught.value.param == "project_ids[0]"
