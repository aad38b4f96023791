"""Built-in step packs imported on first use, found by the prefix of their type names.

The OpenAI pack alone costs more to import than a flow of core steps takes to run (httpx,
pydantic, its providers), so a runtime registers it, and the eval pack, only when something
asks for one of their step types, for a provider, or for the whole catalog. Each built-in
pack declares the prefix of its type names here; a test checks the packs keep to them.

Correctness does not depend on that laziness: a lookup of a name that a pending pack may
provide imports that pack first, and every import gathers the catalog again, so a
third-party plugin that provides the same name is still reported, as it was when every
pack was imported at start.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from typing import TypeVar

import pluggy

from .errors import PluginError

# Built-in packs imported only when needed: module -> the prefixes of their type names.
# ``provides_providers`` names those that declare providers (any provider lookup loads them).
LAZY_PACKS: dict[str, tuple[str, ...]] = {
    "steprun.steps.openai": ("openai.",),
    "steprun.steps.eval": ("eval.",),
}
PROVIDER_PACKS: frozenset[str] = frozenset({"steprun.steps.openai"})


class Packs:
    """The built-in packs a plugin manager has not imported yet."""

    def __init__(self, pm: pluggy.PluginManager, pending: Mapping[str, tuple[str, ...]]) -> None:
        self.pm = pm
        self.pending = dict(pending)
        self.loaded = 0  # bumped on every import: the catalogs gather again

    def for_type(self, name: str) -> bool:
        """Import the pending pack whose prefix ``name`` has; whether one was imported."""
        found = [m for m, prefixes in self.pending.items() if name.startswith(prefixes)]
        for module in found:
            self._load(module)
        return bool(found)

    def for_providers(self) -> bool:
        found = [m for m in self.pending if m in PROVIDER_PACKS]
        for module in found:
            self._load(module)
        return bool(found)

    def everything(self) -> bool:
        found = list(self.pending)
        for module in found:
            self._load(module)
        return bool(found)

    def _load(self, name: str) -> None:
        from .plugins import register

        del self.pending[name]
        try:
            module = importlib.import_module(name)
        except Exception as exc:
            raise PluginError(
                f"built-in plugin {name} failed to import: {exc.__class__.__name__}: {exc}"
            ) from exc
        register(self.pm, module, name.rsplit(".", 1)[-1])
        self.loaded += 1


_Item = TypeVar("_Item")


class Catalog(Mapping[str, _Item]):
    """Step types (or providers) by name, gathered again whenever a pending pack is imported.

    A lookup imports only the pack the name may come from (``load_for``); iterating, or a
    name no loaded plugin has, imports them all, so listings and "did you mean" stay whole.
    """

    def __init__(
        self,
        packs: Packs,
        gather: Callable[[], dict[str, _Item]],
        load_for: Callable[[str], bool],
    ) -> None:
        self._packs = packs
        self._gather = gather
        self._load_for = load_for
        self._items = gather()
        self._seen = packs.loaded

    def _fresh(self) -> dict[str, _Item]:
        if self._seen != self._packs.loaded:
            self._items = self._gather()
            self._seen = self._packs.loaded
        return self._items

    def __getitem__(self, name: str) -> _Item:
        self._load_for(name)
        items = self._fresh()
        if name not in items and self._packs.everything():
            items = self._fresh()
        return items[name]

    def __iter__(self) -> Iterator[str]:
        self._packs.everything()
        return iter(self._fresh())

    def __len__(self) -> int:
        self._packs.everything()
        return len(self._fresh())

    def __repr__(self) -> str:
        return f"Catalog({dict(self)!r})"


__all__ = ["LAZY_PACKS", "PROVIDER_PACKS", "Catalog", "Packs"]
