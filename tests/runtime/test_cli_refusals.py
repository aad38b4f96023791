"""The CLI says no to what cannot be meant: undeclared inputs, stray options, dead settings.

Every check here runs the real ``steprun`` in a subprocess, as a newcomer meets it.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from tests.runtime.conftest import Cli, line_of

HELLO = Path(__file__).resolve().parents[2] / "examples" / "hello.yaml"


def test_an_undeclared_input_exits_2_naming_the_inputs_and_the_close_one(
    cli: Callable[..., Cli],
) -> None:
    result = cli("run", HELLO, "--input", "nmae=Ada")
    assert result.code == 2, result.stderr
    assert result.stdout == ""
    assert "has no input 'nmae'. Did you mean 'name'?" in result.stderr
    assert "Its inputs: attempts_allowed, name." in result.stderr
    assert "run run_" not in result.stderr  # nothing ran
    far = cli("validate", HELLO, "--input", "colour=red")
    assert far.code == 2
    assert "has no input 'colour'. Its inputs:" in far.stderr  # no far-fetched guess


def test_an_input_only_a_template_reads_is_accepted(
    cli: Callable[..., Cli], write_flow: Callable[..., Path]
) -> None:
    write_flow(
        """
        flow: reads
        steps:
          - id: got
            type: core.set
            config: {value: "{{ inputs.who }}"}
        """
    )
    result = cli("run", "flow.yaml", "--input", "who=Ada")
    assert result.code == 0, result.stderr


def test_a_typo_in_row_3_is_blamed_on_row_3(cli: Callable[..., Cli], tmp_path: Path) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_text('{"name": "a"}\n{"name": "b"}\n{"nmae": "c"}\n', encoding="utf-8")
    result = cli("run", HELLO, "--inputs-file", rows)
    assert result.code == 2
    assert f"{rows}:3: row 3: flow 'hello'" in result.stderr
    assert "has no input 'nmae'. Did you mean 'name'?" in result.stderr


def test_concurrency_without_an_inputs_file_is_a_usage_error(cli: Callable[..., Cli]) -> None:
    result = cli("run", HELLO, "--concurrency", "4")
    assert result.code == 2
    assert "--concurrency runs the rows of --inputs-file" in result.stderr


UNKNOWN_KEYS = """
flow: typos
on_eror: nowhere
steps:
  - id: a
    type: core.set
    confg: {value: 1}
  - id: b
    type: core.log
    config: {message: "{{ nothing.x }}"}
    next: nowhere
"""


def test_validate_reports_unknown_keys_templates_and_exits_in_one_pass(
    cli: Callable[..., Cli], write_flow: Callable[..., Path]
) -> None:
    path = write_flow(UNKNOWN_KEYS)
    result = cli("validate", "flow.yaml")
    assert result.code == 2
    err = result.stderr
    assert f"flow.yaml:{line_of(path, 'on_eror')}: on_eror: unknown key 'on_eror'" in err
    assert f":{line_of(path, 'confg')}: step 'a': steps[0].confg: unknown key 'confg'" in err
    assert "reads 'nothing', which is not a merge field" in err  # the template problem
    assert "next leads to 'nowhere'" in err  # the exit problem


SETTINGS = """
flow: settings
authorization: local
authorizations: {local: {provider: local}}
steps:
  - id: job
    type: openai.create_fine_tuning_job
    config:
      training_file: file-abc
      model: gpt-4o-mini-2024-07-18
      method:
        type: supervised
        supervised: {hyperparameters: {n_epochs: three, batch_size: 0}}
  - id: stops
    type: openai.request_fine_tuned_model
    config: {model: m, prompt: hi, stop: [a, b, c, d, e]}
  - id: best
    type: openai.request_fine_tuned_model
    config: {model: m, prompt: hi, n: 2, best_of: 1}
  - id: dead
    type: core.fail
    config: {message: boom}
    handle_error: false
    on_error: best
  - id: shout
    type: acme.shout
  - id: near
    type: core.sett
"""


def test_validate_says_what_is_allowed_and_what_is_dead(
    cli: Callable[..., Cli], write_flow: Callable[..., Path]
) -> None:
    write_flow(SETTINGS)
    result = cli("validate", "flow.yaml", env={"STEPRUN_DISABLE_PLUGIN_AUTOLOAD": None})
    assert result.code == 2
    err = result.stderr
    assert 'n_epochs: expected "auto" or an integer from 1 to 50, found "three"' in err
    assert 'batch_size: expected "auto" or an integer from 1 to 256, found 0' in err
    assert "stop: expected a string or a list of up to 4 strings or null, found [" in err
    assert "best_of: best_of (1) must be at least n (2)" in err
    assert "step 'dead': steps[3].handle_error: on_error is never taken" in err
    assert "unknown step type 'acme.shout'; run `steprun steps` for the list" in err
    assert "unknown step type 'core.sett'; did you mean 'core.set'?" in err
