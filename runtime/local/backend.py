""":class:`LocalBackend`: one embedded OpenAI-compatible fine-tuning backend."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp

from .app import build_app
from .context import Clock, Context
from .errors import APIError
from .faults import Fault, Faults, parse_fault
from .files import MAX_UPLOAD_BYTES
from .state import Store

if TYPE_CHECKING:
    from .trainer import Trainer

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
    ``trainer``: ``simulated`` (jobs follow the clock, models answer from their data) or
    ``transformers`` (real training with TRL and PEFT in a child process per job, on the
    built-in ``steprun-tiny`` or the base ``models`` given as ``{name: path or Hub id}``,
    on ``device``, each held to ``max_memory`` such as ``8GB`` when it is given; needs
    the ``steprun[train]`` extra).

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
        trainer: str = "simulated",
        models: Mapping[str, Any] | None = None,
        device: str = "auto",
        max_memory: int | str | None = None,
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
        store = Store(Path(state_dir) if state_dir is not None else None)
        self.ctx = Context(
            trainer=_real_trainer(trainer, models, device, store, max_memory),
            store=store,
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


def _real_trainer(
    trainer: str,
    models: Mapping[str, Any] | None,
    device: str,
    store: Store,
    max_memory: int | str | None = None,
) -> Trainer | None:
    """The real trainer when asked for; ValueError naming what is wrong or missing."""
    from .trainer import TRAINERS, Trainer, TrainerSettings, missing_extra_message, parse_models
    from .trainer.memory import parse_memory

    if trainer not in TRAINERS:
        raise ValueError(f"trainer must be one of {', '.join(TRAINERS)}, not {trainer!r}")
    if trainer == "simulated":
        if models or max_memory is not None:
            raise ValueError(
                "models and max_memory are for trainer: transformers; the simulated trainer "
                "has no models and uses no memory to train"
            )
        return None
    missing = missing_extra_message()
    if missing is not None:
        raise ValueError(missing)
    settings = TrainerSettings(parse_models(models), device, parse_memory(max_memory))
    return Trainer(settings, store)


__all__ = ["DEFAULT_JOB_SECONDS", "DEFAULT_ORGANIZATION", "LocalBackend"]
