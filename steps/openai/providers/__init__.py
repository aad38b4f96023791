"""One adapter per provider, behind the same OpenAI-shaped step configs.

Each module declares its provider (:class:`~steprun.runtime.providers.Provider`: name,
authorization settings, base URL, refusals) and its :class:`~.base.Adapter`. The step
pack registers them through the ``steprun_providers`` hook, like its step types.
"""

from __future__ import annotations

import typing

from . import azure, local, nebius, openai, together
from .base import Adapter, Call, route

if typing.TYPE_CHECKING:
    from steprun.runtime.authorizations import Authorization
    from steprun.runtime.providers import Provider

_MODULES = (openai, azure, nebius, together, local)
ADAPTERS: dict[str, Adapter] = {m.ADAPTER.name: m.ADAPTER for m in _MODULES}
PROVIDERS: list[Provider] = [m.PROVIDER for m in _MODULES]


def adapter_for(authorization: Authorization | None) -> Adapter:
    """The adapter of an authorization's provider; OpenAI's for a provider that no module
    here knows (a plugin's OpenAI-compatible server)."""
    name = authorization.provider if authorization is not None else "openai"
    return ADAPTERS.get(name, openai.ADAPTER)


__all__ = ["ADAPTERS", "PROVIDERS", "Adapter", "Call", "adapter_for", "route"]
