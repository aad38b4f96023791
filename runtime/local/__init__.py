"""The embedded OpenAI-compatible fine-tuning backend (``provider: local``, ``serve-local``)."""

from __future__ import annotations

from .backend import DEFAULT_JOB_SECONDS, DEFAULT_ORGANIZATION, LocalBackend
from .faults import Fault, InjectedDisconnect
from .server import READY, quiet_injected_disconnects, serve

__all__ = [
    "DEFAULT_JOB_SECONDS",
    "DEFAULT_ORGANIZATION",
    "READY",
    "Fault",
    "InjectedDisconnect",
    "LocalBackend",
    "quiet_injected_disconnects",
    "serve",
]
