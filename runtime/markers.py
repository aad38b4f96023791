"""The only module a plugin author imports from to write hooks.

from steprun.runtime.markers import hookimpl

@hookimpl
def steprun_step_types():
    return [StepType(...)]
"""

from __future__ import annotations

import pluggy

PROJECT_NAME = "steprun"
ENTRY_POINT_GROUP = "steprun.steps"
# Like PYTEST_DISABLE_PLUGIN_AUTOLOAD: set to any non-empty value to skip entry points.
DISABLE_AUTOLOAD_ENV = "STEPRUN_DISABLE_PLUGIN_AUTOLOAD"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

__all__ = ["DISABLE_AUTOLOAD_ENV", "ENTRY_POINT_GROUP", "PROJECT_NAME", "hookimpl", "hookspec"]
