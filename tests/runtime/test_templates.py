"""Templates: data in, data out, never code; bounded in cost; output never rendered twice."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from steprun.runtime import Runtime
from steprun.runtime.templates import MAX_OUTPUT, TemplateProblem, Templates
from tests.runtime.conftest import Cli, line_of, run_flow


@pytest.fixture
def templates() -> Templates:
    return Templates()


VARIABLES = {"inputs": {"n": 3, "name": "Ada"}, "data": {"text": "abc", "items": [1, 2]}}


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ 42 }}", 42),
        ("{{ inputs.n }}", 3),
        ("  {{ inputs.n + 1 }}  ", 4),
        ("{{ 1.5 }}", 1.5),
        ("{{ data.items }}", [1, 2]),
        ("{{ data.items + [3] }}", [1, 2, 3]),
        ("{{ {'a': inputs.n, 'b': [true]} }}", {"a": 3, "b": [True]}),
        ("{{ data }}", {"text": "abc", "items": [1, 2]}),
        ("{{ inputs.n > 2 }}", True),
        ("{{ false }}", False),
        ("{{ none }}", None),
        ("{{ inputs.name }}", "Ada"),
        ("{{ range(3) | list }}", [0, 1, 2]),
    ],
)
def test_one_expression_keeps_its_json_type(
    templates: Templates, source: str, expected: Any
) -> None:
    result = templates.render(source, VARIABLES)
    assert result == expected
    assert type(result) is type(expected)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("n={{ inputs.n }}", "n=3"),
        ("{{ inputs.n }}{{ inputs.n }}", "33"),
        ("{{ data.items }} items", "[1, 2] items"),
        ("Hello, {{ inputs.name }}!", "Hello, Ada!"),
        ("{% if inputs.n > 2 %}big{% else %}small{% endif %}", "big"),
        ("{% for i in data.items %}{{ i }},{% endfor %}", "1,2,"),
    ],
)
def test_mixed_text_renders_a_string(templates: Templates, source: str, expected: str) -> None:
    assert templates.render(source, VARIABLES) == expected


def test_a_plain_string_is_not_a_template(templates: Templates) -> None:
    assert templates.render_value({"a": "no braces", "b": [1, "{x}"]}, VARIABLES) == {
        "a": "no braces",
        "b": [1, "{x}"],
    }


def test_an_undefined_name_is_a_clear_problem(templates: Templates) -> None:
    with pytest.raises(TemplateProblem) as caught:
        templates.render("{{ data.missing }}", VARIABLES)
    assert caught.value.code == "template_error"
    assert "the value has no key 'missing'" in caught.value.message


# Each is refused while it runs (it parses fine): the step takes its error exit.
REFUSED_AT_RUN_TIME = {
    "dunder_class": "{{ data.text.__class__.__mro__ }}",
    "dunder_on_dict": "{{ data.__class__ }}",
    "dunder_globals": "{{ data.items.__len__.__self__ }}",
    "str_format": "{{ '{0:>999999999}'.format(data.text) }}",
    "str_format_map": "{{ '{a}'.format_map(data) }}",
    "huge_range": "{{ range(10**9) | list | length }}",
    "huge_repeat": "{{ 'x' * 10**9 }}",
    "huge_repeat_reversed": "{{ 10**9 * [data.text] }}",
    "nested_range_loops": (
        "{% for a in range(1000) %}{% for b in range(1000) %}{% endfor %}{% endfor %}"
    ),
    "nested_list_loops": (
        "{% set xs = range(300) | list %}{% for a in xs %}{% for b in xs %}{% for c in xs %}"
        "{% endfor %}{% endfor %}{% endfor %}"
    ),
    "percent_width": "{{ '%999999999d' % 1 }}",
    "percent_width_star": "{{ '%*d' % (10**9, 1) }}",
    "percent_width_named": "{{ '%(n)999999999d' % {'n': 1} }}",
    "percent_precision": "{{ '%.999999999f' % 1.0 }}",
    "center_filter": "{{ data.text | center(10**9) }}",
    "center_method": "{{ data.text.center(10**9) }}",
    "ljust_method": "{{ data.text.ljust(10**9) }}",
    "huge_power": "{{ 2 ** (10**7) }}",
    "replace_filter_growth": "{{ ('a' * 10000) | replace('a', 'a' * 100000) }}",
    "replace_method_growth": "{{ ('a' * 10000).replace('a', 'a' * 100000) }}",
    "join_growth": "{{ range(10000) | join('x' * 1000) }}",
    "indent_growth": "{{ ('\\n' * 999999) | indent(1000) }}",
    "batch_fill": "{{ [1] | batch(10**9, 0) | list }}",
    "slice_keyword": "{{ [1] | slice(slices=10**9) | list }}",
    "tojson_indent": "{{ [[1]] | tojson(10**9) }}",
    "concat_doubling": (
        "{% set ns = namespace(s='x') %}{% for i in range(40) %}"
        "{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}"
    ),
    "plus_doubling": "{% set a = 'x' * 999999 %}{{ (a + a) | length }}",
    "repeat_of_a_big_list": "{{ [[0] * 1000] * 1000 }}",
    "translate_growth": "{{ ('a' * 1000).translate({97: 'b' * 1000000}) }}",
    "to_bytes": "{{ (1).to_bytes(10**9, 'big') | length }}",
    "output_of_a_loop": (
        "{% set big = 'a' * 999999 %}{% for i in range(1000) %}{{ big }}{% endfor %}"
    ),
    "sum_of_lists": "{{ (range(20000) | batch(1) | list) | sum(start=[]) | length }}",
}


@pytest.mark.parametrize("source", REFUSED_AT_RUN_TIME.values(), ids=REFUSED_AT_RUN_TIME.keys())
def test_the_sandbox_refuses_quickly_with_a_clear_error(templates: Templates, source: str) -> None:
    assert templates.check(source) is None  # it parses: the refusal happens at run time
    started = time.perf_counter()
    with pytest.raises(TemplateProblem) as caught:
        templates.render(source, VARIABLES)
    assert time.perf_counter() - started < 2.0  # generous: the point is it ends, not how fast
    assert caught.value.code == "template_not_allowed", caught.value.message
    assert repr(source)[1:20] in caught.value.message


def test_a_template_that_runs_too_long_is_stopped(templates: Templates) -> None:
    # Each turn is allowed (it reads a million characters, and builds nothing), there are
    # just too many turns.
    source = (
        "{% set big = 'a' * 999999 %}{% for i in range(40000) %}"
        "{% if big.count('ab') %}{% endif %}{% endfor %}"
    )
    started = time.perf_counter()
    with pytest.raises(TemplateProblem, match="ran for more than 1 s and was stopped") as caught:
        templates.render(source, VARIABLES)
    assert time.perf_counter() - started < 2.5
    assert caught.value.code == "template_not_allowed"


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("{{ data | attr('__class__') }}", "the 'attr' filter is not allowed"),
        ("{{ '{}' | format(1) }}", "the 'format' filter is not allowed"),
        ("{{ data.text | urlize }}", "the 'urlize' filter is not allowed"),
        ("{% macro f() %}x{% endmacro %}{{ f() }}", "{% macro %} is not allowed"),
        ("{% include 'x.txt' %}", "{% include %} is not allowed"),
        ("{% import 'x' as y %}", "{% import %} is not allowed"),
        ("{% set x %}{{ 1 }}{% endset %}{{ x }}", "{% set ... endset %} is not allowed"),
        ("{% filter upper %}x{% endfilter %}", "{% filter %} is not allowed"),
        ("{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}", "a recursive loop"),
    ],
)
def test_code_is_refused_before_the_run(templates: Templates, source: str, words: str) -> None:
    problem = templates.check(source)
    assert problem is not None and words in problem
    with pytest.raises(TemplateProblem):
        templates.render(source, VARIABLES)


@pytest.mark.parametrize("name", ["lipsum", "cycler", "joiner"])
def test_jinja_globals_that_are_code_are_gone(templates: Templates, name: str) -> None:
    with pytest.raises(TemplateProblem) as caught:
        templates.render(f"{{{{ {name}() }}}}", VARIABLES)
    assert caught.value.code == "template_not_allowed"
    assert f"'{name}' is not available in templates" in caught.value.message


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("{{ data.text.replace('b', '-') }}", "a-c"),
        ("{{ ', '.join(['a', 'b']) }}", "a, b"),
        ("{{ data.items | join('+') }}", "1+2"),
        ("{{ data.items | sum }}", 3),
        ("{{ [{'p': 2}, {'p': 3}] | sum(attribute='p') }}", 5),
        ("{{ [[1], [2]] | sum(start=[]) }}", [1, 2]),
        ("{{ [1, 2, 3] | batch(2) | list }}", [[1, 2], [3]]),
        ("{{ [1, 2, 3] | slice(2) | list }}", [[1, 2], [3]]),
        ("{{ 'x' | center(5) }}", "  x  "),
        ("{{ 'a\nb' | indent(2) }}", "a\n  b"),
        ("{{ 'a b c' | wordwrap(3) }}", "a b\nc"),
        ("{{ data | tojson }}", '{"items": [1, 2], "text": "abc"}'),
        ("{{ '%5.1f' % 3.14159 }}", "  3.1"),
        ("{{ 'x' * 3 ~ 'y' }}", "xxxy"),
        ("{{ range(100000) | length }}", 100000),
        (
            "{% set ns = namespace(n=0) %}{% for i in range(5) %}{% set ns.n = ns.n + i %}"
            "{% endfor %}{{ ns.n }}",
            "10",
        ),
    ],
)
def test_ordinary_templates_still_work(templates: Templates, source: str, expected: Any) -> None:
    assert templates.render(source, VARIABLES) == expected


def test_a_rendered_value_may_be_as_large_as_the_limit(templates: Templates) -> None:
    assert len(templates.render(f"{{{{ 'x' * {MAX_OUTPUT} }}}}", VARIABLES)) == MAX_OUTPUT


# -- in a flow ---------------------------------------------------------------------------

CAUGHT = """
flow: sandbox
steps:
  - id: data
    type: core.set
    config: {{values: {{text: abc}}}}
  - id: attempt
    type: core.set
    on_error: caught
    config: {{value: "{source}"}}
  - id: done
    type: core.log
    config: {{message: not reached}}
    next: end
  - id: caught
    type: core.set
    config: {{value: "{{{{ error }}}}"}}
"""


@pytest.mark.parametrize(
    "name",
    [
        "dunder_class",
        "str_format",
        "huge_range",
        "huge_repeat",
        "percent_width",
        "center_filter",
        "nested_range_loops",
        "replace_method_growth",
    ],
)
def test_a_refused_template_takes_the_error_exit_in_a_flow(
    runtime: Runtime, write_flow: Callable[..., Path], name: str
) -> None:
    source = REFUSED_AT_RUN_TIME[name].replace('"', '\\"')
    started = time.perf_counter()
    result = run_flow(runtime, write_flow(CAUGHT.format(source=source)))
    assert time.perf_counter() - started < 2.0
    assert result.status == "succeeded"
    error = result.merge_fields["attempt"]
    assert error["type"] == "template_error"
    assert error["code"] == "template_not_allowed"
    assert error["step"] == "attempt"
    assert error["message"].startswith("config of step 'attempt': ")
    assert result.merge_fields["caught"] == error
    assert "done" not in result.merge_fields
    statuses = {r["step"]: r["status"] for r in result.reports if r["kind"] == "step"}
    assert statuses["attempt"] == "error_handled"


def test_a_refused_template_in_a_flow_is_a_validation_problem_when_static(
    cli: Callable[..., Cli], write_flow: Callable[..., Path]
) -> None:
    path = write_flow(CAUGHT.format(source="{{ data | attr('__class__') }}"))
    result = cli("run", path.name)
    assert result.code == 2
    assert f"flow.yaml:{line_of(path, 'attr(')}: step 'attempt': " in result.stderr
    assert "the 'attr' filter is not allowed" in result.stderr


def test_lipsum_in_a_flow_is_refused_before_the_run(
    runtime: Runtime, write_flow: Callable[..., Path]
) -> None:
    path = write_flow(CAUGHT.format(source="{{ lipsum(10**6) }}"))
    [problem] = runtime.validate(path)
    assert problem.step == "attempt"
    assert problem.line == line_of(path, "lipsum")
    assert "reads 'lipsum', which is not a merge field" in problem.message


def test_api_output_is_never_rendered_again(
    runtime: Runtime, write_flow: Callable[..., Path]
) -> None:
    path = write_flow(
        """
        flow: no-second-rendering
        steps:
          - id: api
            type: test.api
          - id: whole
            type: core.set
            config: {value: "{{ api }}"}
          - id: one
            type: core.set
            config: {value: "{{ api.text }}"}
          - id: mixed
            type: core.set
            config: {value: "said: {{ api.text }} / {{ api.nested[0] }}"}
          - id: input
            type: core.set
            config: {value: "{{ inputs.name }}"}
        """
    )
    started = time.perf_counter()
    result = run_flow(runtime, path, inputs={"name": "{{ 6 * 7 }}"})
    assert time.perf_counter() - started < 2.0
    assert result.status == "succeeded", result.error
    fields = result.merge_fields
    assert fields["whole"] == fields["api"]
    assert fields["whole"]["nested"][1] == {"deep": "{{ error }}"}
    assert fields["one"] == "{{ 7 * 6 }}"
    assert fields["mixed"] == "said: {{ 7 * 6 }} / {% for i in range(10**9) %}x{% endfor %}"
    assert fields["input"] == "{{ 6 * 7 }}"


def test_a_templated_value_of_the_wrong_type_fails_its_schema_at_run_time(
    runtime: Runtime, write_flow: Callable[..., Path]
) -> None:
    path = write_flow(
        """
        flow: types
        inputs: {level: loud}
        steps:
          - id: data
            type: core.set
            config: {values: {text: "yes"}}
          - id: choose
            type: core.condition
            on_error: log
            config: {cases: [{when: "{{ data.text }}", next: end}]}
          - id: log
            type: core.log
            on_error: caught
            config: {message: hi, level: "{{ inputs.level }}"}
          - id: caught
            type: core.log
            config: {message: "{{ error.step }}: {{ error.type }}"}
        """
    )
    assert runtime.validate(path) == []  # templated values wait for their rendering
    result = run_flow(runtime, path)
    assert result.status == "succeeded"
    choose, log = result.merge_fields["choose"], result.merge_fields["log"]
    assert (choose["type"], choose["param"]) == ("invalid_config", "cases.0.when")
    assert 'cases.0.when: expected a boolean, found string "yes"' in choose["message"]
    assert "after rendering templates" in choose["message"]
    assert (log["type"], log["param"]) == ("invalid_config", "level")
    assert 'found "loud"' in log["message"]
    assert result.merge_fields["caught"]["message"] == "log: invalid_config"


def test_a_key_of_json_data_wins_over_a_dict_method(templates: Templates) -> None:
    data = {"response": {"items": [1, 2], "keys": "k", "values": None}}
    assert templates.render("{{ response.items }}", data) == [1, 2]
    assert templates.render("{{ response.keys }}", data) == "k"
    assert templates.render("{{ response['values'] }}", data) is None
    # Without such a key, the method is still there for loops over a mapping.
    assert (
        templates.render(
            "{% for k, v in row.items() %}{{ k }}={{ v }};{% endfor %}", {"row": {"a": 1}}
        )
        == "a=1;"
    )


def test_a_default_reads_through_a_merge_field_not_written_yet(templates: Templates) -> None:
    # A retry loop's first pass: `check` does not exist yet.
    assert templates.render("{{ check.x.y | default('none') }}", {}) == "none"
    assert templates.render("{{ check.x is defined }}", {}) is False


def test_using_a_missing_value_still_fails_clearly(templates: Templates) -> None:
    with pytest.raises(TemplateProblem, match="'check' is not defined here"):
        templates.render("{{ check.x }}", {})
