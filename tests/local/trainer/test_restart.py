"""A training survives the server that started it: killed and restarted on the same state
folder, ``serve-local`` finds the job still training (and does not start it twice); a
training process that dies is started again and continues from its last checkpoint."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from steprun.runtime.local import READY
from tests.local.sdk import KEY, sdk_client
from tests.local.trainer.conftest import all_events, finished, metric_steps, support_file

pytestmark = pytest.mark.slow


def _stop(process: subprocess.Popen[str], how: signal.Signals) -> None:
    process.send_signal(how)
    process.wait(timeout=10)
    reader = getattr(process, "reader")  # noqa: B009
    reader.join(timeout=10)
    assert process.stderr is not None
    process.stderr.close()


def _start(state: Path) -> tuple[subprocess.Popen[str], str]:
    script = Path(sys.executable).with_name("steprun")
    process = subprocess.Popen(
        [
            str(script),
            "serve-local",
            "--port",
            "0",
            "--api-key",
            KEY,
            "--state",
            str(state),
            "--trainer",
            "transformers",
        ],
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stderr is not None
    prefix = READY.format(url="")
    line = process.stderr.readline()
    assert line.startswith(prefix), line
    # Keep draining stderr, so the server never blocks on a full pipe.
    reader = threading.Thread(target=process.stderr.read, daemon=True)
    reader.start()
    process.reader = reader  # type: ignore[attr-defined]
    return process, line[len(prefix) :].strip()


def _holder(state: Path, job_id: str) -> int:
    return int((state / "jobs" / job_id / "lock").read_text())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_training_outlives_its_server_and_resumes_after_its_process_dies(
    tmp_path: Path,
) -> None:
    state = tmp_path / "state"
    first, url = _start(state)
    try:
        with sdk_client(url) as client:
            job = client.fine_tuning.jobs.create(
                model="steprun-tiny",
                training_file=support_file(client),
                seed=9,
                method={
                    "type": "supervised",
                    "supervised": {"hyperparameters": {"n_epochs": 4, "batch_size": 8}},
                },
            )
            deadline = time.monotonic() + 600
            while not metric_steps(client, job.id) or metric_steps(client, job.id)[-1] < 6:
                assert time.monotonic() < deadline, "no training progress"
                time.sleep(0.3)
    finally:
        _stop(first, signal.SIGKILL)
    worker = _holder(state, job.id)
    assert _alive(worker)  # the training did not die with the server

    second, url = _start(state)
    try:
        with sdk_client(url) as client:
            assert client.fine_tuning.jobs.retrieve(job.id).status == "running"
            time.sleep(1)
            assert _holder(state, job.id) == worker  # the restarted server started no other
            seen = metric_steps(client, job.id)[-1]
            os.kill(worker, signal.SIGKILL)  # the training itself dies
            done = finished(client, job.id)
            assert done.status == "succeeded", done.error
            messages = [e.message for e in all_events(client, job.id)]
            continued = [m for m in messages if m.startswith("Training continues from checkpoint-")]
            assert continued, messages
            assert int(continued[-1].rsplit("-", 1)[1]) <= seen
            assert metric_steps(client, job.id) == list(range(1, 21))
            reply = client.chat.completions.create(
                model=done.fine_tuned_model,
                messages=[{"role": "user", "content": "hi"}],
                max_tokens=4,
            )
            assert reply.choices[0].finish_reason in ("stop", "length")
    finally:
        _stop(second, signal.SIGTERM)
