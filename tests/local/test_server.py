"""`steprun serve-local` as a user starts it: its help, its socket, its load, its memory."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import uvicorn

from steprun.runtime.local import LocalBackend
from steprun.runtime.local.server import listening_socket
from tests.local.conftest import chat_lines
from tests.runtime.durable_support import READY, child_env, wait_for

STEPRUN = Path(sys.executable).parent / "steprun"


def test_a_busy_port_is_one_clear_error_with_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [str(STEPRUN), "serve-local", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "--port 0 for a free one" in done.stderr
    assert "Traceback" not in done.stderr


def test_help_says_what_the_api_key_protects_and_where_it_listens() -> None:
    done = subprocess.run(
        [str(STEPRUN), "serve-local", "--help"], capture_output=True, text=True, timeout=30
    )
    text = " ".join(done.stdout.split())
    assert "[default: 127.0.0.1]" in text
    assert "every request, the /_steprun control API included" in text
    assert "can upload, create jobs and arm faults" in text
    assert "(OpenAI's limit: 512)" in text


def test_accepted_connections_have_tcp_nodelay() -> None:
    # The real thing: uvicorn serving on the socket serve-local makes; the option read back
    # from the connection uvicorn accepted.
    config = uvicorn.Config(LocalBackend().app, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    sock = listening_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started, "uvicorn to start")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}") as client:
            assert client.get("/v1/models").status_code == 200
            (connection,) = server.server_state.connections
            accepted = connection.transport.get_extra_info("socket")  # type: ignore[attr-defined]
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def serving(folder: Path, *options: str) -> Iterator[tuple[str, int]]:
    """``steprun serve-local --port 0 OPTIONS``: its root URL and process id."""
    log = folder / "serve-local.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [str(STEPRUN), "serve-local", "--port", "0", *options],
            stdout=sink,
            stderr=subprocess.STDOUT,
            env=child_env(folder / "unused-runs.db"),
        )
    try:

        def ready() -> str | None:
            assert process.poll() is None, log.read_text()
            found = READY.search(log.read_text(encoding="utf-8", errors="replace"))
            return found[1].removesuffix("/v1") if found else None

        yield wait_for(ready, "serve-local's ready line"), process.pid
    finally:
        process.terminate()
        process.wait(30)
    assert "Traceback" not in log.read_text(), log.read_text()


def _rss(pid: int) -> int:
    """Resident memory of a process, in bytes (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


CREATES = 1000


def test_a_thousand_concurrent_creates_are_all_answered_and_models_stays_responsive(
    tmp_path: Path,
) -> None:
    with serving(tmp_path, "--state", str(tmp_path / "state"), "--job-seconds", "1") as (url, _):
        file_id = httpx.post(
            f"{url}/v1/files",
            files={"file": ("t.jsonl", chat_lines(12))},
            data={"purpose": "fine-tune"},
        ).json()["id"]
        body = {"model": "gpt-4o-mini", "training_file": file_id}

        async def flood() -> list[httpx.Response]:
            limits = httpx.Limits(max_connections=CREATES, max_keepalive_connections=0)
            # Bounded waits only: a request must be answered, not answered fast.
            async with httpx.AsyncClient(limits=limits, timeout=120) as client:
                return await asyncio.gather(
                    *(client.post(f"{url}/v1/fine_tuning/jobs", json=body) for _ in range(CREATES))
                )

        answers = asyncio.run(flood())
        statuses = {response.status_code for response in answers}
        assert statuses <= {200, 429}, statuses
        assert all("retry-after" in r.headers for r in answers if r.status_code == 429)
        created = {r.json()["id"] for r in answers if r.status_code == 200}
        time.sleep(1.5)  # every job has now ended: the next request settles them all
        models = httpx.get(f"{url}/v1/models", timeout=30)
        # Checkpoints are models too (issue 10): only the fine-tuned models are counted.
        tuned = [
            m
            for m in models.json()["data"]
            if m["id"].startswith("ft:") and ":ckpt-" not in m["id"]
        ]
        assert len(tuned) == len(created)
        # And after that, the listing is quick to answer again and again.
        for _ in range(3):
            assert httpx.get(f"{url}/v1/models", timeout=10).status_code == 200
        ledger = httpx.get(f"{url}/_steprun/ledger", timeout=30).json()
        assert {job["id"] for job in ledger["jobs"]} == created


def test_uploads_go_to_disk_and_leave_memory_as_it_was(tmp_path: Path) -> None:
    state = tmp_path / "state"
    size = 40 * 2**20
    line = b'{"prompt": "' + b"x" * 1000 + b'", "completion": "y"}\n'
    content = line * (size // len(line))
    served = serving(tmp_path, "--state", str(state), "--max-upload-mb", "64")
    with served as (url, pid), httpx.Client(base_url=url, timeout=120) as client:
        assert client.get("/v1/models").status_code == 200
        before = _rss(pid)
        ids = []
        for number in range(3):
            answer = client.post(
                "/v1/files",
                files={"file": (f"big{number}.jsonl", content)},
                data={"purpose": "fine-tune"},
            )
            assert answer.status_code == 200, answer.text
            ids.append(answer.json()["id"])
        grown = _rss(pid) - before
        too_big = client.post(
            "/v1/files", files={"file": ("huge.jsonl", content * 2)}, data={"purpose": "fine-tune"}
        )
    assert grown < size, f"the server grew by {grown / 2**20:.0f} MiB for 3 x 40 MiB uploads"
    assert too_big.status_code == 400
    assert too_big.json()["error"]["code"] == "file_too_large"
    assert sorted(p.name for p in (state / "files").iterdir()) == sorted(ids)
    assert all((state / "files" / i).stat().st_size == len(content) for i in ids)
