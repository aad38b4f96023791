"""The command line: exit codes 0/1/2, JSON on stdout, progress on stderr, help everywhere."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from steprun.runtime.cli import cli as cli_group
from steprun.runtime.cli import parse_inputs
from tests.runtime.conftest import Cli

HELLO = Path(__file__).resolve().parents[2] / "examples" / "hello.yaml"

INPUTS = """
flow: inputs
inputs: {name: world, n: 1}
steps:
  - id: got
    type: core.set
    config: {values: {name: "{{ inputs.name }}", n: "{{ inputs.n }}", twice: "{{ inputs.n * 2 }}"}}
"""


@pytest.mark.parametrize("command", sorted(cli_group.commands))
def test_every_command_has_help(command: str) -> None:
    result = CliRunner().invoke(cli_group, [command, "--help"], prog_name="steprun")
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: steprun {command} ")


def test_help_and_version_from_the_console_script(cli: Callable[..., Cli]) -> None:
    top = cli("--help")
    assert top.code == 0
    for command in ("run", "validate", "steps", "schema", "serve-local"):
        assert f"  {command} " in top.stdout
    version = cli("--version")
    assert version.code == 0 and version.stdout.startswith("steprun, version ")


def test_run_prints_merge_fields_on_stdout_and_progress_on_stderr(cli: Callable[..., Cli]) -> None:
    result = cli("run", HELLO, "--input", "name=Ada")
    assert result.code == 0, result.stderr
    fields = json.loads(result.stdout)  # stdout is exactly the JSON
    assert fields["greeting"] == {"text": "Hello, Ada!", "length": 3}
    assert fields["counter"] == 3
    assert fields["done"]["message"] == "looped 3 times"
    lines = result.stderr.splitlines()
    assert lines[0].startswith("run run_") and "of flow 'hello'" in lines[0]
    assert "  ✔ greeting succeeded in " in result.stderr
    assert "    say info  Hello, Ada!" in result.stderr
    assert lines[-1].startswith("steprun: run run_") and lines[-1].endswith(" succeeded")


def test_inputs_are_json_when_they_are_json(
    cli: Callable[..., Cli], write_flow: Callable[..., Path]
) -> None:
    write_flow(INPUTS)
    result = cli("run", "flow.yaml", "--input", "n=21", "--input", "name=[1, 2]")
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout) == {"got": {"name": [1, 2], "n": 21, "twice": 42}}
    assert parse_inputs(("a=3", "b=true", "c=text", "d=", "e=a=b")) == {
        "a": 3,
        "b": True,
        "c": "text",
        "d": "",
        "e": "a=b",
    }


@pytest.mark.parametrize("command", ["run", "validate"])
def test_an_input_without_equals_exits_2(
    cli: Callable[..., Cli], write_flow: Callable[..., Path], command: str
) -> None:
    write_flow(INPUTS)
    result = cli(command, "flow.yaml", "--input", "name")
    assert result.code == 2
    assert "--input expects NAME=VALUE, found 'name'" in result.stderr
    assert result.stdout == ""


def test_steps_lists_the_catalog(cli: Callable[..., Cli]) -> None:
    result = cli("steps")
    assert result.code == 0
    rows = {line.split()[0]: line.split(None, 2)[1:] for line in result.stdout.splitlines()}
    assert rows["core.set"] == ["1.0.0", "Set values"]
    assert rows["core.condition"] == ["1.0.0", "Choose an exit"]
    catalog = json.loads(cli("steps", "--json").stdout)
    assert {"type": "core.fail", "version": "1.0.0", "title": "Fail with an error",
            "effect": "none"} in catalog  # fmt: skip
    assert [row["type"] for row in catalog] == sorted(row["type"] for row in catalog)


def test_schema_prints_a_steps_config_schema_and_the_flows(cli: Callable[..., Cli]) -> None:
    step = cli("schema", "core.set")
    assert step.code == 0
    assert json.loads(step.stdout)["$id"].endswith("/core.set.schema.json")
    flow = cli("schema", "flow")
    assert flow.code == 0
    assert set(json.loads(flow.stdout)["required"]) == {"flow", "steps"}


def test_schema_of_an_unknown_type_suggests_the_closest(cli: Callable[..., Cli]) -> None:
    result = cli("schema", "core.st")
    assert result.code == 2
    assert result.stdout == ""
    assert "unknown step type 'core.st'; did you mean 'core.set'?" in result.stderr


def test_validate_checks_several_files_and_reports_each(
    cli: Callable[..., Cli], write_flow: Callable[..., Path]
) -> None:
    write_flow(INPUTS, "good.yaml")
    write_flow("flow: bad\nsteps:\n  - {id: a, type: core.sett}\n", "bad.yaml")
    write_flow("flow: [\n", "broken.yaml")
    result = cli("validate", "good.yaml", "bad.yaml", "broken.yaml", "missing.yaml")
    assert result.code == 2
    assert "good.yaml: ok (1 steps)" in result.stderr
    assert "bad.yaml:3: step 'a': steps[0].type: unknown step type 'core.sett'" in result.stderr
    assert "broken.yaml:2: YAML syntax error" in result.stderr
    assert "missing.yaml: no such flow file" in result.stderr
    all_good = cli("validate", "good.yaml", HELLO)
    assert all_good.code == 0
    assert all_good.stderr.count(": ok (") == 2


def test_validate_without_a_file_is_a_usage_error(cli: Callable[..., Cli]) -> None:
    result = cli("validate")
    assert result.code == 2
    assert "Missing argument 'FLOWS...'" in result.stderr


def test_an_unknown_command_is_a_usage_error(cli: Callable[..., Cli]) -> None:
    result = cli("rnu", "flow.yaml")
    assert result.code == 2
    assert "No such command 'rnu'" in result.stderr


def test_a_run_refused_before_its_first_step_leaves_no_run_behind(
    cli: Callable[..., Cli], write_flow: Callable[..., Path]
) -> None:
    write_flow(
        """
        flow: refused
        authorization: openai
        authorizations:
          openai: {provider: openai, api_key: "${env:NOT_SET_FOR_THIS_TEST}"}
        steps:
          - {id: a, type: core.set, config: {value: 1}}
        """
    )
    refused = cli("run", "flow.yaml")
    assert refused.code == 2
    unwritable = cli("run", HELLO, "--report", "flow.yaml/report.jsonl")
    assert unwritable.code == 2
    assert "cannot write the report file" in unwritable.stderr
    # Nothing ran: `steprun runs` must not list runs "running" forever.
    runs = json.loads(cli("runs", "--json").stdout)
    assert [r for r in runs if r["status"] == "running"] == []
