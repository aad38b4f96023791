"""steprun's runtime: the engine that runs Steps, and the API to embed it.

Only re-exports live here; each name's module says what it is.
"""

from __future__ import annotations

from .authorizations import Authorization
from .errors import (
    ErrorInfo,
    FlowInvalid,
    InvalidInput,
    PluginError,
    Problem,
    RunFailed,
    SecretError,
    StepError,
    SteprunError,
    StepTimeout,
    StoreError,
)
from .markers import hookimpl, hookspec
from .runtime import RunResult, Runtime
from .step import StepContext, StepLogger, StepResult, StepType

__all__ = [
    "Authorization",
    "ErrorInfo",
    "FlowInvalid",
    "InvalidInput",
    "PluginError",
    "Problem",
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
