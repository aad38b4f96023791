"""Serving the local backend over HTTP with uvicorn (``steprun serve-local``)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ..errors import InvalidInput
from ..serving import listening_socket
from .backend import DEFAULT_JOB_SECONDS, LocalBackend
from .faults import InjectedDisconnect
from .files import MAX_UPLOAD_BYTES

READY = "steprun local backend listening on {url}"


class _QuietInjectedDisconnects(logging.Filter):
    """uvicorn logs an app exception with its traceback; a connection that a fault breaks
    on purpose is not one, and the fault middleware already logged it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], InjectedDisconnect))


def quiet_injected_disconnects() -> None:
    """Keep uvicorn from logging connections that faults break on purpose (idempotent)."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietInjectedDisconnects) for f in logger.filters):
        logger.addFilter(_QuietInjectedDisconnects())


def serve(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    api_key: str | None = None,
    state_dir: Path | str | None = None,
    job_seconds: float = DEFAULT_JOB_SECONDS,
    log_level: str = "warning",
    faults: Iterable[Mapping[str, Any]] = (),
    max_upload_bytes: int = MAX_UPLOAD_BYTES,
    trainer: str = "simulated",
    models: Mapping[str, Any] | None = None,
    device: str = "auto",
    max_memory: str | None = None,
) -> None:
    """Run the backend until interrupted. Port 0 picks a free port.

    Once it accepts connections it prints one line to stderr,
    ``steprun local backend listening on http://HOST:PORT/v1``, with the real port.
    """
    # Only serving needs uvicorn; embedding the backend in-process never imports it.
    import uvicorn

    try:
        backend = LocalBackend(
            job_seconds=job_seconds,
            api_key=api_key,
            state_dir=state_dir,
            faults=faults,
            max_upload_bytes=max_upload_bytes,
            trainer=trainer,
            models=models,
            device=device,
            max_memory=max_memory,
        )
    except ValueError as exc:
        raise InvalidInput(str(exc)) from None
    config = uvicorn.Config(
        backend.app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=False,
        lifespan="off",
        # The backend sends its own Date, from its clock; uvicorn's would be a second one.
        date_header=False,
    )

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets=sockets)
            if self.should_exit or not self.servers:
                return
            bound = self.servers[0].sockets[0].getsockname()
            shown = f"[{host}]" if ":" in host else host
            url = f"http://{shown}:{bound[1]}/v1"
            print(READY.format(url=url), file=sys.stderr, flush=True)

    quiet_injected_disconnects()
    Server(config).run(sockets=[listening_socket(host, port)])


__all__ = ["READY", "listening_socket", "quiet_injected_disconnects", "serve"]
