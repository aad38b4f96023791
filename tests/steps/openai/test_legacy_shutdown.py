"""The legacy /v1/fine-tunes API is labelled as shut down by OpenAI on 2024-01-04 (issue 10):
in the step catalog, the step's schema, the README, and the create step's error against
api.openai.com."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from steprun.runtime.errors import StepError
from steprun.runtime.schemas import SchemaRegistry
from steprun.steps.openai.jobs import STEP_TYPES

from .conftest import MakeContext

README = Path(__file__).resolve().parents[3] / "README.md"
CREATE = next(step for step in STEP_TYPES if step.type == "openai.create_fine_tuning_job")


def _steprun(*args: str) -> str:
    script = Path(sys.executable).with_name("steprun")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "steprun.runtime.cli"]
    done = subprocess.run([*command, *args], capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


def test_the_step_catalog_says_the_legacy_api_is_shut_down() -> None:
    line = next(
        line for line in _steprun("steps").splitlines() if "openai.create_fine_tuning_job" in line
    )
    assert "shut down by OpenAI 2024-01-04" in line


def test_the_schema_and_the_readme_say_so() -> None:
    schema = SchemaRegistry().builtin("openai.create_fine_tuning_job.schema.json") or {}
    assert "shut the legacy /v1/fine-tunes API" in schema["description"]
    assert "2024-01-04" in schema["properties"]["api"]["description"]
    assert "2024-01-04" in README.read_text(encoding="utf-8")


@pytest.mark.anyio
async def test_the_legacy_create_step_against_openai_explains_the_shutdown(
    make_context: MakeContext,
) -> None:
    # No request is sent: without the check this would be a connection error (no network
    # here) or, at OpenAI, a bare 404.
    async with httpx.AsyncClient() as http:
        harness = make_context("https://api.openai.com/v1", client=http, step_id="legacy")
        with pytest.raises(StepError) as caught:
            await CREATE.run({"api": "legacy", "training_file": "file-abc"}, harness.context)
    assert caught.value.code == "legacy_api_shut_down"
    assert "2024-01-04" in caught.value.message
    assert caught.value.step == "legacy"
