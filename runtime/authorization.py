"""One resolved authorization: what a step authenticates with (a pydantic model).

Its own module so that pydantic is imported only by runs that use an authorization;
:mod:`.authorizations` (reading and resolving them) hands it on under its old name.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr

from .authorizations import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT, OPENAI_BASE_URL


class Authorization(BaseModel):
    """A resolved authorization, handed to steps in ``context.authorization``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    provider: str
    api_key: SecretStr | None = None
    organization: str | None = None
    project: str | None = None
    base_url: str = OPENAI_BASE_URL
    timeout: float = DEFAULT_TIMEOUT
    max_retries: int = DEFAULT_MAX_RETRIES
    # Provider-specific settings, e.g. ``job_seconds`` of the local backend, ``endpoint``
    # and ``api_version`` of Azure.
    options: dict[str, Any] = {}

    @property
    def is_local(self) -> bool:
        return self.provider == "local"

    def public(self) -> dict[str, Any]:
        """What may be shown of it: never the key."""
        return {"name": self.name, "provider": self.provider, "base_url": self.base_url}


__all__ = ["Authorization"]
