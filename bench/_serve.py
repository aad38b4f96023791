"""What the benchmarks share: ``steprun serve-local`` as a subprocess, and setting it up.

Not a benchmark itself (hence the underscore); the bench scripts import it from their own
folder (``python bench/NAME.py`` puts ``bench/`` on ``sys.path``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
TRAINING_FILE = ROOT / "examples" / "data" / "support.jsonl"
BASE_MODEL = "gpt-4o-mini-2024-07-18"
QUESTION = "How do I reset my password?"
API_KEY = "sk-bench"


def steprun_command() -> list[str]:
    """The ``steprun`` console script of this interpreter's environment."""
    beside = Path(sys.executable).with_name("steprun")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("steprun")
    if found is None:
        raise SystemExit("steprun is not installed in this environment (pip install -e .)")
    return [found]


class Server:
    """A running ``serve-local``: its base URL (``http://…/v1``) and its process."""

    def __init__(self, url: str, pid: int) -> None:
        self.url = url
        self.pid = pid

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) the server has used so far; None where /proc is not."""
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        # utime and stime, fields 14 and 15 of proc(5), in clock ticks.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def serve_local(job_seconds: float) -> Iterator[Server]:
    """Start ``steprun serve-local --port 0`` on 127.0.0.1 and yield it once it listens."""
    from steprun.runtime.local import READY

    marker = READY.split("{url}")[0]
    process = subprocess.Popen(
        [
            *steprun_command(),
            "serve-local",
            "--port",
            "0",
            "--api-key",
            API_KEY,
            "--job-seconds",
            str(job_seconds),
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        url = None
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            if line.startswith(marker):
                url = line[len(marker) :].strip()
                break
        if url is None:
            raise SystemExit(f"steprun serve-local did not start (exit {process.poll()})")
        # Keep reading its stderr so a chatty server can never block on a full pipe.
        threading.Thread(target=process.stderr.read, daemon=True).start()
        yield Server(url, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {API_KEY}"}


async def upload(http: httpx.AsyncClient, base_url: str) -> str:
    """Upload the example training file once; its file id."""
    with TRAINING_FILE.open("rb") as f:
        response = await http.post(
            f"{base_url}/files",
            headers=headers(),
            data={"purpose": "fine-tune"},
            files={"file": (TRAINING_FILE.name, f, "application/jsonl")},
        )
    response.raise_for_status()
    return str(response.json()["id"])


async def finished_job(http: httpx.AsyncClient, base_url: str) -> tuple[str, str]:
    """Upload, create a job and wait for it: (job id, fine-tuned model name)."""
    file_id = await upload(http, base_url)
    response = await http.post(
        f"{base_url}/fine_tuning/jobs",
        headers=headers(),
        json={"training_file": file_id, "model": BASE_MODEL, "suffix": "bench"},
    )
    response.raise_for_status()
    job: dict[str, Any] = response.json()
    while job["status"] not in ("succeeded", "failed", "cancelled"):
        await asyncio.sleep(0.2)
        response = await http.get(f"{base_url}/fine_tuning/jobs/{job['id']}", headers=headers())
        response.raise_for_status()
        job = response.json()
    if job["status"] != "succeeded":
        raise SystemExit(f"the setup job {job['id']} ended {job['status']}: {job.get('error')}")
    return str(job["id"]), str(job["fine_tuned_model"])


def machine() -> str:
    return f"python {sys.version.split()[0]}, {os.cpu_count()} cores"
