"""Exceptions of the runtime.

    SteprunError                  root: everything steprun raises on purpose
    ├── InvalidInput              the user's input is wrong; the CLI exits 2
    │   ├── FlowInvalid           a flow file has problems (every one, each a Problem)
    │   ├── SecretError           a ${env:…}/${file:…} reference cannot be resolved
    │   └── PluginError           a plugin failed to load or returned something unusable
    ├── StepError                 a step failed; carries the structured error object
    │   └── StepTimeout           a step ran past its timeout, or the run past its own
    ├── RunFailed                 a run ended unhandled; the CLI exits 1
    ├── RunCancelled              someone asked the run to stop (`steprun cancel`)
    └── StoreError                the run store is damaged or not a store; the CLI exits 2
        └── StoreUnavailable      the disk refuses the store (full, read-only, I/O); exit 1

Errors carry their context as attributes (file, line, step, JSON path, HTTP status,
request id) so a platform embedding the runtime can show them its own way. Messages say
what was expected, what was found and how to fix it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class SteprunError(Exception):
    """Root of every error steprun raises on purpose."""


class InvalidInput(SteprunError):
    """The flow, its inputs or the command line are wrong. Nothing has run."""

    exit_code = 2


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a flow, located as precisely as we can."""

    message: str
    file: str | None = None
    line: int | None = None
    step: str | None = None
    path: str | None = None  # dotted location inside the flow, e.g. "steps[2].config.model"

    def __str__(self) -> str:
        where = self.file or "<flow>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        parts = [where]
        if self.step is not None:
            parts.append(f"step {self.step!r}")
        if self.path:
            parts.append(self.path)
        return ": ".join(parts) + ": " + self.message

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "line": self.line,
            "step": self.step,
            "path": self.path,
            "message": self.message,
        }


class FlowInvalid(InvalidInput):
    """A flow has one or more problems; all of them are in :attr:`problems`."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(problems, key=lambda p: (p.file or "", p.line or 0))
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} found"
        super().__init__(head + ":\n" + "\n".join(f"  {p}" for p in self.problems))


class SecretError(InvalidInput):
    """A secret reference cannot be resolved (missing variable, unreadable file)."""


class PluginError(InvalidInput):
    """A plugin could not be loaded, or a hook returned something the runtime cannot use."""


@dataclass
class ErrorInfo:
    """The structured error object stored in a merge field and exposed as ``error``."""

    type: str
    message: str
    code: str | None = None
    param: str | None = None
    status: int | None = None
    request_id: str | None = None
    step: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "type": self.type,
            "message": self.message,
            "code": self.code,
            "param": self.param,
            "status": self.status,
            "request_id": self.request_id,
            "step": self.step,
        }
        data.update(self.extra)
        return data


class StepError(SteprunError):
    """A step failed. Steps raise it (or a subclass) to take the error exit.

    ``type``/``code``/``param`` follow OpenAI's error object; ``status`` and
    ``request_id`` come from the HTTP response when there was one. ``extra`` holds
    additional JSON fields a step wants in the error object (e.g. the failed job).
    """

    def __init__(
        self,
        message: str,
        *,
        type: str = "step_error",
        code: str | None = None,
        param: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
        step: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.info = ErrorInfo(
            type=type,
            message=message,
            code=code,
            param=param,
            status=status,
            request_id=request_id,
            step=step,
            extra=dict(extra or {}),
        )

    @property
    def message(self) -> str:
        return self.info.message

    @property
    def type(self) -> str:
        return self.info.type

    @property
    def code(self) -> str | None:
        return self.info.code

    @property
    def param(self) -> str | None:
        return self.info.param

    @property
    def status(self) -> int | None:
        return self.info.status

    @property
    def request_id(self) -> str | None:
        return self.info.request_id

    @property
    def step(self) -> str | None:
        return self.info.step

    def to_dict(self) -> dict[str, Any]:
        return self.info.to_dict()


class StepTimeout(StepError):
    """A step (or the whole run) ran past its time limit."""

    def __init__(self, message: str, *, step: str | None = None, code: str = "timeout") -> None:
        super().__init__(message, type="timeout", code=code, step=step)


class RunFailed(SteprunError):
    """A run ended with an unhandled error. ``error`` is the error object."""

    exit_code = 1

    def __init__(self, message: str, error: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.error = error or {}


class RunCancelled(SteprunError):
    """The run was asked to stop. Raised inside a step's wait; never an error exit."""

    exit_code = 1


class StoreError(SteprunError):
    """The run store cannot be opened, read or written."""

    exit_code = 2


class StoreUnavailable(StoreError):
    """The disk refuses the run store (full, read-only, an I/O error): the run stopped, and
    resumes once the disk is fixed."""

    exit_code = 1


__all__ = [
    "ErrorInfo",
    "FlowInvalid",
    "InvalidInput",
    "PluginError",
    "Problem",
    "RunCancelled",
    "RunFailed",
    "SecretError",
    "StepError",
    "StepTimeout",
    "SteprunError",
    "StoreError",
    "StoreUnavailable",
]
