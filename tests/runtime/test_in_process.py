"""Two `provider: local` authorizations with different settings are two embedded
backends, never one with their settings merged; with the same settings they share one.
Through the real CLI, with the backends' state beside the run store."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

from tests.runtime.conftest import Cli

ROOT = Path(__file__).resolve().parents[2]

FLOW = """\
flow: two-places
authorization: stand_in
authorizations:
  stand_in: {provider: local, job_seconds: 1}
  twin: {provider: local, job_seconds: 1}
  other: {provider: local, job_seconds: 30}
steps:
  - id: upload
    type: openai.upload_file
    config: {file: data.jsonl, purpose: fine-tune}
  - id: job
    type: openai.create_fine_tuning_job
    config: {training_file: "{{ upload.id }}", model: gpt-4o-mini-2024-07-18}
  - id: same
    type: openai.retrieve_fine_tuning_job
    authorization: twin
    config: {job_id: "{{ job.id }}"}
  - id: elsewhere
    type: openai.retrieve_fine_tuning_job
    authorization: other
    config: {job_id: "{{ job.id }}"}
    on_error: end
"""


def test_local_authorizations_with_other_settings_are_other_backends(
    tmp_path: Path, cli: Callable[..., Cli]
) -> None:
    shutil.copy(ROOT / "examples" / "data" / "support.jsonl", tmp_path / "data.jsonl")
    (tmp_path / "flow.yaml").write_text(FLOW, encoding="utf-8")
    done = cli("run", "flow.yaml")
    assert done.code == 0, done.stderr
    fields = json.loads(done.stdout)
    # The same settings: the same backend, which has the job.
    assert fields["same"]["id"] == fields["job"]["id"]
    # Other settings: another backend, which has never heard of it.
    assert fields["elsewhere"]["status"] == 404
    assert fields["elsewhere"]["code"] == "fine_tune_not_found"
    # Each keeps its state beside the run store: the flow's own authorization in the
    # usual folder, the other in one named after it.
    state = tmp_path / "state"
    assert (state / "local-backend" / "backend.db").is_file()
    assert (state / "local-backend.other" / "backend.db").is_file()
