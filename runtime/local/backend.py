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
from .files import MAX_UPLOAD_BYTES
from .state import Store

# Long enough to watch a job move through its states, short enough for a demo.
DEFAULT_JOB_SECONDS = 4.0
DEFAULT_ORGANIZATION = "org-steprun-local"


class LocalBackend:
    """An OpenAI-compatible fine-tuning API as an ASGI app (:attr:`app`).

    ``job_seconds``: how long a fine-tuning job takes from creation to its final state.
    ``api_key``: when set, requests must carry it as ``Authorization: Bearer``.
    ``state_dir``: keep files, jobs and models there (they survive a restart, and
    processes sharing the folder see each other's; see ``state``); in memory when None
    (file contents still go to a private temporary folder). ``max_upload_bytes``: the
    largest file an upload may carry (OpenAI's 512 MB by default). ``organization``: the
    ``org-…`` id jobs belong to; model names use it without the ``org-`` prefix.
    ``clock``: seconds since the epoch (tests pass a controllable one). ``faults``:
    faults armed from the start (see ``faults``).

    Two backends share nothing. Nothing runs in the background: state is written as it
    changes, and :meth:`close` only lets go of the state's database early.
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
        max_upload_bytes: int = MAX_UPLOAD_BYTES,
    ) -> None:
        seconds = float(job_seconds)
        if not seconds > 0:
            raise ValueError(
                f"job_seconds must be a positive number of seconds, not {job_seconds!r}"
            )
        if not (isinstance(max_upload_bytes, int) and max_upload_bytes > 0):
            raise ValueError(
                f"max_upload_bytes must be a positive number of bytes, not {max_upload_bytes!r}"
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
            max_upload_bytes=max_upload_bytes,
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

    def close(self) -> None:
        """Close the state database (a backend left open is closed when collected)."""
        self.ctx.store.close()


__all__ = ["DEFAULT_JOB_SECONDS", "DEFAULT_ORGANIZATION", "LocalBackend"]
