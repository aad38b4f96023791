"""Validation before any effect: every problem of a flow at once, each with file:line and step."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from steprun.runtime import FlowInvalid, Problem, Runtime
from tests.runtime.conftest import Cli, ReportCollector, dedent, line_of, make_runtime, run_flow


def problems(runtime: Runtime, source: object, inputs: tuple[str, ...] = ()) -> list[Problem]:
    return runtime.validate(source, inputs=inputs)  # type: ignore[arg-type]


def only(found: list[Problem]) -> Problem:
    assert len(found) == 1, "\n".join(map(str, found))
    return found[0]


MANY = """
flow: many
version: 1
stepz: []
authorization: nope
on_error: handlr
steps:
  - id: first
    type: core.sett
    config: {value: 1}
  - id: first
    type: core.set
    config: {value: 2}
  - id: 3
    type: core.set
    config: {value: 3}
  - id: jump
    type: core.log
    nxt: end
    config: {message: hi}
  - id: exits
    type: core.log
    next: nowhere
    on_error: jumpp
    config: {message: hi}
  - id: choose
    type: core.condition
    config:
      cases: [{when: true, next: zzz}]
  - id: syntax
    type: core.log
    config: {message: "{{ foo( }}"}
  - id: schema
    type: core.set
    authorization: ghost
    config: {values: 3}
  - id: handler
    type: core.log
    config: {message: "{{ error.message }}"}
"""


def test_every_problem_is_reported_at_once_with_its_line_and_step(
    runtime: Runtime, write_flow: Callable[..., Path]
) -> None:
    path = write_flow(MANY)
    found = {(p.line, p.step): p.message for p in problems(runtime, path)}
    expected = {
        (line_of(path, "stepz"), None): "unknown key 'stepz'; did you mean 'steps'?",
        (line_of(path, "authorization: nope"), None): "authorization 'nope' is not defined",
        (line_of(path, "on_error: handlr"), None): "did you mean 'handler'?",
        (line_of(path, "core.sett"), "first"): "unknown step type 'core.sett'; did you mean "
        "'core.set'?",
        (line_of(path, "{value: 2}") - 2, "first"): "step id 'first' is used twice (first at "
        f"line {line_of(path, 'core.sett') - 1})",
        (line_of(path, "id: 3"), None): "expected a string, found number 3",
        (line_of(path, "nxt: end"), "jump"): "unknown key 'nxt'; did you mean 'next'?",
        (line_of(path, "next: nowhere"), "exits"): "next leads to 'nowhere', but there is no "
        "step with that id",
        (line_of(path, "on_error: jumpp"), "exits"): "did you mean 'jump'?",
        (line_of(path, "next: zzz"), "choose"): "exit leads to 'zzz', but there is no step",
        (line_of(path, "foo("), "syntax"): "template syntax error",
        (line_of(path, "ghost"), "schema"): "authorization 'ghost' is not defined",
        (line_of(path, "values: 3"), "schema"): "expected an object, found number 3",
    }
    assert set(found) == set(expected), "\n".join(f"{k}: {v}" for k, v in sorted(found.items()))
    for where, text in expected.items():
        assert text in found[where], (where, found[where])


def test_validate_prints_every_problem_as_file_line_step_and_exits_2(
    cli: Callable[..., Cli], write_flow: Callable[..., Path]
) -> None:
    path = write_flow(MANY)
    result = cli("validate", path.name)
    assert result.code == 2
    assert "13 problems found" in result.stderr
    lines = [line.strip() for line in result.stderr.splitlines() if line.startswith("  ")]
    assert len(lines) == 13
    assert all(re.match(r"flow\.yaml:\d+: ", line) for line in lines), lines
    assert f"flow.yaml:{line_of(path, 'core.sett')}: step 'first': steps[0].type: unknown" in (
        result.stderr
    )
    assert f"flow.yaml:{line_of(path, 'next: zzz')}: step 'choose': " in result.stderr


def test_run_refuses_an_invalid_flow_before_any_step_runs(write_flow: Callable[..., Path]) -> None:
    collector = ReportCollector()
    runtime = make_runtime(plugins=[collector])
    path = write_flow(
        """
        flow: no-effect
        steps:
          - id: fine
            type: core.set
            config: {value: 1}
          - id: wrong
            type: core.set
            config: {values: 3}
        """
    )
    with pytest.raises(FlowInvalid):
        run_flow(runtime, path)
    assert collector.reports == []


def test_duplicate_step_ids(runtime: Runtime, write_flow: Callable[..., Path]) -> None:
    path = write_flow(
        """
        flow: dup
        steps:
          - id: a
            type: core.set
            config: {value: 1}
          - id: a
            type: core.set
            config: {value: 2}
        """
    )
    problem = only(problems(runtime, path))
    assert problem.step == "a"
    assert problem.line == line_of(path, "{value: 2}") - 2
    assert f"used twice (first at line {line_of(path, '{value: 1}') - 2})" in problem.message


@pytest.mark.parametrize("bad_id", ["3", "[a]", "true", "{x: 1}", "with-dash"])
def test_step_ids_must_be_identifiers(
    runtime: Runtime, write_flow: Callable[..., Path], bad_id: str
) -> None:
    path = write_flow(
        f"flow: ids\nsteps:\n  - id: {bad_id}\n    type: core.set\n    config: {{value: 1}}\n"
    )
    problem = only(problems(runtime, path))
    assert problem.line == 3
    assert problem.path == "steps[0].id"


@pytest.mark.parametrize("reserved", ["inputs", "error", "end", "inherit"])
def test_reserved_names_cannot_be_step_ids(
    runtime: Runtime, write_flow: Callable[..., Path], reserved: str
) -> None:
    path = write_flow(
        f"flow: r\nsteps:\n  - id: {reserved}\n    type: core.set\n    config: {{value: 1}}\n"
    )
    assert "is reserved" in only(problems(runtime, path)).message


def test_unknown_top_level_key_suggests_the_closest(
    runtime: Runtime, write_flow: Callable[..., Path]
) -> None:
    path = write_flow(
        """
        flow: keys
        log_levl: debug
        steps: [{id: a, type: core.log, config: {message: hi}}]
        """
    )
    problem = only(problems(runtime, path))
    assert problem.line == 2
    assert problem.message == "unknown key 'log_levl'; did you mean 'log_level'?"


def test_unknown_step_type_suggests_the_closest(
    runtime: Runtime, write_flow: Callable[..., Path]
) -> None:
    path = write_flow(
        """
        flow: types
        steps:
          - id: a
            type: core.condtion
        """
    )
    problem = only(problems(runtime, path))
    assert problem.message == "unknown step type 'core.condtion'; did you mean 'core.condition'?"
    assert problem.line == line_of(path, "core.condtion")


def test_an_unknown_config_key_names_the_schema_command(
    runtime: Runtime, write_flow: Callable[..., Path]
) -> None:
    path = write_flow(
        """
        flow: config
        steps:
          - id: a
            type: core.log
            config:
              message: hi
              levle: warn
        """
    )
    problem = only(problems(runtime, path))
    assert problem.line == line_of(path, "levle")
    assert "did you mean 'level'? (see `steprun schema core.log`)" in problem.message


def test_a_config_that_fails_its_schema_statically(
    runtime: Runtime, write_flow: Callable[..., Path]
) -> None:
    path = write_flow(
        """
        flow: config
        steps:
          - id: a
            type: core.log
            config: {message: hi, level: loud}
          - id: b
            type: core.fail
            config: {}
        """
    )
    found = sorted(problems(runtime, path), key=lambda p: p.line or 0)
    assert [(p.step, p.line) for p in found] == [
        ("a", line_of(path, "loud")),
        ("b", line_of(path, "config: {}")),
    ]
    assert 'expected one of "debug", "info", "warn", "error", found "loud"' in found[0].message
    assert "missing required key 'message'" in found[1].message


def test_a_templated_value_is_not_checked_statically(
    runtime: Runtime, write_flow: Callable[..., Path]
) -> None:
    path = write_flow(
        """
        flow: later
        inputs: {level: loud}
        steps:
          - id: a
            type: core.log
            config: {message: hi, level: "{{ inputs.level }}"}
        """
    )
    assert problems(runtime, path) == []


def test_a_template_syntax_error(runtime: Runtime, write_flow: Callable[..., Path]) -> None:
    path = write_flow(
        """
        flow: syntax
        steps:
          - id: a
            type: core.set
            config:
              values:
                fine: "{{ 1 + 1 }}"
                broken: "{% for x in %}"
        """
    )
    problem = only(problems(runtime, path))
    assert problem.line == line_of(path, "broken:")
    assert problem.step == "a"
    assert problem.message.startswith("template syntax error in '{% for x in %}'")


def test_a_template_syntax_error_exits_2(
    cli: Callable[..., Cli], write_flow: Callable[..., Path]
) -> None:
    path = write_flow(
        """
        flow: syntax
        steps:
          - id: a
            type: core.log
            config: {message: "{{ 1 + }}"}
        """
    )
    result = cli("run", path)
    assert result.code == 2
    assert result.stdout == ""
    assert f"flow.yaml:{line_of(path, '1 + ')}: step 'a': " in result.stderr
    assert "template syntax error" in result.stderr


@pytest.mark.parametrize(
    ("snippet", "text"),
    [
        ("next: nowhere", "next leads to 'nowhere', but there is no step with that id"),
        ("on_error: nowhere", "on_error leads to 'nowhere', but there is no step with that id"),
        ("cases: [{when: true, next: nowhere}]", "exit leads to 'nowhere'"),
        ("default: nowhere", "exit leads to 'nowhere'"),
    ],
)
def test_exits_to_missing_steps(
    runtime: Runtime, write_flow: Callable[..., Path], snippet: str, text: str
) -> None:
    config = snippet if snippet.startswith(("cases", "default")) else "cases: []"
    exit_key = "" if snippet.startswith(("cases", "default")) else snippet
    path = write_flow(
        f"""
        flow: exits
        steps:
          - id: a
            type: core.condition
            {exit_key}
            config:
              {config}
          - id: b
            type: core.log
            config: {{message: hi}}
        """
    )
    problem = only(problems(runtime, path))
    assert text in problem.message
    assert problem.step == "a"
    assert problem.line == line_of(path, snippet)


def test_a_flow_on_error_to_a_missing_step(
    runtime: Runtime, write_flow: Callable[..., Path]
) -> None:
    path = write_flow(
        """
        flow: exits
        on_error: report_failur
        steps:
          - id: a
            type: core.log
            config: {message: hi}
          - id: report_failure
            type: core.log
            config: {message: failed}
        """
    )
    problem = only(problems(runtime, path))
    assert problem.line == 2
    assert "did you mean 'report_failure'?" in problem.message


def test_an_exit_to_end_is_fine(runtime: Runtime, write_flow: Callable[..., Path]) -> None:
    path = write_flow(
        """
        flow: ends
        steps:
          - id: a
            type: core.condition
            next: end
            on_error: end
            config: {cases: [{when: true, next: end}], default: end}
        """
    )
    assert problems(runtime, path) == []


def test_reading_a_merge_field_no_earlier_step_writes(
    runtime: Runtime, write_flow: Callable[..., Path]
) -> None:
    path = write_flow(
        """
        flow: order
        steps:
          - id: early
            type: core.log
            config: {message: "{{ late.text }}"}
          - id: late
            type: core.set
            config: {values: {text: hi}}
        """
    )
    problem = only(problems(runtime, path))
    assert problem.step == "early"
    assert problem.line == line_of(path, "late.text")
    assert "reads merge field 'late', which no step that can run before this one writes" in (
        problem.message
    )


def test_a_merge_field_written_only_on_another_branch_is_flagged(
    runtime: Runtime, write_flow: Callable[..., Path]
) -> None:
    path = write_flow(
        """
        flow: branches
        steps:
          - id: choose
            type: core.condition
            config: {cases: [{when: true, next: right}], default: left}
          - id: left
            type: core.set
            config: {value: 1}
            next: end
          - id: right
            type: core.log
            config: {message: "{{ left }}"}
        """
    )
    problem = only(problems(runtime, path))
    assert problem.step == "right"
    assert "reads merge field 'left'" in problem.message


def test_a_merge_field_made_available_by_a_loop_is_not_flagged(
    runtime: Runtime, write_flow: Callable[..., Path]
) -> None:
    # `attempt` reads what `check` wrote on the previous turn of the retry loop.
    path = write_flow(
        """
        flow: loop
        steps:
          - id: count
            type: core.set
            config: {value: 0}
          - id: attempt
            type: core.set
            merge_field: count
            config: {value: "{{ count + 1 }}"}
          - id: note
            type: core.log
            config: {message: "last: {{ check.matched if check is defined else 'none' }}"}
          - id: check
            type: core.condition
            config: {cases: [{when: "{{ count < 3 }}", next: attempt}]}
        """
    )
    assert problems(runtime, path) == []
    result = run_flow(runtime, path)
    assert result.status == "succeeded"
    assert result.merge_fields["count"] == 3
    assert result.merge_fields["note"]["message"] == "last: 0"
    assert [r["step"] for r in result.reports if r["kind"] == "step"] == [
        *["count", "attempt", "note", "check"],
        *["attempt", "note", "check"] * 2,
    ]


def test_a_merge_field_renamed_with_merge_field_is_read_by_its_new_name(
    runtime: Runtime, write_flow: Callable[..., Path]
) -> None:
    path = write_flow(
        """
        flow: renamed
        steps:
          - id: a
            type: core.set
            merge_field: greeting
            config: {value: hi}
          - id: b
            type: core.log
            config: {message: "{{ a }}"}
        """
    )
    problem = only(problems(runtime, path))
    assert "reads 'a', which is not a merge field of any step" in problem.message


def test_reading_error_where_no_error_exit_leads(
    runtime: Runtime, write_flow: Callable[..., Path]
) -> None:
    path = write_flow(
        """
        flow: errors
        steps:
          - id: a
            type: core.log
            config: {message: "{{ error.message }}"}
        """
    )
    problem = only(problems(runtime, path))
    assert "reads 'error', but no error exit leads to this step" in problem.message
    assert problem.line == line_of(path, "error.message")


def test_reading_error_after_an_error_exit_is_fine(
    runtime: Runtime, write_flow: Callable[..., Path]
) -> None:
    path = write_flow(
        """
        flow: errors
        on_error: flow_handler
        steps:
          - id: a
            type: core.fail
            on_error: own_handler
            config: {message: bad}
          - id: own_handler
            type: core.log
            config: {message: "{{ error.message }}"}
          - id: b
            type: core.fail
            config: {message: worse}
          - id: flow_handler
            type: core.log
            config: {message: "{{ error.message }}"}
        """
    )
    assert problems(runtime, path) == []


def test_an_unknown_authorization_suggests_a_defined_one(
    runtime: Runtime, write_flow: Callable[..., Path]
) -> None:
    path = write_flow(
        """
        flow: auth
        authorizations:
          openai: {provider: openai, api_key: "${env:OPENAI_API_KEY}"}
        steps:
          - id: a
            type: core.log
            authorization: opnai
            config: {message: hi}
        """
    )
    problem = only(problems(runtime, path))
    assert problem.message == "authorization 'opnai' is not defined; did you mean 'openai'?"
    assert problem.line == line_of(path, "opnai")


def test_an_unknown_secret_source_is_a_problem(
    runtime: Runtime, write_flow: Callable[..., Path]
) -> None:
    path = write_flow(
        """
        flow: auth
        authorizations:
          openai: {provider: openai, api_key: "${vault:openai}"}
        steps: [{id: a, type: core.log, config: {message: hi}}]
        """
    )
    problem = only(problems(runtime, path))
    assert "unknown secret source 'vault'" in problem.message
    assert problem.line == 3


def test_an_input_never_supplied(runtime: Runtime, write_flow: Callable[..., Path]) -> None:
    path = write_flow(
        """
        flow: inputs
        inputs: {name: world}
        steps:
          - id: a
            type: core.log
            config: {message: "{{ inputs.nam }} {{ inputs.training_file }}"}
        """
    )
    found = problems(runtime, path)
    assert len(found) == 2
    assert {p.line for p in found} == {line_of(path, "inputs.nam")}
    messages = " | ".join(p.message for p in found)
    assert "reads inputs.nam, but the flow declares no input 'nam'" in messages
    assert "did you mean 'name'?" in messages
    assert "--input training_file=VALUE" in messages
    assert len(problems(runtime, path, inputs=("nam", "training_file"))) == 0


def test_validate_accepts_inputs_that_will_be_supplied(
    cli: Callable[..., Cli], write_flow: Callable[..., Path]
) -> None:
    path = write_flow(
        """
        flow: inputs
        steps:
          - id: a
            type: core.log
            config: {message: "{{ inputs.who }}"}
        """
    )
    missing = cli("validate", path)
    assert missing.code == 2
    assert "reads inputs.who" in missing.stderr
    supplied = cli("validate", path, "--input", "who=Ada")
    assert supplied.code == 0, supplied.stderr
    assert "flow.yaml: ok (1 steps)" in supplied.stderr


def test_a_flow_given_as_a_dict_is_validated_too(runtime: Runtime) -> None:
    found = problems(
        runtime, {"flow": "d", "steps": [{"id": "a", "type": "core.set", "config": {}}]}
    )
    problem = only(found)
    assert problem.file == "<dict>"
    assert problem.step == "a"
    assert "expected exactly one of 'value' or 'values'" in problem.message


def test_problem_text_has_file_line_step_path_and_message(
    runtime: Runtime, write_flow: Callable[..., Path]
) -> None:
    path = write_flow(dedent("flow: p\nsteps:\n  - id: a\n    type: core.nope\n"))
    assert str(only(problems(runtime, path))) == (
        f"{path}:4: step 'a': steps[0].type: unknown step type 'core.nope'; "
        "did you mean 'core.set'?"
    )


@pytest.mark.parametrize("name", ["range", "dict", "namespace"])
def test_a_merge_field_named_like_a_template_function_is_refused(
    runtime: Runtime, write_flow: Callable[..., Path], name: str
) -> None:
    path = write_flow(
        f"""
        flow: shadow
        steps:
          - id: {name}
            type: core.set
            config: {{values: {{x: 1}}}}
          - id: renamed
            type: core.set
            merge_field: {name}
            config: {{value: 2}}
        """
    )
    found = problems(runtime, path)
    assert [(p.line, p.path) for p in found] == [
        (line_of(path, f"id: {name}"), "steps[0].id"),
        (line_of(path, f"merge_field: {name}"), "steps[1].merge_field"),
    ]
    assert all("name of a template function" in p.message for p in found)


def test_each_missing_required_key_is_one_problem(
    runtime: Runtime, write_flow: Callable[..., Path]
) -> None:
    path = write_flow("description: no flow name and no steps\n")
    assert sorted(p.message for p in problems(runtime, path)) == [
        "missing required key 'flow'",
        "missing required key 'steps'",
    ]


def test_a_wrong_duration_says_what_a_duration_looks_like(runtime: Runtime) -> None:
    problems = runtime.validate(
        {
            "flow": "f",
            "timeout": "forever",
            "steps": [{"id": "a", "type": "core.set", "config": {"value": 1}}],
        }
    )
    assert [p.message for p in problems] == [
        "expected a duration such as 30s, 5m, 2h, 1h30m, 500ms, or a number of seconds, "
        'found "forever"'
    ]
