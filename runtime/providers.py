"""Providers: where an authorization sends a step's requests, declared by plugins.

A provider plugin returns :class:`Provider` declarations from the ``steprun_providers``
hook: its name (what an authorization's ``provider`` says), the JSON Schema of its
authorization settings, how its base URL follows from them, which settings are secrets,
what it cannot do (refused while the flow is validated, before any effect) and, for a
provider that lives in this process (the embedded backend), how to build its ASGI app.

The engine knows providers only through these declarations: it imports none of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

# Settings every provider's authorization accepts.
COMMON_SETTINGS: dict[str, Any] = {
    "timeout": {
        "$ref": "#/$defs/duration",
        "description": "Read timeout for each request (default 600 s).",
    },
    "max_retries": {
        "type": "integer",
        "minimum": 0,
        "maximum": 10,
        "description": "Retries of a failed request (default 2).",
    },
}
API_KEY_SETTING: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "description": "The API key; use ${env:NAME} or ${file:PATH}, never a literal.",
}
BASE_URL_SETTING: dict[str, Any] = {
    "type": "string",
    "pattern": "^https?://",
    "description": "an http(s) URL, e.g. https://api.openai.com/v1",
}


class InProcess(Protocol):
    """What an in-process provider builds: an ASGI app (the embedded backend has more)."""

    async def app(self, scope: Any, receive: Any, send: Any) -> None: ...


@dataclass(frozen=True)
class Provider:
    """One provider, as its plugin declares it.

    ``settings`` are the JSON Schema properties of its authorization besides ``provider``
    (``$ref: "#/$defs/duration"`` may be used: they are checked inside the flow schema);
    ``required`` names the ones an authorization must set. ``base_url`` turns the
    authorization's settings into the URL its requests go to. ``secrets`` are the settings
    never shown, even when written as literals. ``refusal(step_type, config)`` returns one
    sentence saying why this provider cannot run that step with that config, or None.
    ``origin`` and ``build`` are for a provider served in this process: requests to
    ``origin`` go to the ASGI app ``build(options)`` returns, built on first use with an
    authorization's options, plus ``base_dir`` (the flow's folder, which relative paths in
    them are relative to) and ``state_dir`` (where the runtime keeps in-process state,
    beside its run store; None: in memory). Authorizations with other options get an
    instance of their own at a subdomain of ``origin`` (see steprun.runtime.in_process).
    """

    name: str
    title: str
    settings: Mapping[str, Any]
    base_url: Callable[[Mapping[str, Any]], str]
    required: tuple[str, ...] = ()
    secrets: tuple[str, ...] = ("api_key",)
    refusal: Callable[[str, Mapping[str, Any]], str | None] | None = None
    origin: str | None = None
    build: Callable[[Mapping[str, Any]], Any] | None = None

    def problems(self) -> list[str]:
        """What is wrong with this declaration (empty when it is usable)."""
        wrong = []
        if not self.name or not self.name.replace("_", "").isalnum() or not self.name.islower():
            wrong.append(f"name {self.name!r} must be lower-case letters, digits and _")
        if "provider" in self.settings:
            wrong.append("settings may not declare 'provider' (the runtime does)")
        missing = [name for name in self.required if name not in self.settings]
        if missing:
            wrong.append(f"required settings {missing} are not in its settings")
        if (self.origin is None) != (self.build is None):
            wrong.append("origin and build go together (an in-process provider has both)")
        return wrong


def authorization_schema(providers: Mapping[str, Provider]) -> dict[str, Any]:
    """The flow schema's ``$defs/authorization``: one branch per registered provider."""
    names = sorted(providers)
    branches = []
    for name in names:
        provider = providers[name]
        then: dict[str, Any] = {
            "additionalProperties": False,
            "properties": {"provider": True, **provider.settings},
        }
        if provider.required:
            then["required"] = list(provider.required)
        branches.append({"if": {"properties": {"provider": {"const": name}}}, "then": then})
    return {
        "title": "Authorization",
        "type": "object",
        "required": ["provider"],
        "properties": {
            "provider": {
                "description": "; ".join(f"{n}: {providers[n].title}" for n in names),
                "enum": names,
            }
        },
        "allOf": branches,
    }


__all__ = [
    "API_KEY_SETTING",
    "BASE_URL_SETTING",
    "COMMON_SETTINGS",
    "InProcess",
    "Provider",
    "authorization_schema",
]
