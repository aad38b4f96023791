"""The embedded backend for step tests: in-process (as the runtime mounts it) or under
uvicorn on loopback (for faults that need a real socket to break)."""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime

import httpx
import uvicorn
from starlette.types import ASGIApp

from steprun.runtime.authorizations import LOCAL_BASE_URL, LOCAL_ORIGIN
from steprun.runtime.local import LocalBackend, quiet_injected_disconnects


@asynccontextmanager
async def mounted(backend: LocalBackend) -> AsyncIterator[httpx.AsyncClient]:
    """The runtime's way: the backend mounted on the HTTP client under the local origin."""
    async with httpx.AsyncClient(
        mounts={LOCAL_ORIGIN: httpx.ASGITransport(app=backend.app)}
    ) as client:
        yield client


@contextmanager
def served(app: ASGIApp) -> Iterator[str]:
    """``app`` under uvicorn on a free loopback port; yields ``http://127.0.0.1:PORT``."""
    quiet_injected_disconnects()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=0,
        log_level="warning",
        lifespan="off",
        access_log=False,
        date_header=False,  # the backend sends its own Date, from its clock
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start within 10 s")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def at(moment: str) -> float:
    """Seconds since the epoch of an ISO date-time in UTC, for a Clock."""
    return datetime.fromisoformat(moment).replace(tzinfo=UTC).timestamp()


class Clock:
    """A backend clock that the test moves (jobs finish when it says so)."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now


async def fine_tune(
    http: httpx.AsyncClient,
    clock: Clock,
    data: bytes,
    *,
    model: str = "gpt-4o-mini",
    origin: str | None = None,
) -> str:
    """Upload ``data``, fine-tune ``model`` on it, move the clock past the job's end, and
    return the fine-tuned model's id (the backend needs ``job_seconds`` < 60). ``origin``:
    a served backend's, else the in-process one's."""
    base = origin + "/v1" if origin is not None else LOCAL_BASE_URL
    upload = await http.post(
        base + "/files",
        files={"file": ("train.jsonl", data)},
        data={"purpose": "fine-tune"},
    )
    job = await http.post(
        base + "/fine_tuning/jobs",
        json={"model": model, "training_file": upload.json()["id"], "suffix": "bot"},
    )
    clock.now += 60
    done = (await http.get(f"{base}/fine_tuning/jobs/{job.json()['id']}")).json()
    if done.get("status") != "succeeded":
        raise AssertionError(f"the fine-tuning job did not succeed: {done}")
    return str(done["fine_tuned_model"])


__all__ = ["Clock", "fine_tune", "mounted", "served"]
