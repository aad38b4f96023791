"""A training that diverges fails, through the steps, with its cause: full fine-tuning of
a base model named under ``models`` (steprun-tiny's own weights, from a folder) at an
absurd learning rate overflows to a non-finite loss."""

from __future__ import annotations

from pathlib import Path

import pytest

from steprun.runtime import Runtime
from steprun.runtime.local.trainer import tiny
from tests.local.conftest import EXAMPLES
from tests.local.trainer import conftest  # noqa: F401  (skips without the train extra)

pytestmark = pytest.mark.slow


@pytest.mark.anyio
async def test_a_training_that_diverges_fails_with_its_cause(tmp_path: Path) -> None:
    folder = tiny.ensure(tmp_path / "models")
    flow = {
        "flow": "diverges",
        "authorization": "local",
        "authorizations": {
            "local": {
                "provider": "local",
                "trainer": "transformers",
                "models": {"tiny-full": {"path": str(folder), "adapter": "full"}},
            }
        },
        "steps": [
            {
                "id": "upload",
                "type": "openai.upload_file",
                "config": {"file": str(EXAMPLES / "support.jsonl"), "purpose": "fine-tune"},
            },
            {
                "id": "job",
                "type": "openai.create_fine_tuning_job",
                "config": {
                    "training_file": "{{ upload.id }}",
                    "model": "tiny-full",
                    "seed": 2,
                    "hyperparameters": {
                        "n_epochs": 3,
                        "batch_size": 8,
                        "learning_rate_multiplier": 1e15,
                    },
                },
            },
            {
                "id": "wait",
                "type": "openai.wait_for_fine_tuning_job",
                "config": {"job_id": "{{ job.id }}", "max_wait": "30m"},
                "on_error": "failed",
            },
            {"id": "done", "type": "core.log", "config": {"message": "trained"}, "next": "end"},
            {"id": "failed", "type": "core.log", "config": {"message": "{{ error.message }}"}},
        ],
    }
    async with Runtime() as runtime:
        result = await runtime.run(flow)
    error = result.merge_fields["wait"]
    assert error.get("type") == "fine_tuning_job_failed", error
    assert error["code"] == "nan_loss"
    assert "diverged at step" in error["message"]
    assert "learning_rate_multiplier" in error["message"]


@pytest.mark.anyio
async def test_a_training_over_its_memory_limit_fails_out_of_memory() -> None:
    # max_memory below what torch, TRL and the model already take (~2 GB of address
    # space): torch's allocator refuses the first step's tensors, as when memory runs out.
    flow = {
        "flow": "out-of-memory",
        "authorization": "local",
        "authorizations": {
            "local": {"provider": "local", "trainer": "transformers", "max_memory": "1GB"}
        },
        "steps": [
            {
                "id": "upload",
                "type": "openai.upload_file",
                "config": {"file": str(EXAMPLES / "support.jsonl"), "purpose": "fine-tune"},
            },
            {
                "id": "job",
                "type": "openai.create_fine_tuning_job",
                "config": {"training_file": "{{ upload.id }}", "model": "steprun-tiny"},
            },
            {
                "id": "wait",
                "type": "openai.wait_for_fine_tuning_job",
                "config": {"job_id": "{{ job.id }}", "max_wait": "30m"},
                "on_error": "failed",
            },
            {"id": "done", "type": "core.log", "config": {"message": "trained"}, "next": "end"},
            {"id": "failed", "type": "core.log", "config": {"message": "{{ error.message }}"}},
        ],
    }
    async with Runtime() as runtime:
        result = await runtime.run(flow)
    error = result.merge_fields["wait"]
    assert error.get("type") == "fine_tuning_job_failed", error
    assert error["code"] == "out_of_memory"
    assert "ran out of memory" in error["message"]
    assert "can't allocate memory" in error["message"]
    assert "batch_size" in error["message"]
