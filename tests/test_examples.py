"""The examples run as the README says, offline, and every example flow validates."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from datetime import date
from pathlib import Path

import httpx
import pytest
from markupsafe import escape

from steprun.runtime.local.trainer.settings import missing_modules
from steprun.steps.eval.compare import SCORES

ROOT = Path(__file__).resolve().parents[1]
STEPRUN = Path(sys.executable).parent / "steprun"
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
FLOWS = [p for p in EXAMPLES if not p.name.endswith(".authorizations.yaml")]


def steprun(
    *args: str, tmp_path: Path, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **(env or {}), "STEPRUN_STATE": str(tmp_path / "runs.db")}
    env.pop("OPENAI_API_KEY", None)  # the main job needs no key
    return subprocess.run(
        [str(STEPRUN), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
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


@pytest.mark.slow
def test_the_move_off_example_trains_its_replacement_for_real_and_reports(
    tmp_path: Path,
) -> None:
    """The whole move-off flow through the CLI: the replacement is trained by TRL on
    steprun-tiny, its generated answers are compared with the recorded ones, and the report
    holds the comparison and the real loss curve. Three epochs instead of the example's 30
    keep CI short; the example's own run time is measured by bench/move_off.py, which
    also shows why torch gets one thread here: on a shared, loaded machine its two
    threads wait on each other, and the run takes several times as long."""
    if missing_modules():
        pytest.skip(f"needs the train extra: {', '.join(missing_modules())} missing")
    out = tmp_path / "out"
    done = steprun(
        "run",
        "examples/move_off_openai.yaml",
        "--input",
        f"out_dir={out}",
        "--input",
        "n_epochs=3",
        tmp_path=tmp_path,
        timeout=900,
        env={"OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    fields = json.loads(done.stdout)

    # 1. The model to move off, listed with its base's shutdown date and the days left.
    source = fields["source"]["model"]
    assert source.startswith("ft:gpt-4o-mini-2024-07-18:")
    listed = {m["id"]: m for m in fields["models"]["data"]}  # the model and its checkpoints
    shutdown = date.fromisoformat(listed[source]["shutdown_date"])
    assert shutdown == date(2027, 1, 14)
    today = date.fromisoformat(fields["models"]["today"])
    assert listed[source]["days_left"] == (shutdown - today).days

    # 2 and 3. Its answers on the golden set, and a replacement trained for real: its
    # weights are in the replacement backend's folder, beside the run store.
    golden = [
        json.loads(line)
        for line in (ROOT / "examples" / "data" / "support_validation.jsonl")
        .read_text()
        .splitlines()
    ]
    size = len(golden)
    assert fields["recorded"]["asked"] == fields["replayed"]["asked"] == size
    replacement = fields["wait"]["fine_tuned_model"]
    assert replacement.startswith("ft:steprun-tiny:")
    job_folder = tmp_path / "local-backend.replacement" / "jobs" / fields["job"]["id"]
    assert (job_folder / "model" / "model.safetensors").is_file()
    assert fields["wait"]["trained_tokens"] > 0

    # 4. The comparison: one row per golden example, each pair of answers as the two
    # answer files hold them, and the scores are those of the documented functions.
    recorded = _answers(Path(fields["recorded"]["output"]))
    replayed = _answers(Path(fields["replayed"]["output"]))
    rows = fields["compare"]["examples"]
    assert [r["index"] for r in rows] == list(range(size))
    for row in rows:
        reference, candidate = recorded[row["index"]], replayed[row["index"]]
        assert (row["reference"], row["candidate"]) == (reference, candidate)
        for name, score in SCORES.items():
            assert row[name] == round(score(reference, candidate), 4)
            assert 0 <= row[name] <= 1
    summary = fields["compare"]["summary"]
    assert summary["examples"] == size
    for name in SCORES:
        assert summary[name] == round(sum(r[name] for r in rows) / size, 4)
    # The stand-in answers with its training data, the replacement with generated text.
    taught = _taught()
    assert all(recorded[i] in taught for i in recorded)

    # 5. The report: the same table, and the loss curve the trainer's metrics events gave,
    # falling as the replacement learned.
    report = json.loads((out / "report.json").read_text())
    assert report["examples"] == rows and report["summary"] == summary
    curve = report["loss_curve"]
    metrics = [e["data"] for e in fields["events"]["data"] if e["type"] == "metrics"]
    assert [p["step"] for p in curve] == sorted(m["step"] for m in metrics)
    assert len(curve) == fields["report"]["loss_points"] > 10
    head, tail = curve[:5], curve[-5:]
    assert sum(p["train_loss"] for p in tail) < sum(p["train_loss"] for p in head)
    assert curve[-1]["valid_loss"] is not None  # the validation file was scored
    page = (out / "report.html").read_text()
    assert fields["report"]["chart"] == "plotly" and "Plotly.newPlot" in page
    assert not re.search(r"<(script|link|img)[^>]+(src|href)=", page)  # self-contained
    for row in rows:
        assert str(escape(row["candidate"])) in page


def test_the_move_off_replacement_goes_to_together_when_an_authorizations_file_says(
    tmp_path: Path,
) -> None:
    """The README's recipe: redefine `replacement` (here at a `steprun serve-local` that
    speaks Together's dialect, simulated trainer) and name a base model Together tunes;
    the example runs unchanged, its replacement job created through Together's API."""
    from tests.runtime.durable_support import serve_local

    with serve_local(tmp_path / "server", 1.0) as server:
        origin = server.url.removesuffix("/v1")
        authorizations = tmp_path / "together.authorizations.yaml"
        authorizations.write_text(
            "replacement:\n  provider: together\n  api_key: ${env:TOGETHER_API_KEY}\n"
            f"  base_url: {origin}/together/v1\n",
            encoding="utf-8",
        )
        base = "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"
        done = steprun(
            "run",
            "examples/move_off_openai.yaml",
            "--authorizations",
            str(authorizations),
            *("--input", f"out_dir={tmp_path / 'out'}", "--input", f"replacement_base={base}"),
            *("--input", "n_epochs=2", "--input", "batch_size=auto"),
            tmp_path=tmp_path,
            env={"TOGETHER_API_KEY": "tg-test-key"},
        )
        ledger = httpx.get(f"{origin}/_steprun/ledger").json()
    assert done.returncode == 0, done.stderr[-3000:]
    fields = json.loads(done.stdout)
    assert fields["wait"]["provider_status"] == "completed"  # Together's word, kept beside
    assert fields["wait"]["fine_tuned_model"].startswith(f"ft:{base}:")
    # The server saw only the replacement's job: the stand-in stayed in process.
    assert [j["model"] for j in ledger["jobs"]] == [base]
    assert fields["compare"]["summary"]["examples"] == fields["recorded"]["examples"]
    assert "tg-test-key" not in done.stdout + done.stderr


def _answers(path: Path) -> dict[int, str]:
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    return {r["index"]: r["answer"] for r in rows}


def _taught() -> set[str]:
    lines = (ROOT / "examples" / "data" / "support.jsonl").read_text().splitlines()
    return {json.loads(line)["messages"][-1]["content"] for line in lines}


def test_the_hello_example_runs(tmp_path: Path) -> None:
    done = steprun("run", "examples/hello.yaml", "--input", "name=Ada", tmp_path=tmp_path)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["greeting"]["text"] == "Hello, Ada!"


@pytest.mark.parametrize("flow", FLOWS, ids=[p.name for p in FLOWS])
def test_every_example_validates(flow: Path, tmp_path: Path) -> None:
    done = steprun("validate", str(flow), tmp_path=tmp_path)
    if missing_modules() and "trainer: transformers" in flow.read_text():
        # Without the train extra (the README's test command), such a flow is refused with
        # the command that installs it.
        assert done.returncode == 2, done.stderr
        assert "pip install 'steprun[train]'" in done.stderr
        return
    assert done.returncode == 0, done.stderr


def test_the_move_off_authorizations_file_points_the_source_at_openai(tmp_path: Path) -> None:
    if missing_modules():  # the replacement trains for real: validation asks for the extra
        pytest.skip(f"needs the train extra: {', '.join(missing_modules())} missing")
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
