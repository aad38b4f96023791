"""Every request body the create step can build, for many valid configs, is a valid request
of the shared OpenAPI files; configs the API would refuse are refused by the step schema."""

from __future__ import annotations

from typing import Any

import pytest

from steprun.steps.openai.jobs import current_body, legacy_body

from ... import contract
from .stepschemas import config_errors

CREATE = "openai.create_fine_tuning_job"
TAGS = {"steprun_run_id": "run-1", "steprun_step_id": "job", "steprun_execution": "e" * 32}
BASE = {"training_file": "file-abc123", "model": "gpt-4o-mini-2024-07-18"}


def rl(grader: dict[str, Any], **hyperparameters: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {"grader": grader}
    if hyperparameters:
        settings["hyperparameters"] = hyperparameters
    return {**BASE, "method": {"type": "reinforcement", "reinforcement": settings}}


MESSAGES = [{"role": "user", "content": "Grade {{ sample.output_text }}", "type": "message"}]

CURRENT_CONFIGS: list[dict[str, Any]] = [
    BASE,
    {
        **BASE,
        "validation_file": "file-val",
        "suffix": "s" * 64,
        "seed": 0,
        "metadata": {f"key{n}": "v" * 512 for n in range(13)},
        "result_format": "raw",
    },
    {**BASE, "validation_file": None, "suffix": None, "seed": None},
    {**BASE, "method": {"type": "supervised"}},
    {
        **BASE,
        "method": {
            "type": "supervised",
            "supervised": {
                "hyperparameters": {
                    "batch_size": 256,
                    "learning_rate_multiplier": 0.02,
                    "n_epochs": 50,
                }
            },
        },
    },
    {
        **BASE,
        "method": {
            "type": "supervised",
            "supervised": {
                "hyperparameters": {
                    "batch_size": "auto",
                    "learning_rate_multiplier": "auto",
                    "n_epochs": "auto",
                }
            },
        },
    },
    {**BASE, "method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.1, "n_epochs": 2}}}},
    {
        **BASE,
        "method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": "auto", "batch_size": 8}}},
    },
    rl(
        {
            "type": "string_check",
            "name": "exact",
            "input": "{{ sample.output_text }}",
            "reference": "{{ item.answer }}",
            "operation": "eq",
        }
    ),
    rl(
        {
            "type": "text_similarity",
            "name": "close",
            "input": "{{ sample.output_text }}",
            "reference": "{{ item.answer }}",
            "evaluation_metric": "fuzzy_match",
        },
        reasoning_effort="high",
        compute_multiplier=2.5,
        eval_interval=10,
        eval_samples="auto",
        n_epochs=3,
        learning_rate_multiplier=0.5,
        batch_size="auto",
    ),
    rl(
        {
            "type": "python",
            "name": "py",
            "source": "def grade(sample, item):\n    return 1.0",
            "image_tag": "2025-05-08",
        }
    ),
    rl(
        {
            "type": "score_model",
            "name": "judge",
            "model": "gpt-4o-2024-08-06",
            "input": MESSAGES,
            "range": [0, 1],
            "sampling_params": {"temperature": 0.2, "seed": 7},
        }
    ),
    rl(
        {
            "type": "multi",
            "name": "both",
            "calculate_output": "0.5 * a + 0.5 * b",
            "graders": {
                "type": "string_check",
                "name": "a",
                "input": "x",
                "reference": "y",
                "operation": "like",
            },
        }
    ),
    {
        **BASE,
        "hyperparameters": {"n_epochs": 3, "batch_size": "auto", "learning_rate_multiplier": 1.8},
    },
    {
        **BASE,
        "integrations": [
            {
                "type": "wandb",
                "wandb": {"project": "ft", "name": None, "entity": "team", "tags": ["a", "b"]},
            },
            {"type": "wandb", "wandb": {"project": "other"}},
        ],
    },
]

LEGACY_CONFIGS: list[dict[str, Any]] = [
    {"api": "legacy", "training_file": "file-abc123"},
    {
        "api": "legacy",
        "training_file": "file-abc123",
        "validation_file": "file-val",
        "model": "davinci",
        "n_epochs": 4,
        "batch_size": 32,
        "learning_rate_multiplier": 0.1,
        "prompt_loss_weight": 0.01,
        "suffix": "s" * 40,
    },
    {
        "api": "legacy",
        "training_file": "file-abc123",
        "validation_file": "file-val",
        "compute_classification_metrics": True,
        "classification_n_classes": 5,
    },
    {
        "api": "legacy",
        "training_file": "file-abc123",
        "validation_file": "file-val",
        "model": "ada",
        "compute_classification_metrics": True,
        "classification_positive_class": " yes",
        "classification_betas": [0.5, 1, 2],
    },
    {"api": "legacy", "training_file": "f", "model": "curie", "suffix": None, "n_epochs": None},
]

INVALID_CONFIGS: list[tuple[str, dict[str, Any]]] = [
    ("model is required with today's API", {"training_file": "f"}),
    ("training_file is required", {"model": "m"}),
    ("suffix over 64", {**BASE, "suffix": "s" * 65}),
    ("legacy suffix over 40", {"api": "legacy", "training_file": "f", "suffix": "s" * 41}),
    ("seed below 0", {**BASE, "seed": -1}),
    ("metadata over 13 keys", {**BASE, "metadata": {f"k{n}": "v" for n in range(14)}}),
    ("metadata value over 512", {**BASE, "metadata": {"k": "v" * 513}}),
    ("reserved metadata key", {**BASE, "metadata": {"steprun_step_id": "x"}}),
    ("unknown method", {**BASE, "method": {"type": "rlhf"}}),
    ("settings of another method", {**BASE, "method": {"type": "supervised", "dpo": {}}}),
    (
        "reinforcement without grader",
        {**BASE, "method": {"type": "reinforcement", "reinforcement": {}}},
    ),
    (
        "string_check without operation",
        rl({"type": "string_check", "name": "g", "input": "a", "reference": "b"}),
    ),
    (
        "n_epochs 0",
        {
            **BASE,
            "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 0}}},
        },
    ),
    ("batch_size 257", {**BASE, "hyperparameters": {"batch_size": 257}}),
    ("learning rate 0", {**BASE, "hyperparameters": {"learning_rate_multiplier": 0}}),
    (
        "dpo beta over 2",
        {**BASE, "method": {"type": "dpo", "dpo": {"hyperparameters": {"beta": 2.5}}}},
    ),
    ("auto misspelt", {**BASE, "hyperparameters": {"n_epochs": "automatic"}}),
    ("legacy setting without api legacy", {**BASE, "n_epochs": 3}),
    ("today's setting with api legacy", {"api": "legacy", "training_file": "f", "seed": 3}),
    (
        "method with api legacy",
        {"api": "legacy", "training_file": "f", "method": {"type": "supervised"}},
    ),
    (
        "classification metrics without validation file",
        {
            "api": "legacy",
            "training_file": "f",
            "compute_classification_metrics": True,
            "classification_n_classes": 2,
        },
    ),
    (
        "classification metrics without classes",
        {
            "api": "legacy",
            "training_file": "f",
            "validation_file": "v",
            "compute_classification_metrics": True,
        },
    ),
    (
        "betas without positive class",
        {"api": "legacy", "training_file": "f", "classification_betas": [1]},
    ),
    ("wandb without project", {**BASE, "integrations": [{"type": "wandb", "wandb": {}}]}),
    ("a suffix that breaks the model name (issue 10)", {**BASE, "suffix": "a b/c:d"}),
    (
        "hyperparameters both at the top and in the method (issue 10)",
        {
            **BASE,
            "hyperparameters": {"n_epochs": 2},
            "method": {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 3}}},
        },
    ),
    ("unknown key", {**BASE, "epochs": 3}),
    ("bad result_format", {**BASE, "result_format": "json"}),
]


@pytest.mark.parametrize("config", CURRENT_CONFIGS)
def test_current_create_body_is_a_valid_request(config: dict[str, Any]) -> None:
    assert config_errors(CREATE, config) == []
    body = current_body(config, TAGS)
    contract.validate_request("current", "POST", "/fine_tuning/jobs", body)
    assert body["metadata"].items() >= TAGS.items()
    assert len(body["metadata"]) <= 16


@pytest.mark.parametrize("config", LEGACY_CONFIGS)
def test_legacy_create_body_is_a_valid_request(config: dict[str, Any]) -> None:
    assert config_errors(CREATE, config) == []
    body = legacy_body(config)
    contract.validate_request("legacy", "POST", "/fine-tunes", body)
    assert "api" not in body and "result_format" not in body


@pytest.mark.parametrize(("why", "config"), INVALID_CONFIGS, ids=[c[0] for c in INVALID_CONFIGS])
def test_schema_refuses_configs_the_api_would_refuse(why: str, config: dict[str, Any]) -> None:
    assert config_errors(CREATE, config), why


@pytest.mark.parametrize(
    ("step", "config"),
    [
        ("openai.list_fine_tuning_jobs", {"api": "legacy", "limit": 5}),
        ("openai.list_fine_tuning_jobs", {"limit": 101}),
        ("openai.list_fine_tuning_events", {"job_id": "ft-1", "api": "legacy", "after": "x"}),
        ("openai.list_fine_tuning_checkpoints", {"job_id": "ftjob-1", "limit": 0}),
        ("openai.wait_for_fine_tuning_job", {"job_id": "ftjob-1", "max_wait": "two hours"}),
        ("openai.wait_for_fine_tuning_job", {"job_id": "ftjob-1", "max_wait": 0}),
        ("openai.cancel_fine_tuning_job", {"job_id": "ftjob-1", "if_finished": "ignore"}),
        ("openai.retrieve_fine_tuning_job", {"job_id": ""}),
        ("openai.retrieve_fine_tuning_job", {"job_id": "ftjob-1", "api": "v2"}),
        ("openai.pause_fine_tuning_job", {}),
    ],
)
def test_other_step_schemas_refuse_bad_configs(step: str, config: dict[str, Any]) -> None:
    assert config_errors(step, config)


def test_every_property_has_a_title_and_a_description() -> None:
    from .stepschemas import STEP_TYPES, schema

    checked: list[str] = []

    def resolve(node: dict[str, Any]) -> dict[str, Any]:
        if "$ref" not in node:
            return node
        file, _, pointer = node["$ref"].partition("#")
        target: dict[str, Any] = schema(file.removesuffix(".schema.json"))
        for part in pointer.strip("/").split("/"):
            target = target[part]
        return {**target, **{k: v for k, v in node.items() if k != "$ref"}}

    def descend(node: Any, where: str) -> None:
        # Settings are declared under properties (and items, additionalProperties); the
        # conditions (if/then/else, not, anyOf) only restate them to constrain them.
        if not isinstance(node, dict):
            return
        for name, prop in (node.get("properties") or {}).items():
            resolved = resolve(prop)
            assert {"title", "description"} <= set(resolved), f"{where}.{name}"
            checked.append(f"{where}.{name}")
            descend(resolved, f"{where}.{name}")
        for key in ("items", "additionalProperties"):
            descend(node.get(key), f"{where}[]")

    for step_type in STEP_TYPES:
        document = schema(step_type)
        assert document["additionalProperties"] is False
        assert document["$id"] == f"https://steprun.dev/schemas/{step_type}.schema.json"
        descend(document, step_type)
    assert "openai.create_fine_tuning_job.method.dpo.hyperparameters.beta" in checked
    assert "openai.create_fine_tuning_job.integrations[].wandb.project" in checked
