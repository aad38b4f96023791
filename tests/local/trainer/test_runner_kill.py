"""``steprun run`` killed with SIGKILL while its job trains: ``steprun resume`` finds the
same job (the training went on in its own process, its state beside the run store) and
the run succeeds, with one job in the ledger."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.local.conftest import EXAMPLES
from tests.local.trainer import conftest  # noqa: F401  (skips without the train extra)

pytestmark = pytest.mark.slow

STEPRUN = Path(sys.executable).with_name("steprun")
FLOW = f"""
flow: kill-while-training
authorization: local
authorizations:
  local: {{provider: local, trainer: transformers}}
steps:
  - id: upload
    type: openai.upload_file
    config: {{file: "{EXAMPLES / "support.jsonl"}", purpose: fine-tune}}
  - id: job
    type: openai.create_fine_tuning_job
    config:
      training_file: "{{{{ upload.id }}}}"
      model: steprun-tiny
      seed: 4
      hyperparameters: {{n_epochs: 3, batch_size: 8}}
  - id: wait
    type: openai.wait_for_fine_tuning_job
    config: {{job_id: "{{{{ job.id }}}}", max_wait: 30m}}
"""


def _metrics(jobs: Path) -> int:
    """Metrics events written so far by the training processes under ``jobs``."""
    return sum(path.read_text().count('"type": "metrics"') for path in jobs.glob("*/events.jsonl"))


def test_a_run_killed_mid_training_resumes_into_the_same_job(tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text(FLOW)
    env = {**os.environ, "STEPRUN_STATE": str(tmp_path / "runs.db")}
    run = subprocess.Popen(
        [str(STEPRUN), "run", str(flow)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert run.stderr is not None
    first = run.stderr.readline()
    assert first.startswith("run run_"), first
    run_id = first.split()[1]
    jobs = tmp_path / "local-backend" / "jobs"
    deadline = time.monotonic() + 600
    while _metrics(jobs) < 3:
        assert run.poll() is None, run.stderr.read()
        assert time.monotonic() < deadline, "no training progress"
        time.sleep(0.3)
    run.send_signal(signal.SIGKILL)
    run.wait(timeout=10)
    run.stdout.close()  # type: ignore[union-attr]
    run.stderr.close()

    resumed = subprocess.run(
        [str(STEPRUN), "resume", run_id], env=env, capture_output=True, text=True, timeout=900
    )
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    folders = [p.name for p in jobs.iterdir()]
    assert len(folders) == 1  # one job: the same one, trained once
    fields = json.loads(resumed.stdout)
    assert fields["job"]["id"] == folders[0] == fields["wait"]["id"]
    assert fields["wait"]["status"] == "succeeded"
    steps = [
        json.loads(line)["data"]["step"]
        for line in (jobs / folders[0] / "events.jsonl").read_text().splitlines()
        if json.loads(line)["type"] == "metrics"
    ]
    assert steps == list(range(1, 16))  # every step once: never trained twice
