"""Resume after a fix: an edited flow (checked compatible), overridden inputs, and runs
whose process died shown as interrupted with the command that continues them.

The real CLI in subprocesses.
"""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runtime.durable_support import EXAMPLE_DATA, Workspace, reap_children, wait_for
from tests.runtime.test_watching import local_example

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _reap() -> Iterator[None]:
    yield
    reap_children()


CHECK = """
flow: check-data
inputs: {training_file: data/missing.jsonl}
steps:
  - id: check
    type: openai.validate_training_data
    config: {file: "{{ inputs.training_file }}"}
  - id: done
    type: core.log
    config: {message: "{{ check.counts.examples }} examples"}
"""


def test_resume_with_an_input_override_takes_the_fix(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    (tmp_path / "flow.yaml").write_text(CHECK, encoding="utf-8")
    failed = ws.cli("run", "flow.yaml")
    assert failed.code == 1
    run_id = ws.runs()[0]["id"]
    again = ws.cli("resume", run_id)  # the same bad input fails the same way
    assert again.code == 1
    typo = ws.cli("resume", run_id, "--input", "trainig_file=x")
    assert typo.code == 2 and "Did you mean 'training_file'?" in typo.stderr

    good = EXAMPLE_DATA / "support.jsonl"
    fixed = ws.cli("resume", run_id, "--input", f"training_file={good}")
    assert fixed.code == 0, fixed.stderr
    assert json.loads(fixed.stdout)["done"]["message"] == "36 examples"
    assert ws.show(run_id)["inputs"]["training_file"] == str(good)  # kept for later


BROKEN = """
flow: fixable
steps:
  - id: first
    type: core.set
    config: {value: 1}
  - id: second
    type: core.fail
    config: {message: "not written yet"}
  - id: third
    type: core.log
    config: {message: "first was {{ first }}"}
"""


def test_resume_with_an_edited_flow_continues_with_it_if_compatible(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    (tmp_path / "flow.yaml").write_text(BROKEN, encoding="utf-8")
    failed = ws.cli("run", "flow.yaml")
    assert failed.code == 1
    run_id = ws.runs()[0]["id"]

    # An edit that drops the step the run stopped at, or a merge field it wrote: refused.
    gone = BROKEN.replace("id: second", "id: renamed").replace("id: first", "id: initial")
    (tmp_path / "gone.yaml").write_text(gone.replace("{{ first }}", "{{ initial }}"), "utf-8")
    refused = ws.cli("resume", run_id, "--flow", "gone.yaml")
    assert refused.code == 2
    assert f"gone.yaml cannot continue run {run_id}" in refused.stderr
    assert "step 'second'" in refused.stderr and "merge field(s) first" in refused.stderr

    fixed_text = BROKEN.replace(
        'type: core.fail\n    config: {message: "not written yet"}',
        "type: core.set\n    config: {value: 2}",
    )
    (tmp_path / "fixed.yaml").write_text(fixed_text, encoding="utf-8")
    fixed = ws.cli("resume", run_id, "--flow", "fixed.yaml")
    assert fixed.code == 0, fixed.stderr
    fields = json.loads(fixed.stdout)
    assert fields["second"] == 2 and fields["third"]["message"] == "first was 1"
    assert ws.show(run_id)["flow_file"].endswith("fixed.yaml")


def test_a_run_stopped_by_ctrl_c_or_a_kill_is_listed_as_interrupted_with_its_resume(
    tmp_path: Path,
) -> None:
    ws = Workspace(tmp_path)
    flow = local_example(tmp_path, job_seconds=60, wait="heartbeat: 1s")
    child = ws.spawn("run", flow)
    run_id = wait_for(child.run_id, "the run id", timeout=60)
    wait_for(lambda: ws.step_started("wait"), "the wait step", timeout=60)
    child.process.send_signal(signal.SIGINT)
    assert child.wait(30) == 130
    said = child.stderr().splitlines()[-1]
    assert (
        said
        == f"steprun: interrupted: stopped run {run_id}; `steprun resume {run_id}` continues it"
    )

    killed = ws.spawn("run", "--input", "question=Where is my invoice?", flow)
    other = wait_for(killed.run_id, "the second run id", timeout=60)
    wait_for(lambda: len([a for a in ws.attempts(other) if a["step_id"] == "wait"]), "wait")
    killed.kill()

    listed = ws.cli("runs")
    assert listed.code == 0
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["RUN", "STATUS", "FLOW", "STEP", "STARTED", "DURATION"]
    statuses = {line.split()[0]: line.split()[1] for line in lines[1:]}
    assert statuses == {run_id: "interrupted", other: "interrupted"}
    for found in (run_id, other):
        assert f"`steprun resume {found}` continues it" in listed.stderr
    assert ws.runs()[0]["status"] == "interrupted"  # --json says the same
