"""The HTTP step service (``steprun serve``) and the one-step JSON command (``steprun step``).

Platforms that cannot embed Python (n8n, Kestra, anything that speaks HTTP or runs a
command) drive steprun through these. Both drive the engine exactly as the CLI does; the
engine never imports this package.
"""

from __future__ import annotations

from .app import ServiceSettings, build_app
from .onestep import outcome, run_one
from .openapi import build_openapi

__all__ = ["ServiceSettings", "build_app", "build_openapi", "outcome", "run_one"]
