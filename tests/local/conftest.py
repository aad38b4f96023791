"""Fixtures for the local backend's tests.

One uvicorn server on loopback for the session, in a thread (as httpx's own tests do);
each test gets a fresh :class:`LocalBackend` mounted on it, a controllable clock, and
an ``api`` client whose every response is checked against the shared OpenAPI files.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.types import ASGIApp, Receive, Scope, Send

from steprun.runtime.local import LocalBackend, quiet_injected_disconnects
from tests.contract import validate_httpx_response

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "data"
START = 1_700_000_000.0
JOB_SECONDS = 10.0


class FakeClock:
    """Seconds since the epoch that move only when a test says so."""

    def __init__(self, start: float = START) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Mount:
    """An ASGI app that forwards to whichever app a test mounted."""

    def __init__(self) -> None:
        self.app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.app is not None, "no backend mounted"
        await self.app(scope, receive, send)


@contextmanager
def serve_in_thread(app: ASGIApp) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port; yields the base URL."""
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
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def mount() -> Mount:
    return Mount()


@pytest.fixture(scope="session")
def server_url(mount: Mount) -> Iterator[str]:
    with serve_in_thread(mount) as url:
        yield url


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def backend(clock: FakeClock) -> LocalBackend:
    return LocalBackend(job_seconds=JOB_SECONDS, clock=clock)


def check_response(response: httpx.Response) -> None:
    """Every OpenAI response a test receives must match the spec (control paths aside)."""
    response.read()
    if not response.request.url.path.startswith("/_steprun"):
        validate_httpx_response(response)


@pytest.fixture
def api(backend: LocalBackend, mount: Mount, server_url: str) -> Iterator[httpx.Client]:
    """A client of ``backend`` over real HTTP; responses are validated as they arrive."""
    mount.app = backend.app
    with httpx.Client(
        base_url=server_url, timeout=10, event_hooks={"response": [check_response]}
    ) as client:
        yield client
    mount.app = None


@pytest.fixture
def raw(backend: LocalBackend, mount: Mount, server_url: str) -> Iterator[httpx.Client]:
    """A client of ``backend`` that does not validate (for deliberately broken answers)."""
    mount.app = backend.app
    with httpx.Client(base_url=server_url, timeout=10) as client:
        yield client
    mount.app = None


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def _acheck(response: httpx.Response) -> None:
    await response.aread()
    if not response.request.url.path.startswith("/_steprun"):
        validate_httpx_response(response)


@pytest.fixture
async def inproc(backend: LocalBackend) -> AsyncIterator[httpx.AsyncClient]:
    """A client of ``backend`` in-process, the way the runtime mounts it (no socket)."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=backend.app),
        base_url="http://local.steprun.invalid",
        event_hooks={"response": [_acheck]},
    ) as client:
        yield client


# --- data and shortcuts ----------------------------------------------------------------------


def chat_lines(count: int, *, system: str = "You are a test bot.") -> bytes:
    rows = [
        {
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": f"What is the code word number {i}?"},
                {"role": "assistant", "content": f"The code word number {i} is word{i}."},
            ]
        }
        for i in range(count)
    ]
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


def completion_lines(count: int) -> bytes:
    rows = [
        {"prompt": f"Question {i}: what is {i} plus {i}?\n\n###\n\n", "completion": f" {2 * i} END"}
        for i in range(count)
    ]
    return "".join(json.dumps(row) + "\n" for row in rows).encode()


Upload = Callable[..., dict[str, Any]]


@pytest.fixture
def upload(api: httpx.Client) -> Upload:
    def _upload(
        content: bytes | Path, *, filename: str = "train.jsonl", purpose: str = "fine-tune"
    ) -> dict[str, Any]:
        if isinstance(content, Path):
            filename, content = content.name, content.read_bytes()
        response = api.post(
            "/v1/files", files={"file": (filename, content)}, data={"purpose": purpose}
        )
        assert response.status_code == 200, response.text
        return dict(response.json())

    return _upload


CreateJob = Callable[..., dict[str, Any]]


@pytest.fixture
def create_job(api: httpx.Client, upload: Upload) -> CreateJob:
    """Upload chat data (unless a file id is given) and create a job; returns the job."""

    def _create(training_file: str | None = None, **body: Any) -> dict[str, Any]:
        if training_file is None:
            training_file = upload(chat_lines(12))["id"]
        body = {"model": "gpt-4o-mini", "training_file": training_file, **body}
        response = api.post("/v1/fine_tuning/jobs", json=body)
        assert response.status_code == 200, response.text
        return dict(response.json())

    return _create


@pytest.fixture
def finished_job(api: httpx.Client, create_job: CreateJob, clock: FakeClock) -> dict[str, Any]:
    """A job on the example support data that has succeeded."""
    data = (EXAMPLES / "support.jsonl").read_bytes()
    file_id = api.post(
        "/v1/files", files={"file": ("support.jsonl", data)}, data={"purpose": "fine-tune"}
    ).json()["id"]
    job = create_job(file_id, suffix="support-bot")
    clock.advance(JOB_SECONDS + 1)
    done = api.get(f"/v1/fine_tuning/jobs/{job['id']}").json()
    assert done["status"] == "succeeded"
    return dict(done)


def error_of(response: httpx.Response) -> dict[str, Any]:
    error = response.json()["error"]
    assert isinstance(error, dict)
    return error
