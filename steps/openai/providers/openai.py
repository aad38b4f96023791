"""``provider: openai``: the OpenAI API (or any server that speaks it, with base_url)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from steprun.runtime.authorizations import OPENAI_BASE_URL
from steprun.runtime.providers import API_KEY_SETTING, BASE_URL_SETTING, COMMON_SETTINGS, Provider

from .base import Adapter

ADAPTER = Adapter()


def _base_url(settings: Mapping[str, Any]) -> str:
    return str(settings.get("base_url") or OPENAI_BASE_URL)


PROVIDER = Provider(
    name="openai",
    title="the OpenAI API or any compatible server (base_url)",
    settings={
        "api_key": API_KEY_SETTING,
        "organization": {"type": "string", "description": "Sent as OpenAI-Organization."},
        "project": {"type": "string", "description": "Sent as OpenAI-Project."},
        "base_url": BASE_URL_SETTING,
        **COMMON_SETTINGS,
    },
    base_url=_base_url,
    secrets=("api_key", "organization", "project"),
    refusal=ADAPTER.refusal,
)

__all__ = ["ADAPTER", "PROVIDER"]
