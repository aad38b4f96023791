"""The OpenAI step pack: the whole fine-tuning lifecycle as Steps.

Check the data, upload it, create the job (today's API or the legacy ``/fine-tunes``),
retrieve, list, watch events and checkpoints, pause, resume, wait, cancel, ask the
fine-tuned model, download what a job produced, delete it. Every step talks through one
careful client (:mod:`.client`): retries as the official SDK does them, structured errors,
SSE, and no job created twice.
"""

from __future__ import annotations

from steprun.runtime.markers import hookimpl
from steprun.runtime.providers import Provider
from steprun.runtime.step import StepType

from . import (
    completions,
    deploy,
    download,
    events,
    files,
    jobs,
    models,
    models_list,
    providers,
    record,
    training_data,
    wait,
)

_MODULES = (
    training_data,
    files,
    download,
    jobs,
    events,
    wait,
    completions,
    models,
    models_list,
    record,
    deploy,
)


@hookimpl
def steprun_step_types() -> list[StepType]:
    return [step_type for module in _MODULES for step_type in module.STEP_TYPES]


@hookimpl
def steprun_providers() -> list[Provider]:
    return list(providers.PROVIDERS)


__all__: list[str] = []
