"""The plugin manager: built-in packs and entry-point plugins, through the same hook.

Built-in packs are registered from :data:`DEFAULT_PLUGINS` (as pytest registers its own
features), then third-party plugins from the ``steprun.steps`` entry point group unless
``STEPRUN_DISABLE_PLUGIN_AUTOLOAD`` is set. Each runtime has its own manager.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Iterable, Mapping
from typing import Any, TypeVar

import pluggy

from . import hookspecs
from .errors import PluginError
from .markers import DISABLE_AUTOLOAD_ENV, ENTRY_POINT_GROUP, PROJECT_NAME
from .providers import Provider
from .step import StepType

DEFAULT_PLUGINS: tuple[str, ...] = (
    "steprun.steps.core",
    "steprun.steps.openai",
    "steprun.steps.eval",
)


def make_plugin_manager(
    *,
    plugins: Iterable[object] = (),
    autoload: bool | None = None,
    environ: Mapping[str, str] | None = None,
    builtins: Iterable[str] = DEFAULT_PLUGINS,
    defer: Iterable[str] = (),
) -> pluggy.PluginManager:
    """A fresh manager with the built-ins, ``plugins`` and (unless disabled) entry points.

    Built-ins named in ``defer`` are not imported (:mod:`.packs` imports them when needed);
    their names stay reserved, so an entry point of the same name is skipped as it would be
    if they had been registered.
    """
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    deferred = set(defer)
    reserved = {name.rsplit(".", 1)[-1] for name in deferred}
    for name in builtins:
        if name in deferred:
            continue
        try:
            module = importlib.import_module(name)
        except Exception as exc:
            raise PluginError(
                f"built-in plugin {name} failed to import: {exc.__class__.__name__}: {exc}"
            ) from exc
        register(pm, module, name.rsplit(".", 1)[-1])
    for plugin in plugins:
        # Named so that errors can say which plugin: a module by its name, an object by
        # its class (pluggy would use its id(), a number nobody recognises).
        name = getattr(plugin, "__name__", None) or f"{type(plugin).__qualname__}@{id(plugin):x}"
        register(pm, plugin, name)
    environ = os.environ if environ is None else environ
    if autoload is None:
        autoload = not environ.get(DISABLE_AUTOLOAD_ENV)
    if autoload:
        _load_entry_points(pm, reserved)
    return pm


def _may_declare_plugins() -> bool:
    """Whether an installed distribution may declare a ``steprun.steps`` entry point.

    A look at each ``entry_points.txt`` on ``sys.path`` takes a millisecond or two, where
    importing importlib.metadata and asking it takes a tenth of steprun's cold start
    (bench/cold_start.py). Whenever this cannot be sure (a zip or an egg on ``sys.path``, a
    finder of distributions besides the standard one) it says True, and importlib.metadata
    decides, as it always did.
    """
    import sys
    from importlib.machinery import PathFinder

    if any(
        hasattr(finder, "find_distributions") and finder is not PathFinder
        for finder in sys.meta_path
    ):
        return True
    marker = f"[{ENTRY_POINT_GROUP}]"
    for entry in sys.path:
        folder = entry or "."
        if folder.lower().endswith(".egg"):
            return True
        try:
            scan = os.scandir(folder)
        except OSError:
            if os.path.isfile(folder):
                return True  # a zip, which importlib.metadata reads
            continue
        with scan:
            for item in scan:
                # As importlib.metadata matches them: case-insensitively.
                if not item.name.lower().endswith((".dist-info", ".egg-info")):
                    continue
                try:
                    with open(os.path.join(item.path, "entry_points.txt"), "rb") as file:
                        if marker.encode() in file.read():
                            return True
                except (NotADirectoryError, FileNotFoundError):
                    continue
                except OSError:
                    return True
    return False


def _load_entry_points(pm: pluggy.PluginManager, reserved: set[str]) -> None:
    if not _may_declare_plugins():
        return
    from importlib.metadata import entry_points  # imported here: `steprun --help` stays fast

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        taken = ep.name in reserved or pm.get_plugin(ep.name) is not None
        if taken or pm.is_blocked(ep.name):
            continue
        try:
            plugin = ep.load()
        except Exception as exc:
            dist = f" (from {ep.dist.name} {ep.dist.version})" if ep.dist else ""
            raise PluginError(
                f"plugin {ep.name!r}{dist} failed to load from entry point "
                f"{ep.value!r}: {exc.__class__.__name__}: {exc}. Fix or uninstall it, or set "
                f"{DISABLE_AUTOLOAD_ENV}=1 to skip entry-point plugins."
            ) from exc
        register(pm, plugin, ep.name)


def register(pm: pluggy.PluginManager, plugin: object, name: str) -> None:
    """pluggy's register, its validation error said in one sentence (not its traceback)."""
    try:
        pm.register(plugin, name=name)
    except pluggy.PluginValidationError as exc:
        hooks = {
            hook: list(getattr(pm.hook, hook).spec.argnames)
            for hook in dir(pm.hook)
            if hook.startswith(f"{PROJECT_NAME}_") and getattr(pm.hook, hook).spec is not None
        }
        wrong = next((h for h in hooks if h in str(exc)), None)
        takes = (
            f"hook {wrong} takes the keyword argument(s) {', '.join(hooks[wrong]) or 'none'}"
            if wrong
            else "see steprun.runtime.hookspecs for the hooks and their arguments"
        )
        raise PluginError(
            f"plugin {name!r} implements a hook with arguments steprun does not pass: {takes}; "
            "an implementation may take fewer of them, never others"
        ) from None


def collect_step_types(pm: pluggy.PluginManager) -> dict[str, StepType]:
    """Every plugin's step types by type name; checks what each plugin returned."""
    return _gather(pm, "steprun_step_types", StepType, "steprun.runtime.StepType", "step type")


def collect_providers(pm: pluggy.PluginManager) -> dict[str, Provider]:
    """Every plugin's providers by name; checks what each plugin returned."""
    return _gather(
        pm, "steprun_providers", Provider, "steprun.runtime.providers.Provider", "provider"
    )


_Item = TypeVar("_Item", StepType, Provider)


def _gather(
    pm: pluggy.PluginManager, hook: str, kind: type[_Item], where: str, noun: str
) -> dict[str, _Item]:
    """What every implementation of ``hook`` returned, by name, each checked; the hook is
    named in every error (kedro ``runner/task.py``)."""
    found: dict[str, _Item] = {}
    owners: dict[str, str] = {}
    for impl in getattr(pm.hook, hook).get_hookimpls():
        owner = impl.plugin_name
        try:
            returned: Any = impl.function()
        except Exception as exc:
            raise PluginError(
                f"plugin {owner!r}: hook {hook} raised {exc.__class__.__name__}: {exc}"
            ) from exc
        if not isinstance(returned, list | tuple):
            raise PluginError(
                f"plugin {owner!r}: hook {hook} must return a list of {kind.__name__}, "
                f"returned {type(returned).__name__}"
            )
        for item in returned:
            if not isinstance(item, kind):
                raise PluginError(
                    f"plugin {owner!r}: hook {hook} returned {item!r}, which is not a {where}"
                )
            name = item.type if isinstance(item, StepType) else item.name
            wrong = item.problems()
            if wrong:
                raise PluginError(f"plugin {owner!r}: {noun} {name!r}: " + "; ".join(wrong))
            if name in found:
                verb = "provided" if kind is StepType else "declared"
                raise PluginError(
                    f"{noun} {name!r} is {verb} twice, by plugin {owners[name]!r} "
                    f"and by plugin {owner!r}; uninstall one of them"
                )
            found[name] = item
            owners[name] = owner
    return dict(sorted(found.items()))


__all__ = [
    "DEFAULT_PLUGINS",
    "collect_providers",
    "collect_step_types",
    "make_plugin_manager",
    "register",
]
