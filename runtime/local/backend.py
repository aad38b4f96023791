""":class:`LocalBackend`: one embedded OpenAI-compatible fine-tuning backend."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from starlette.types import ASGIApp

from .app import build_app
from .context import Clock, Context
from .errors import APIError
from .faults import Fault, Faults, parse_fault
from .state import Store

# Long enough to watch a job move through its states, short enough for a demo.
DEFAULT_JOB_SECONDS = 4.0
DEFAULT_ORGANIZATION = "org-steprun-local"


class LocalBackend:
    """An OpenAI-compatible fine-tuning API as an ASGI app (:attr:`app`).

    ``job_seconds``: how long a fine-tuning job takes from creation to its final state.
    ``api_key``: when set, requests must carry it as ``Authorization: Bearer``.
    ``state_dir``: keep files, jobs and models there (they survive a restart);
    in memory when None. ``organization``: the ``org-…`` id jobs belong to; model names
    use it without the ``org-`` prefix. ``clock``: seconds since the epoch (tests pass a
    controllable one). ``faults``: faults armed from the start (see ``faults``).

    Two backends share nothing. Nothing runs in the background, so there is nothing
    to close: state is written as it changes.
    """

    def __init__(
        self,
        *,
        job_seconds: float = DEFAULT_JOB_SECONDS,
        api_key: str | None = None,
        state_dir: Path | str | None = None,
        organization: str = DEFAULT_ORGANIZATION,
        clock: Clock = time.time,
        faults: Iterable[Mapping[str, Any]] = (),
    ) -> None:
        seconds = float(job_seconds)
        if not seconds > 0:
            raise ValueError(
                f"job_seconds must be a positive number of seconds, not {job_seconds!r}"
            )
        if not organization.startswith("org-"):
            raise ValueError(f"organization must be an id like 'org-acme', not {organization!r}")
        self.ctx = Context(
            store=Store(Path(state_dir) if state_dir is not None else None),
            clock=clock,
            job_seconds=seconds,
            organization=organization,
            api_key=api_key,
            faults=Faults(),
        )
        for spec in faults:
            self.add_fault(spec)
        self.app: ASGIApp = build_app(self.ctx)

    @property
    def job_seconds(self) -> float:
        return self.ctx.job_seconds

    @property
    def organization(self) -> str:
        return self.ctx.organization

    def add_fault(self, spec: Mapping[str, Any]) -> Fault:
        """Arm a fault, as ``POST /_steprun/faults`` does; ValueError if it is invalid."""
        try:
            fault = parse_fault(spec)
        except APIError as exc:
            raise ValueError(exc.message) from None
        return self.ctx.faults.add(fault)

    def clear_faults(self) -> None:
        self.ctx.faults.clear()


__all__ = ["DEFAULT_JOB_SECONDS", "DEFAULT_ORGANIZATION", "LocalBackend"]
