"""The providers a runtime serves in its own process, such as the embedded backend.

A provider with an ``origin`` and a ``build`` (``provider: local``) is mounted on the
runtime's HTTP client at that origin, and built on first use. The authorizations of a
flow that use it with the same settings share one instance. When they differ (a
simulated stand-in for OpenAI beside the real trainer, say), they are two places, as
they would be on the network, never one with their settings merged: the settings of the
flow's own authorization (or else of the first by name) get the provider's origin and
the runtime's state folder; each other set of settings gets an instance of its own at a
subdomain named after its first authorization (``http://replacement.local.steprun.invalid``)
with its state in a folder beside (``local-backend.replacement``). The choice depends on
the flow alone, so a resumed run, in any process, finds each instance where it was.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from .errors import InvalidInput

if TYPE_CHECKING:
    import httpx

    from .authorizations import Authorization
    from .providers import Provider


class InProcess:
    """The in-process provider instances of one runtime.

    ``state_dir`` is where they keep their state unless an authorization says (the CLI
    sets it beside the run store); None keeps it in memory.
    """

    def __init__(self, providers: Mapping[str, Provider]) -> None:
        self._all = providers
        self._served: dict[str, Provider] | None = None
        self.state_dir: Path | None = None
        self._options: dict[str, dict[str, Any]] = {}  # host -> options to build with
        self._built: dict[str, Any] = {}  # host -> instance

    @property
    def _providers(self) -> dict[str, Provider]:
        # Found on first use: listing a runtime's providers may import a step pack, which a
        # run that makes no request never needs (bench/cold_start.py).
        if self._served is None:
            self._served = {
                name: p for name, p in self._all.items() if p.build is not None and p.origin
            }
        return self._served

    def serves(self, provider: str) -> bool:
        return provider in self._providers

    def mounts(self) -> dict[str, httpx.AsyncBaseTransport]:
        """Transports for the HTTP client: each origin and its subdomains."""
        import httpx

        mounts: dict[str, httpx.AsyncBaseTransport] = {}
        for provider in self._providers.values():
            scheme, host = _split(provider)
            transport = httpx.ASGITransport(app=self._entry)
            mounts[f"{scheme}://{host}"] = transport
            mounts[f"{scheme}://*.{host}"] = transport
        return mounts

    def register(
        self,
        resolved: Mapping[str, Authorization],
        *,
        default: str | None,
        base_dir: Path,
    ) -> dict[str, Authorization]:
        """A flow's resolved authorizations, each pointed at the instance it calls for."""
        if not resolved:
            return {}  # a flow without authorizations need not list the providers
        groups: dict[tuple[str, str], list[str]] = {}
        for name in sorted(resolved):
            authorization = resolved[name]
            if authorization.provider in self._providers:
                groups.setdefault(_key(authorization), []).append(name)
        result = dict(resolved)
        for provider_name, provider in self._providers.items():
            mine = {key: names for key, names in groups.items() if key[0] == provider_name}
            if not mine:
                continue
            primary = next((k for k, names in mine.items() if default in names), next(iter(mine)))
            scheme, origin_host = _split(provider)
            for key, names in mine.items():
                options = {"base_dir": base_dir, **resolved[names[0]].options}
                if key == primary:
                    host = origin_host
                    if host not in self._built:  # the first run's settings, until built
                        self._options[host] = options
                    continue
                host = f"{_label(names[0])}.{origin_host}"
                # A run that comes later with other settings under the same name finds the
                # instance the first one built, as for the origin.
                self._options.setdefault(host, {**options, "folder_suffix": host.split(".")[0]})
                for name in names:
                    old = resolved[name].base_url
                    new = old.replace(f"{scheme}://{origin_host}", f"{scheme}://{host}", 1)
                    result[name] = resolved[name].model_copy(update={"base_url": new})
        return result

    def get(self, provider_name: str) -> Any:
        """The instance at the provider's own origin (built on first use)."""
        provider = self._providers.get(provider_name)
        if provider is None:
            raise InvalidInput(f"provider {provider_name!r} is not served in this process")
        return self._instance(_split(provider)[1])

    def close(self) -> None:
        for built in self._built.values():
            close = getattr(built, "close", None)  # the embedded backend's state, say
            if close is not None:
                close()
        self._built.clear()

    def _instance(self, host: str) -> Any:
        built = self._built.get(host)
        if built is not None:
            return built
        provider = self._provider_of(host)
        assert provider.build is not None
        options = dict(self._options.get(host, {}))
        suffix = options.pop("folder_suffix", None)
        state_dir = self.state_dir
        if state_dir is not None and suffix is not None:
            state_dir = state_dir.with_name(f"{state_dir.name}.{suffix}")
        built = provider.build({"state_dir": state_dir, **options})
        self._built[host] = built
        return built

    def _provider_of(self, host: str) -> Provider:
        for provider in self._providers.values():
            origin_host = _split(provider)[1]
            if host == origin_host or host.endswith("." + origin_host):
                return provider
        raise InvalidInput(f"no in-process provider serves {host}")

    async def _entry(self, scope: Any, receive: Any, send: Any) -> None:
        host = scope["server"][0] if scope.get("server") else ""
        if host not in self._options and host not in self._built:
            provider = self._provider_of(host)
            if host != _split(provider)[1]:
                # A subdomain no authorization of this runtime named: nothing is there.
                await _not_here(host, send)
                return
        await self._instance(host).app(scope, receive, send)


async def _not_here(host: str, send: Any) -> None:
    body = json.dumps(
        {
            "error": {
                "message": f"{host} is not served here: no authorization of this run names it",
                "type": "invalid_request_error",
                "param": None,
                "code": "unknown_host",
            }
        }
    ).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": 404, "headers": headers})
    await send({"type": "http.response.body", "body": body})


def _key(authorization: Authorization) -> tuple[str, str]:
    return authorization.provider, json.dumps(authorization.options, sort_keys=True, default=str)


def _split(provider: Provider) -> tuple[str, str]:
    parts = urlsplit(provider.origin or "")
    return parts.scheme, parts.hostname or ""


def _label(name: str) -> str:
    """An authorization's name as a DNS label: lower case, letters, digits and hyphens."""
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    return label[:63] or "auth"


__all__ = ["InProcess"]
