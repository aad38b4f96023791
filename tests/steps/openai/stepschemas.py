"""Run a fine-tuning step as the engine does: its config checked against its schema first."""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from referencing import Registry
from referencing.jsonschema import DRAFT202012

import steprun.schemas
from steprun.runtime.step import StepContext, StepType
from steprun.steps.openai import events, jobs, wait

SCHEMA_DIR = Path(steprun.schemas.__file__).parent
STEP_TYPES: dict[str, StepType] = {
    step.type: step for module in (jobs, events, wait) for step in module.STEP_TYPES
}


@functools.cache
def _registry() -> Registry[Any]:
    resources = []
    for path in SCHEMA_DIR.glob("openai.*.schema.json"):
        schema = json.loads(path.read_text(encoding="utf-8"))
        resources.append((schema["$id"], DRAFT202012.create_resource(schema)))
    registry: Registry[Any] = Registry().with_resources(resources)
    return registry


def schema(step_type: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(
        (SCHEMA_DIR / f"{step_type}.schema.json").read_text(encoding="utf-8")
    )
    return data


def config_errors(step_type: str, config: Any) -> list[str]:
    validator = Draft202012Validator(schema(step_type), registry=_registry())
    return [error.message for error in validator.iter_errors(config)]


async def run_step(step_type: str, config: dict[str, Any], context: StepContext) -> Any:
    errors = config_errors(step_type, config)
    assert not errors, f"{step_type} config {config} is invalid: {errors}"
    return await STEP_TYPES[step_type].run(dict(config), context)


__all__ = ["STEP_TYPES", "config_errors", "run_step", "schema"]
