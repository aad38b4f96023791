"""steprun's runtime: the engine that runs Steps, and the API to embed it.

Only re-exports live here; each name's module says what it is. They are imported on first
use (PEP 562), so that `steprun --help` and a plugin importing ``steprun.runtime.markers``
do not pay for the whole engine.
"""

from __future__ import annotations

import importlib
import typing

if typing.TYPE_CHECKING:
    from .authorizations import Authorization
    from .errors import (
        ErrorInfo,
        FlowInvalid,
        InvalidInput,
        PluginError,
        Problem,
        RunCancelled,
        RunFailed,
        SecretError,
        StepError,
        SteprunError,
        StepTimeout,
        StoreError,
    )
    from .markers import hookimpl, hookspec
    from .providers import Provider
    from .runtime import RunResult, Runtime
    from .step import StepContext, StepLogger, StepResult, StepType

_WHERE = {
    "Authorization": "authorizations",
    "ErrorInfo": "errors",
    "FlowInvalid": "errors",
    "InvalidInput": "errors",
    "PluginError": "errors",
    "Problem": "errors",
    "RunCancelled": "errors",
    "RunFailed": "errors",
    "SecretError": "errors",
    "SteprunError": "errors",
    "StepError": "errors",
    "StepTimeout": "errors",
    "StoreError": "errors",
    "hookimpl": "markers",
    "hookspec": "markers",
    "Provider": "providers",
    "RunResult": "runtime",
    "Runtime": "runtime",
    "StepContext": "step",
    "StepLogger": "step",
    "StepResult": "step",
    "StepType": "step",
}


def __getattr__(name: str) -> typing.Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "Authorization",
    "ErrorInfo",
    "FlowInvalid",
    "InvalidInput",
    "PluginError",
    "Problem",
    "Provider",
    "RunCancelled",
    "RunFailed",
    "RunResult",
    "Runtime",
    "SecretError",
    "StepContext",
    "StepError",
    "StepLogger",
    "StepResult",
    "StepTimeout",
    "StepType",
    "SteprunError",
    "StoreError",
    "hookimpl",
    "hookspec",
]
