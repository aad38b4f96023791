"""The examples run as the README says, offline, and every example flow validates."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STEPRUN = Path(sys.executable).parent / "steprun"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
FLOWS = [p for p in EXAMPLES if not p.name.endswith(".authorizations.yaml")]


def steprun(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STEPRUN_STATE": str(tmp_path / "runs.db")}
    env.pop("OPENAI_API_KEY", None)  # the main job needs no key
    return subprocess.run(
        [str(STEPRUN), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_the_readme_main_command_is_the_fine_tuning_example() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = re.findall(r"^python3 -m venv .*$", readme, flags=re.MULTILINE)
    assert len(commands) == 2, "the README holds exactly two set-up commands"
    assert commands[0].endswith("steprun run examples/fine_tune.yaml")
    assert commands[1].endswith("pytest")


def test_the_fine_tuning_example_runs_the_whole_lifecycle_offline(tmp_path: Path) -> None:
    done = steprun("run", "examples/fine_tune.yaml", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    fields = json.loads(done.stdout)
    assert fields["check"]["format"] == "chat"
    assert fields["upload"]["purpose"] == "fine-tune"
    assert fields["wait"]["status"] == "succeeded"
    model = fields["wait"]["fine_tuned_model"]
    assert model.startswith("ft:gpt-4o-mini-2024-07-18:") and ":support-bot:" in model
    answer = fields["ask"]["choices"][0]["message"]["content"]
    # The fine-tuned model learned its data: the answer is the training example's.
    training = [
        json.loads(line)
        for line in (ROOT / "examples" / "data" / "support.jsonl").read_text().splitlines()
    ]
    taught = {m["content"] for ex in training for m in ex["messages"] if m["role"] == "assistant"}
    assert answer in taught
    assert "password" in answer.lower()
    # Progress went to stderr, starting with the run id, and the wait showed metrics.
    assert done.stderr.startswith("run run_")
    assert "train_loss" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_move_off_example_runs_offline_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "out"
    done = steprun(
        "run", "examples/move_off_openai.yaml", "--input", f"out_dir={out}", tmp_path=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    fields = json.loads(done.stdout)
    source = fields["source"]["model"]
    assert source.startswith("ft:gpt-4o-mini-2024-07-18:")
    listed = {m["id"]: m for m in fields["models"]["data"]}  # the model and its checkpoints
    assert listed[source]["shutdown_date"] == "2027-01-14"
    assert {m["shutdown_date"] for m in listed.values()} == {"2027-01-14"}
    assert fields["wait"]["fine_tuned_model"].startswith("ft:steprun-tiny:")
    golden = (ROOT / "examples" / "data" / "support_validation.jsonl").read_text()
    size = len(golden.splitlines())
    assert fields["recorded"]["asked"] == fields["replayed"]["asked"] == size
    summary = fields["compare"]["summary"]
    assert summary["examples"] == size and 0 <= summary["token_f1"] <= 1
    assert fields["report"]["chart"] == "plotly" and fields["report"]["loss_points"] > 10
    report = json.loads((out / "report.json").read_text())
    assert len(report["examples"]) == size and report["loss_curve"]
    page = (out / "report.html").read_text()
    assert "Plotly.newPlot" in page and not re.search(r"<script[^>]+src=", page)
    assert "Traceback" not in done.stderr


def test_the_hello_example_runs(tmp_path: Path) -> None:
    done = steprun("run", "examples/hello.yaml", "--input", "name=Ada", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["greeting"]["text"] == "Hello, Ada!"


@pytest.mark.parametrize("flow", FLOWS, ids=[p.name for p in FLOWS])
def test_every_example_validates(flow: Path, tmp_path: Path) -> None:
    done = steprun("validate", str(flow), tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr


def test_the_move_off_authorizations_file_points_the_source_at_openai(tmp_path: Path) -> None:
    done = steprun(
        "validate",
        "examples/move_off_openai.yaml",
        "--authorizations",
        "examples/move_off.authorizations.yaml",
        tmp_path=tmp_path,
    )
    assert done.returncode == 0, done.stderr


def test_the_openai_authorizations_file_redefines_the_example_for_openai(tmp_path: Path) -> None:
    done = steprun(
        "validate",
        "examples/fine_tune.yaml",
        "--authorizations",
        "examples/openai.authorizations.yaml",
        tmp_path=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    # Without the key it refuses to run, before any effect, naming the variable.
    ran = steprun(
        "run",
        "examples/fine_tune.yaml",
        "--authorizations",
        "examples/openai.authorizations.yaml",
        tmp_path=tmp_path,
    )
    assert ran.returncode == 2
    assert "OPENAI_API_KEY is not set" in ran.stderr


def test_the_fine_tuning_examples_failure_branch_exits_1(tmp_path: Path) -> None:
    from tests.runtime.durable_support import Workspace, serve_local

    with serve_local(tmp_path / "server", 1.0) as server:
        ws = Workspace(tmp_path / "ws", server)
        args = ws.fine_tune()
        server.arm(
            kind="job_failure",
            at="running",
            error={"code": "invalid_training_file", "message": "bad row 7", "param": None},
        )
        done = ws.cli(*args, "--report", "report.jsonl")
    assert done.code == 1, done.stderr[-3000:]
    assert "fine-tune failed: fine-tuning job" in done.stderr  # the branch reported it
    assert "bad row 7" in done.stderr.splitlines()[-1]
    reports = [json.loads(line) for line in (ws.root / "report.jsonl").read_text().splitlines()]
    steps = {r["step"]: r["status"] for r in reports if r["kind"] == "step"}
    assert steps["wait"] == "error_handled" and steps["report_failure"] == "succeeded"
    assert "ask" not in steps
    assert reports[-1]["status"] == "failed" and "bad row 7" in reports[-1]["error"]["message"]
