"""What tripped a newcomer, each through the real CLI (or the README's own code) in a
subprocess: debugging a plugin, embedding, hooks, schemas, output, paths, waiting."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from jsonschema import Draft202012Validator

from tests.runtime.conftest import Cli

REPO = Path(__file__).resolve().parents[2]
HELLO = REPO / "examples" / "hello.yaml"

CRASH = """
flow: crash
steps:
  - id: boom
    type: test.crash
    config: {message: plugin bug}
"""


def test_steprun_debug_shows_a_crashing_plugin_steps_traceback(
    cli: Callable[..., Cli], write_flow: Callable[..., Path], test_steps_env: dict[str, str | None]
) -> None:
    write_flow(CRASH)
    quiet = cli("run", "flow.yaml", env=test_steps_env)
    assert quiet.code == 1 and "crashed" in quiet.stderr and "Traceback" not in quiet.stderr
    debug = cli("run", "flow.yaml", env={**test_steps_env, "STEPRUN_DEBUG": "1"}, traceback_ok=True)
    assert debug.code == 1
    assert "Traceback (most recent call last):" in debug.stderr
    assert "steprun_test_steps.py" in debug.stderr  # where the bug is


def test_the_readme_embedding_snippet_is_a_complete_script(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Embedding", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert code is not None
    script = tmp_path / "embed.py"
    script.write_text(code[1], encoding="utf-8")
    env = {"STEPRUN_DISABLE_PLUGIN_AUTOLOAD": "1", "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["succeeded Hello, Ada!", "succeeded 42", "succeeded list"]


def test_run_step_without_an_authorization_says_to_pass_one() -> None:
    code = (
        "import asyncio\n"
        "from steprun.runtime import Runtime\n"
        "async def main():\n"
        "    async with Runtime(autoload=False) as rt:\n"
        "        r = await rt.run_step('openai.list_fine_tuning_jobs', {'limit': 1})\n"
        "        e = r.merge_fields['result']\n"
        "        print(r.status, e['code'], e['message'])\n"
        "asyncio.run(main())\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("failed missing_authorization ")
    assert "pass authorization= to Runtime.run_step" in done.stdout
    assert "flow's" not in done.stdout


def test_a_hook_with_a_wrong_argument_gets_one_sentence(
    cli: Callable[..., Cli], tmp_path: Path
) -> None:
    from tests.runtime.conftest import install_entry_point

    site = tmp_path / "site"
    install_entry_point(
        site,
        "acme_reports",
        {
            "acme_reports": "from steprun.runtime import hookimpl\n\n"
            "@hookimpl\ndef steprun_report(rep):\n    pass\n"
        },
        {"acme": "acme_reports"},
    )
    result = cli(
        "run", HELLO, env={"PYTHONPATH": str(site), "STEPRUN_DISABLE_PLUGIN_AUTOLOAD": None}
    )
    assert result.code != 0
    (line,) = result.stderr.strip().splitlines()
    assert "plugin 'acme'" in line
    assert "hook steprun_report takes the keyword argument(s) report" in line


def test_schema_is_self_contained_and_fields_is_a_table(cli: Callable[..., Cli]) -> None:
    printed = cli("schema", "openai.wait_for_fine_tuning_job")
    assert printed.code == 0
    assert "$ref" not in printed.stdout
    schema = json.loads(printed.stdout)
    Draft202012Validator.check_schema(schema)
    checker = Draft202012Validator(schema)  # no registry: nothing left to look up
    assert checker.is_valid({"job_id": "ftjob-abc", "max_wait": "2h", "until": "running"})
    assert not checker.is_valid({"job_id": "ftjob-abc", "until": "later"})

    table = cli("schema", "openai.wait_for_fine_tuning_job", "--fields")
    assert table.code == 0
    lines = table.stdout.splitlines()
    assert lines[0].split() == ["SETTING", "TYPE", "DEFAULT", "ALLOWED", "DESCRIPTION"]
    until = next(line for line in lines if line.startswith("until "))
    assert '"terminal"' in until and "terminal, running" in until
    assert next(line for line in lines if line.startswith("job_id *"))


def test_quiet_output_and_cwd_relative_input_paths(
    cli: Callable[..., Cli], tmp_path: Path, write_flow: Callable[..., Path]
) -> None:
    quiet = cli("run", HELLO, "--quiet", "--output", "greeting.text", "--input", "name=Ada")
    assert quiet.code == 0, quiet.stderr
    assert quiet.stdout == "Hello, Ada!\n" and quiet.stderr == ""
    unknown = cli("run", HELLO, "--output", "greting")
    assert unknown.code == 2 and "its merge fields: greeting" in unknown.stderr

    # The flow lives in flows/, the data beside the caller: a path typed on the command line
    # means what it means in the shell.
    (tmp_path / "flows").mkdir()
    write_flow(
        """
        flow: count
        inputs: {file: none.jsonl}
        steps:
          - id: check
            type: openai.validate_training_data
            config: {file: "{{ inputs.file }}"}
        """,
        name="flows/count.yaml",
    )
    data = tmp_path / "mine.jsonl"
    data.write_text((REPO / "examples" / "data" / "support.jsonl").read_text(), "utf-8")
    counted = cli("run", "flows/count.yaml", "--input", "file=mine.jsonl", "-q")
    assert counted.code == 0, counted.stderr
    assert json.loads(counted.stdout)["check"]["counts"]["examples"] == 36


PAUSE = """
flow: pause-early
authorization: local
authorizations: {local: {provider: local, job_seconds: 30}}
steps:
  - id: upload
    type: openai.upload_file
    config: {file: "DATA", purpose: fine-tune}
  - id: job
    type: openai.create_fine_tuning_job
    config: {training_file: "{{ upload.id }}", model: gpt-4o-mini-2024-07-18}
  - id: running
    type: openai.wait_for_fine_tuning_job
    config: {job_id: "{{ job.id }}", until: running}
  - id: pause
    type: openai.pause_fine_tuning_job
    config: {job_id: "{{ job.id }}"}
"""


def test_a_wait_until_running_lets_a_flow_pause_right_after_creating(
    cli: Callable[..., Cli], write_flow: Callable[..., Path]
) -> None:
    write_flow(PAUSE.replace("DATA", str(REPO / "examples" / "data" / "support.jsonl")))
    done = cli("run", "flow.yaml", timeout=120)
    assert done.code == 0, done.stderr
    fields = json.loads(done.stdout)
    assert fields["running"]["status"] == "running"
    assert fields["pause"]["status"] == "paused"
