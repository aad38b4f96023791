"""Every hook the runtime calls, in one place.

Hook arguments are keyword-only and are never renamed: a spec grows by adding arguments,
and pluggy lets an implementation accept any subset of them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .markers import hookspec

if TYPE_CHECKING:
    from .providers import Provider
    from .step import StepType


@hookspec
def steprun_step_types() -> list[StepType]:
    """Return the step types this plugin provides.

    Called when a runtime is created, for every registered plugin (the core pack first,
    then entry-point plugins), and again when a deferred built-in pack (openai, eval) is
    registered on first use. The lists are concatenated; a type name provided twice
    is an error that names both plugins. Each item must be a :class:`StepType`.
    """


@hookspec
def steprun_report(report: dict[str, Any]) -> None:
    """Receive one report, already redacted.

    Called once per executed step, after it ran (``report["kind"] == "step"``), and once
    when the run ends (``report["kind"] == "run"``). Every implementation is called; return
    values are ignored. An exception raised here is reported as a warning and does not fail
    the run: a reporting sink must never change a run's outcome.
    """


@hookspec
def steprun_providers() -> list[Provider]:
    """Return the providers this plugin declares (what an authorization's ``provider`` names).

    Called when a runtime is created, for every registered plugin, and again when a
    deferred built-in pack is registered (a runtime does so when it first needs a
    provider: an authorization to check or resolve). The lists are concatenated; a
    provider name declared twice is an error that names both plugins.
    Each item must be a :class:`~steprun.runtime.providers.Provider`.
    """


__all__ = ["steprun_providers", "steprun_report", "steprun_step_types"]
