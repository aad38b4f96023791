"""Core steps: what real flows (and tests) need without any network.

``core.set`` writes values to its merge field, ``core.log`` writes a report line at a
level, ``core.fail`` raises an error of a given type, ``core.condition`` chooses an exit.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from steprun.runtime.errors import StepError
from steprun.runtime.markers import hookimpl
from steprun.runtime.step import ConfigPath, StepContext, StepResult, StepType


async def set_values(config: dict[str, Any], context: StepContext) -> Any:
    return config["value"] if "value" in config else dict(config["values"])


async def log(config: dict[str, Any], context: StepContext) -> Any:
    level = config.get("level", "info")
    fields = config.get("fields") or {}
    context.log.log(level, str(config["message"]), **fields)
    return {"level": level, "message": config["message"], **({"fields": fields} if fields else {})}


async def fail(config: dict[str, Any], context: StepContext) -> Any:
    raise StepError(
        str(config["message"]),
        type=config.get("type", "flow_error"),
        code=config.get("code"),
        param=config.get("param"),
        extra={"details": config["details"]} if "details" in config else None,
    )


async def condition(config: dict[str, Any], context: StepContext) -> Any:
    for index, case in enumerate(config.get("cases", [])):
        if case["when"] is True:
            context.log.debug(f"case {index} matched: next is {case['next']!r}")
            return StepResult({"matched": index, "next": case["next"]}, next=case["next"])
    target = config.get("default")
    context.log.debug(f"no case matched: next is {target or 'the following step'!r}")
    return StepResult({"matched": None, "next": target}, next=target)


def condition_exits(config: Mapping[str, Any]) -> Iterator[tuple[ConfigPath, str]]:
    cases = config.get("cases")
    if isinstance(cases, list):
        for index, case in enumerate(cases):
            if isinstance(case, dict) and isinstance(case.get("next"), str):
                yield ("cases", index, "next"), case["next"]
    if isinstance(config.get("default"), str):
        yield ("default",), config["default"]


STEP_TYPES = [
    StepType(
        type="core.set",
        title="Set values",
        version="1.0.0",
        run=set_values,
        description="Write a value (or a mapping of values) to the step's merge field.",
    ),
    StepType(
        type="core.log",
        title="Log a message",
        version="1.0.0",
        run=log,
        description="Write a line to the step's report at a level.",
    ),
    StepType(
        type="core.fail",
        title="Fail with an error",
        version="1.0.0",
        run=fail,
        description="Raise an error with a given type, code and message.",
    ),
    StepType(
        type="core.condition",
        title="Choose an exit",
        version="1.0.0",
        run=condition,
        exits=condition_exits,
        description="Go to the step of the first case whose `when` is true, else to `default`.",
    ),
]


@hookimpl
def steprun_step_types() -> list[StepType]:
    return list(STEP_TYPES)


__all__ = [
    "STEP_TYPES",
    "condition",
    "condition_exits",
    "fail",
    "log",
    "set_values",
    "steprun_step_types",
]
