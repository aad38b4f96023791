"""The API key never shows, over every OpenAI step and every fault path, through the engine.

A canary key drives a flow that uses every OpenAI step against ``steprun serve-local``
(which requires that key). Each step's error exit leads on to the next step, so error
objects (which land in merge fields, reports and the run store) are produced too. Faults
make the server fail in each way it can, and some error messages *echo the full key* as a
careless server might: the redactor must still hide it. Every sink is read back and
searched: the console, the JSON Lines report, the plugin hook's payloads, the merge
fields, the run store's bytes, and, through the real CLI, stdout and stderr.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from steprun.runtime import Runtime, hookimpl
from steprun.runtime.durable import start
from steprun.runtime.store import open_store

CANARY = "sk-canary-" + "7f3a9c" * 6
ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "examples" / "data" / "support.jsonl"
STEPRUN = Path(sys.executable).parent / "steprun"


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """serve-local on a free port, requiring the canary key."""
    proc = subprocess.Popen(
        [str(STEPRUN), "serve-local", "--port", "0", "--job-seconds", "1", "--api-key", CANARY],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    if "listening on" not in line:
        proc.kill()
        pytest.fail(f"serve-local did not start: {line!r}")
    base_url = line.rsplit(" ", 1)[-1].strip()
    try:
        yield base_url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        proc.stderr.close()


def arm(base_url: str, *faults: dict[str, Any]) -> None:
    origin = base_url.removesuffix("/v1")
    headers = {"Authorization": f"Bearer {CANARY}"}
    httpx.delete(f"{origin}/_steprun/faults", headers=headers).raise_for_status()
    if faults:
        response = httpx.post(
            f"{origin}/_steprun/faults", json={"faults": list(faults)}, headers=headers
        )
        response.raise_for_status()


def flow_text(base_url: str) -> str:
    """Every OpenAI step, each one's error exit leading on to the next step."""
    steps: list[dict[str, Any]] = [
        ("check", "openai.validate_training_data", {"file": str(DATA)}),
        ("upload", "openai.upload_file", {"file": str(DATA), "purpose": "fine-tune"}),
        (
            "job",
            "openai.create_fine_tuning_job",
            {
                "training_file": "{{ upload.id }}",
                "model": "gpt-4o-mini-2024-07-18",
                "suffix": "canary",
            },
        ),
        ("retrieve", "openai.retrieve_fine_tuning_job", {"job_id": "{{ job.id }}"}),
        ("listed", "openai.list_fine_tuning_jobs", {"limit": 5}),
        ("pause", "openai.pause_fine_tuning_job", {"job_id": "{{ job.id }}"}),
        ("unpause", "openai.resume_fine_tuning_job", {"job_id": "{{ job.id }}"}),
        (
            "wait",
            "openai.wait_for_fine_tuning_job",
            {"job_id": "{{ job.id }}", "max_wait": "30s", "poll_interval": 0.3},
        ),
        ("events", "openai.list_fine_tuning_events", {"job_id": "{{ job.id }}", "all": True}),
        ("checkpoints", "openai.list_fine_tuning_checkpoints", {"job_id": "{{ job.id }}"}),
        (
            "ask",
            "openai.request_fine_tuned_model",
            {
                "model": "{{ wait.fine_tuned_model }}",
                "mode": "chat",
                "prompt": "How do I reset my password?",
                "max_tokens": 40,
            },
        ),
        (
            "ask_streamed",
            "openai.request_fine_tuned_model",
            {
                "model": "{{ wait.fine_tuned_model }}",
                "mode": "chat",
                "prompt": "How do I export my notes?",
                "stream": True,
                "result_format": "raw",
            },
        ),
        (
            "cancel",
            "openai.cancel_fine_tuning_job",
            {"job_id": "{{ job.id }}", "if_finished": "succeed"},
        ),
        ("delete", "openai.delete_model", {"model": "{{ wait.fine_tuned_model }}"}),
    ]
    ids = [s[0] for s in steps] + ["summary"]
    body = [
        {"id": sid, "type": stype, "config": config, "on_error": ids[i + 1]}
        for i, (sid, stype, config) in enumerate(steps)
    ]
    # The summary reads every merge field, including error objects, and logs them.
    body.append(
        {
            "id": "summary",
            "type": "core.log",
            "config": {
                "level": "error",
                "message": " | ".join(f"{{{{ {sid} }}}}" for sid, _, _ in steps),
            },
        }
    )
    flow = {
        "flow": "canary",
        "log_level": "debug",
        "authorization": "api",
        "authorizations": {
            "api": {
                "provider": "openai",
                "api_key": "${env:CANARY_KEY}",
                "base_url": base_url,
                "max_retries": 1,
            }
        },
        "on_error": "summary",
        "steps": body,
    }
    return json.dumps(flow)


class Hook:
    def __init__(self) -> None:
        self.payloads: list[str] = []

    @hookimpl
    def steprun_report(self, report: dict[str, Any]) -> None:
        self.payloads.append(json.dumps(report))


def run_in_process(base_url: str, tmp_path: Path) -> tuple[str, Any]:
    """Run durably in-process; return every sink's text and the result."""
    hook = Hook()
    runtime = Runtime(plugins=[hook], environ={**os.environ, "CANARY_KEY": CANARY})
    console = io.StringIO()
    report = tmp_path / "report.jsonl"
    store = open_store(tmp_path / "runs.db")

    async def main() -> Any:
        try:
            flow = runtime.load(flow_text(base_url))
            return await start(runtime, store, flow, inputs={}, report_file=report, console=console)
        finally:
            await runtime.aclose()

    try:
        result = asyncio.run(main())
    finally:
        store.close()
    sinks = "\n".join(
        [
            console.getvalue(),
            report.read_text(encoding="utf-8"),
            *hook.payloads,
            json.dumps(result.merge_fields),
            json.dumps(result.reports),
            json.dumps(result.error),
            _store_bytes(tmp_path),
        ]
    )
    return sinks, result


def _store_bytes(folder: Path) -> str:
    # WAL and shared-memory files too: a value may sit there before a checkpoint.
    return "\n".join(
        p.read_bytes().decode("latin-1") for p in sorted(folder.glob("runs.db*")) if p.is_file()
    )


def assert_no_canary(text: str) -> None:
    assert CANARY not in text
    # Nor a recognisable part of it (a server or an error message could cut it).
    assert CANARY[10:40] not in text


def test_a_successful_lifecycle_never_shows_the_key(server: str, tmp_path: Path) -> None:
    arm(server)
    sinks, result = run_in_process(server, tmp_path)
    assert result.status == "succeeded"
    assert result.merge_fields["wait"]["status"] == "succeeded"
    assert result.merge_fields["ask"]["choices"][0]["message"]["content"]
    assert result.merge_fields["delete"]["deleted"] is True
    assert "***" not in json.dumps(result.merge_fields["ask"])  # nothing masked needlessly
    assert_no_canary(sinks)


ECHO = f"Incorrect API key provided: {CANARY}. You can find your API key at https://platform"

FAULT_PATHS = {
    "401 echoing the key on create": [
        {
            "path": "/v1/fine_tuning/jobs",
            "method": "POST",
            "kind": "status",
            "status": 401,
            "message": ECHO,
            "type": "invalid_request_error",
            "code": "invalid_api_key",
        },
    ],
    "400 echoing the key everywhere": [
        {"path": "/v1/*", "kind": "status", "status": 400, "message": ECHO, "times": None},
    ],
    "429 then 500 echoing the key": [
        {
            "path": "/v1/files",
            "method": "POST",
            "kind": "status",
            "status": 429,
            "retry_after": 0,
            "message": ECHO,
        },
        {
            "path": "/v1/fine_tuning/jobs/*",
            "kind": "status",
            "status": 500,
            "message": ECHO,
            "times": None,
        },
    ],
    "insufficient quota": [
        {
            "path": "/v1/fine_tuning/jobs",
            "method": "POST",
            "kind": "status",
            "status": 429,
            "code": "insufficient_quota",
            "type": "insufficient_quota",
            "message": ECHO,
        },
    ],
    "dropped connections, malformed bodies and a cut stream": [
        {"path": "/v1/fine_tuning/jobs", "method": "POST", "kind": "drop"},
        {"path": "/v1/fine_tuning/jobs/*", "method": "GET", "kind": "malformed", "times": 2},
        {
            "path": "/v1/chat/completions",
            "method": "POST",
            "kind": "cut_stream",
            "after_chunks": 2,
            "times": None,
        },
    ],
    "a job that fails with the key in its error": [
        {
            "kind": "job_failure",
            "at": "running",
            "error": {"code": "invalid_training_file", "message": ECHO, "param": "training_file"},
        },
    ],
}


@pytest.mark.parametrize("faults", FAULT_PATHS.values(), ids=FAULT_PATHS.keys())
def test_no_fault_path_shows_the_key(
    server: str, tmp_path: Path, faults: list[dict[str, Any]]
) -> None:
    arm(server, *faults)
    try:
        sinks, result = run_in_process(server, tmp_path)
    finally:
        arm(server)
    reports = [r for r in result.reports if r["kind"] == "step"]
    assert any(r["status"] != "succeeded" for r in reports), "the fault struck nowhere"
    assert_no_canary(sinks)


def test_the_cli_never_prints_the_key(server: str, tmp_path: Path) -> None:
    flow = tmp_path / "canary.json"  # JSON is YAML
    flow.write_text(flow_text(server), encoding="utf-8")
    arm(
        server,
        {
            "path": "/v1/fine_tuning/jobs/*",
            "kind": "status",
            "status": 500,
            "message": ECHO,
            "times": 3,
        },
    )
    env = {**os.environ, "CANARY_KEY": CANARY, "STEPRUN_STATE": str(tmp_path / "runs.db")}
    began = time.monotonic()
    try:
        done = subprocess.run(
            [
                str(STEPRUN),
                "run",
                str(flow),
                "--report",
                str(tmp_path / "report.jsonl"),
                "--log-level",
                "debug",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        shown = subprocess.run(
            [str(STEPRUN), "show", done.stderr.split()[1], "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=30,
        )
    finally:
        arm(server)
    assert done.returncode == 0, done.stderr[-2000:]
    assert shown.returncode == 0, shown.stderr
    assert "Traceback" not in done.stderr
    assert time.monotonic() - began < 120
    assert_no_canary(done.stdout + done.stderr + shown.stdout + shown.stderr)
    assert_no_canary((tmp_path / "report.jsonl").read_text(encoding="utf-8"))
    assert_no_canary(_store_bytes(tmp_path))
