"""``steprun serve-local`` in a subprocess and the official ``openai`` client on it.

The SDK tests of the backend use these: every response the client receives is checked
against the OpenAPI files as it arrives.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
import openai

from steprun.runtime.local import READY
from tests.local.conftest import check_response

KEY = "sk-steprun-sdk-test-0123456789abcdefghijkl"
JOB_SECONDS = 1.0


@contextmanager
def serve_local(job_seconds: float = JOB_SECONDS, *more: str) -> Iterator[str]:
    """``steprun serve-local --port 0`` in a subprocess; yields its base URL (``…/v1``).

    ``more``: further command-line options (then the console script must be installed).
    """
    script = Path(sys.executable).with_name("steprun")
    options = ["--port", "0", "--api-key", KEY, "--job-seconds", str(job_seconds), *more]
    if script.exists() or more:
        command = [str(script), "serve-local", *options]
    else:  # not installed as a console script: call what the command calls
        code = (
            "from steprun.runtime.local import serve; "
            f"serve(host='127.0.0.1', port=0, api_key={KEY!r}, job_seconds={job_seconds})"
        )
        command = [sys.executable, "-c", code]
    process = subprocess.Popen(command, stderr=subprocess.PIPE, text=True, bufsize=1)
    assert process.stderr is not None
    lines: list[str] = []
    ready = threading.Event()
    prefix = READY.format(url="")

    def drain() -> None:
        assert process.stderr is not None
        for line in process.stderr:
            lines.append(line)
            if line.startswith(prefix):
                ready.set()

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        assert ready.wait(timeout=30), "the server never said it was ready:\n" + "".join(lines)
        url = next(line for line in lines if line.startswith(prefix))[len(prefix) :].strip()
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)
        reader.join(timeout=10)
        process.stderr.close()


def _validate(response: Any) -> None:
    # The SDK uses httpx2, whose responses quack like httpx's.
    check_response(response)


@contextmanager
def sdk_client(url: str) -> Iterator[openai.OpenAI]:
    """The official client on ``url``; every response is checked against the spec."""
    http = httpx2.Client(event_hooks={"response": [_validate]})
    with openai.OpenAI(api_key=KEY, base_url=url, http_client=http, max_retries=2) as sdk:
        yield sdk


def wait_for(client: openai.OpenAI, job_id: str) -> Any:
    deadline = time.monotonic() + 20 * JOB_SECONDS
    while True:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in ("succeeded", "failed", "cancelled"):
            return job
        assert time.monotonic() < deadline, f"job still {job.status}"
        time.sleep(JOB_SECONDS / 10)


__all__ = ["JOB_SECONDS", "KEY", "sdk_client", "serve_local", "wait_for"]
