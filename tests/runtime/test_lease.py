"""A process that lost its run's lease stops at its next write instead of racing the new owner.

The lease lapses when a process stalls (suspended, an event loop blocked) for longer than
its term; `steprun resume` elsewhere may then take the run. The stale process must not
write one more step boundary: every journal write is fenced by the lease.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.runtime.stores import Reader

ROOT = Path(__file__).resolve().parents[2]
STEPRUN = Path(sys.executable).parent / "steprun"

FLOW = f"""
flow: lease
authorization: local
authorizations:
  local: {{provider: local, job_seconds: 60}}
steps:
  - id: upload
    type: openai.upload_file
    config: {{file: "{ROOT / "examples" / "data" / "support.jsonl"}", purpose: fine-tune}}
  - id: job
    type: openai.create_fine_tuning_job
    config: {{training_file: "{{{{ upload.id }}}}", model: gpt-4o-mini-2024-07-18}}
  - id: wait
    type: openai.wait_for_fine_tuning_job
    config: {{job_id: "{{{{ job.id }}}}", poll_interval: 3.5, max_poll_interval: 3.5}}
"""


def test_a_process_that_lost_its_lease_stops_without_writing(
    tmp_path: Path, state: str | Path
) -> None:
    flow = tmp_path / "lease.yaml"
    flow.write_text(FLOW, encoding="utf-8")
    db = Reader(state)
    env = {**os.environ, "STEPRUN_STATE": str(state), "STEPRUN_DISABLE_PLUGIN_AUTOLOAD": "1"}
    proc = subprocess.Popen(
        [str(STEPRUN), "run", str(flow)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if db.query("SELECT 1 FROM attempts WHERE step_id = 'wait' AND status = 'started'"):
                break
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        else:
            raise AssertionError("the run never reached its wait step")
        (run_id,) = db.query("SELECT id FROM runs")[0]
        before = db.query("SELECT seq, status, wake_at FROM attempts ORDER BY seq")
        # What a resume on another host does once the lease has lapsed.
        db.execute(
            "UPDATE runs SET lease_owner = 'elsewhere:1', lease_until = ? WHERE id = ?",
            time.time() + 600,
            run_id,
        )
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 1, err
    assert f"run {run_id} is no longer this process's to drive" in err
    assert "Traceback" not in err
    # Nothing more was written for the run by the stale process: not the wait's wake-up
    # time, not its end, not the run's status.
    after = db.query("SELECT seq, status FROM attempts ORDER BY seq")
    assert [tuple(row) for row in after] == [(seq, status) for seq, status, _ in before]
    runs = db.query("SELECT status, lease_owner FROM runs")
    assert [tuple(row) for row in runs] == [("running", "elsewhere:1")]
