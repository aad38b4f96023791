"""Real processes on loopback: `steprun serve`, `steprun serve-local`, a callback receiver."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

STEPRUN = Path(sys.executable).parent / "steprun"
CANARY = "sk-canary-" + "5e1d2c" * 6
TOKEN = "test-token-" + "ab12" * 8


def start_process(
    args: list[str], ready: str, env: dict[str, str] | None = None
) -> tuple[subprocess.Popen[str], str]:
    """Start ``steprun ARGS``; wait for its ready line on stderr; return it and its URL."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("STEPRUN_")}
    environ["STEPRUN_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    environ.update(env or {})
    proc = subprocess.Popen([str(STEPRUN), *args], stderr=subprocess.PIPE, text=True, env=environ)
    assert proc.stderr is not None
    seen = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        seen.append(line)
        if ready in line:
            url = next(w for w in line.split() if w.startswith("http://"))
            # Drain stderr in the background so the process never blocks on a full pipe.
            drain = threading.Thread(target=_drain, args=(proc, seen), daemon=True)
            drain.start()
            _DRAINS[proc.pid] = drain
            return proc, url.rstrip("/").removesuffix("/v1")
    proc.kill()
    raise AssertionError(f"steprun {args[0]} did not start: {''.join(seen)}")


_DRAINS: dict[int, threading.Thread] = {}


def _drain(proc: subprocess.Popen[str], seen: list[str]) -> None:
    assert proc.stderr is not None
    with proc.stderr:
        for line in proc.stderr:
            seen.append(line)


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGTERM) -> None:
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    drain = _DRAINS.pop(proc.pid, None)
    if drain is not None:
        drain.join(timeout=10)


@dataclass
class Service:
    url: str
    state: Path
    proc: subprocess.Popen[str]
    secret: str
    args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    def client(self, token: str | None = TOKEN) -> httpx.Client:
        headers = {"authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def restart(self, sig: int = signal.SIGKILL) -> None:
        stop(self.proc, sig)
        self.proc, self.url = start_process(self.args, "steprun service listening", self.env)

    def wait_for(self, run_id: str, *statuses: str, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self.client() as client:
            while True:
                run = client.get(f"/v1/runs/{run_id}").json()
                if run.get("status") in statuses:
                    return run  # type: ignore[no-any-return]
                assert time.monotonic() < deadline, f"run stayed {run.get('status')}: {run}"
                time.sleep(0.2)


def make_service(tmp: Path, backend_url: str | None) -> Service:
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "token").write_text(TOKEN + "\n")
    auth = (
        {
            "local_api": {
                "provider": "openai",
                "api_key": "${env:CANARY_KEY}",
                "base_url": f"{backend_url}/v1",
                "max_retries": 0,
            }
        }
        if backend_url
        else {}
    )
    (tmp / "auth.yaml").write_text(json.dumps(auth))
    args = [
        "serve",
        "--port",
        "0",
        "--token-file",
        str(tmp / "token"),
        "--authorizations",
        str(tmp / "auth.yaml"),
        "--state",
        str(tmp / "state" / "runs.db"),
    ]
    env = {"CANARY_KEY": CANARY}
    proc, url = start_process(args, "steprun service listening", env)
    secret = (tmp / "state" / "webhook.secret").read_text().strip()
    return Service(url=url, state=tmp / "state", proc=proc, secret=secret, args=args, env=env)


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`steprun serve-local` requiring the canary key, jobs of 1 s."""
    proc, url = start_process(
        ["serve-local", "--port", "0", "--job-seconds", "1", "--api-key", CANARY],
        "listening on",
    )
    try:
        yield url
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory, backend: str) -> Iterator[Service]:
    svc = make_service(tmp_path_factory.mktemp("service"), backend)
    try:
        yield svc
    finally:
        stop(svc.proc)


class Receiver:
    """A callback endpoint on loopback that fails the first ``fail_first`` deliveries."""

    def __init__(self, fail_first: int = 0) -> None:
        self.fail_first = fail_first
        self.deliveries: list[tuple[dict[str, str], bytes, int]] = []
        self.url = ""

    async def endpoint(self, request: Request) -> Response:
        body = await request.body()
        status = 500 if len(self.deliveries) < self.fail_first else 204
        self.deliveries.append((dict(request.headers), body, status))
        return Response(status_code=status) if status == 204 else JSONResponse({}, status)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    recv = Receiver()
    app = Starlette(routes=[Route("/hook", recv.endpoint, methods=["POST"])])
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    recv.url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}/hook"
    try:
        yield recv
    finally:
        server.should_exit = True
        thread.join(timeout=10)
