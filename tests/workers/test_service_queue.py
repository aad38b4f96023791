"""`steprun serve --submit` (its store in PostgreSQL) queues `POST /v1/runs` for workers.

Real processes: the service, a worker and `serve-local`, all on loopback, sharing one
PostgreSQL store; the callback goes to a receiver in this process.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.routing import Route

from tests.runtime.durable_support import Workspace, serve_local, wait_for
from tests.runtime.stores import Postgres, Reader
from tests.service.conftest import TOKEN, Receiver, start_process, stop

pytestmark = pytest.mark.slow


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    app = Starlette(routes=[Route("/hook", found.endpoint, methods=["POST"])])
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, "the callback receiver", timeout=10)
    found.url = f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}/hook"
    try:
        yield found
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_the_service_queues_runs_for_the_workers(
    tmp_path: Path, postgres: Postgres, receiver: Receiver
) -> None:
    """A run posted to `serve --submit` is driven by a worker, not by the service; the
    service still reports it and calls back once the worker has finished."""
    url = postgres.fresh("service")
    reader = Reader(url)
    folder = tmp_path / "service"
    folder.mkdir()
    (folder / "token").write_text(TOKEN + "\n")
    with serve_local(tmp_path / "serve-local", 1.0) as backend:
        (folder / "auth.yaml").write_text(
            json.dumps(
                {"api": {"provider": "openai", "api_key": "sk-test", "base_url": backend.url}}
            )
        )
        # Files a PostgreSQL store keeps locally (the webhook secret) go in XDG_STATE_HOME.
        env = {"STEPRUN_STATE": url, "XDG_STATE_HOME": str(tmp_path / "xdg")}
        service, service_url = start_process(
            [
                "serve",
                "--port",
                "0",
                "--token-file",
                str(folder / "token"),
                "--authorizations",
                str(folder / "auth.yaml"),
                "--submit",
            ],
            "steprun service listening",
            env,
        )
        ws = Workspace(tmp_path / "ws")
        worker = ws.spawn("worker", "--concurrency", "2", env=env)
        try:
            flow = (
                "flow: queued\nauthorization: api\nsteps:\n"
                "  - id: models\n    type: openai.list_models\n    config: {}\n"
                "  - id: said\n    type: core.log\n    config: {message: done}\n"
            )
            with httpx.Client(
                base_url=service_url, headers={"authorization": f"Bearer {TOKEN}"}, timeout=30
            ) as client:
                posted = client.post("/v1/runs", json={"flow": flow, "callback_url": receiver.url})
                assert posted.status_code == 202, posted.text
                run_id = posted.json()["id"]
                wait_for(lambda: receiver.deliveries, "the callback", timeout=60, every=0.2)
                run = client.get(f"/v1/runs/{run_id}").json()
            assert run["status"] == "succeeded", run
            delivered = json.loads(receiver.deliveries[0][1])
            assert delivered["data"]["id"] == run_id, delivered
            assert delivered["data"]["status"] == "succeeded", delivered
            drives = reader.query("SELECT owner, how FROM drives WHERE run_id = ?", run_id)
            assert [d["how"] for d in drives] == ["succeeded"], drives
            assert drives[0]["owner"].endswith(f":{worker.pid}"), (drives, worker.pid)
            assert f"run {run_id} succeeded" in worker.stderr()
        finally:
            stop(service)
            worker.kill()
