"""The simple path (templates/simple.py) against Jinja: the same results and the same errors."""

from __future__ import annotations

import asyncio
import datetime
from typing import Any

import pytest

from steprun.runtime.templates import TEMPLATE_GLOBALS, TemplateProblem, Templates
from steprun.runtime.templates.simple import parse
from tests.runtime.conftest import make_runtime, run_flow

VARIABLES: dict[str, Any] = {
    "inputs": {
        "name": "Ada",
        "n": 3,
        "f": 1.5,
        "neg": -2,
        "empty": "",
        "zero": 0,
        "items": [1, 2, 3],
        "flag": True,
        "off": False,
        "none": None,
        "nested": {"a": {"b": "deep"}, "list": [{"id": 7}]},
        "big": 10**50,
        "huge": 10**4000,
        "inf": float("inf"),
        "text": "Hello World",
        "long": "x" * 20_000,
        "unicode": "héllo ✓",
        "keys": {"items": 1, "values": [2], "__class__": "dunder key"},
        "when": datetime.date(2024, 1, 1),  # YAML reads dates: not JSON
        "pair": (1, 2),
        "intkeys": {1: "one"},
    },
    "step": {"output": {"id": "job-1", "items": [{"id": 1}], "count": 2}, "status": "ok"},
    "error": {"message": "boom", "code": None},
    "counter": 2,
}

TEMPLATES = [
    # values
    "{{ inputs.name }}",
    "{{inputs.name}}",
    "  {{ inputs.name }}  ",
    "{{ inputs['name'] }}",
    '{{ inputs["name"] }}',
    "{{ inputs.items }}",
    "{{ inputs.items[0] }}",
    "{{ inputs.items[-1] }}",
    "{{ inputs.items[5] }}",
    "{{ inputs.items.count }}",
    "{{ inputs.items.nope }}",
    "{{ inputs.name[0] }}",
    "{{ inputs.name[10] }}",
    "{{ inputs.name.upper }}",
    "{{ inputs.name.nope }}",
    "{{ inputs.nested.a.b }}",
    "{{ inputs.nested['a']['b'] }}",
    "{{ inputs.nested.list[0].id }}",
    "{{ inputs.nested }}",
    "{{ inputs.keys.items }}",
    "{{ inputs.keys.values }}",
    "{{ inputs.keys.keys }}",
    "{{ inputs.keys['__class__'] }}",
    "{{ inputs.keys.__class__ }}",
    "{{ inputs.n.real }}",
    "{{ inputs.n.nope }}",
    "{{ inputs.none.nope }}",
    "{{ inputs.missing }}",
    "{{ missing }}",
    "{{ missing.deeper.still }}",
    "{{ step.output.id }}",
    "{{ step.output }}",
    "{{ step }}",
    "{{ error.message }}",
    "{{ error.code }}",
    "{{ inputs.flag }}",
    "{{ inputs.none }}",
    "{{ inputs.f }}",
    "{{ inputs.big }}",
    "{{ inputs.huge }}",
    "{{ inputs.inf }}",
    "{{ inputs.when }}",
    "{{ inputs.pair }}",
    "{{ inputs.intkeys }}",
    "{{ inputs.intkeys[1] }}",
    "{{ inputs.long }}",
    "{{ inputs.unicode }}",
    # literals
    "{{ 1 }}",
    "{{ 1.5 }}",
    "{{ 'text' }}",
    '{{ "it\'s" }}',
    "{{ 'é✓' }}",
    "{{ true }}",
    "{{ True }}",
    "{{ none }}",
    "{{ None }}",
    "{{ 007 }}",
    "{{ 0.5 }}",
    "{{ 00.5 }}",
    "{{\n  inputs.name\n}}",
    "{{\tinputs.name }}",
    "{{ inputs.n + 0.1 }}",
    "{{ inputs.f - 1.5 }}",
    "{{ inputs.items[0] + inputs.items[1] }}",
    "{{ inputs.name | default(none) }}",
    "{{ inputs.missing | default(none) }}",
    "{{ inputs.off | default('x', false) }}",
    '{{inputs.name|default("x")}}',
    # text with holes
    "Hello, {{ inputs.name }}!",
    "{{ inputs.name }} has {{ inputs.n }} items",
    "{{ inputs.name }}{{ inputs.n }}",
    "flag={{ inputs.flag }} none={{ inputs.none }} f={{ inputs.f }}",
    "items: {{ inputs.items }}",
    "nested: {{ inputs.nested }}",
    "when: {{ inputs.when }}",
    "missing: {{ inputs.missing }}",
    "big: {{ inputs.big }} huge: {{ inputs.huge }}",
    "inf: {{ inputs.inf }}",
    "long: {{ inputs.long }}{{ inputs.long }}",
    "line one\nline two {{ inputs.name }}\n",
    "a }} b {{ inputs.name }}",
    "{{ inputs.name }} trailing }}",
    # filters
    "{{ inputs.missing | default('x') }}",
    "{{ inputs.missing | default }}",
    "{{ missing.a.b | default(3) }}",
    "{{ inputs.name | default('x') }}",
    "{{ inputs.empty | default('x') }}",
    "{{ inputs.empty | default('x', true) }}",
    "{{ inputs.zero | default(5, true) }}",
    "{{ inputs.items | default('x') }}",
    "{{ inputs.keys.__class__ | default('x') }}",
    "{{ missing.__class__ | default('x') }}",
    "{{ inputs.name | lower }}",
    "{{ inputs.name | upper }}",
    "{{ inputs.flag | lower }}",
    "{{ inputs.none | upper }}",
    "{{ inputs.items | lower }}",
    "{{ inputs.missing | lower }}",
    "{{ inputs.name | length }}",
    "{{ inputs.items | length }}",
    "{{ inputs.nested | length }}",
    "{{ inputs.n | length }}",
    "{{ inputs.missing | length }}",
    "{{ inputs.long | length }}",
    "{{ inputs.missing | default('abc') | upper }}",
    "{{ inputs.name|lower|length }}",
    "{{ inputs.name | title }}",
    "{{ inputs.name | default('x', 'y') }}",
    "{{ inputs.name | nosuchfilter }}",
    "{{ inputs.name | attr('x') }}",
    # arithmetic and comparisons
    "{{ counter + 1 }}",
    "{{ counter - 1 }}",
    "{{ counter + inputs.f }}",
    "{{ counter + 1 - 3 }}",
    "{{ inputs.name + 'x' }}",
    "{{ inputs.items + inputs.items }}",
    "{{ inputs.flag + 1 }}",
    "{{ inputs.missing + 1 }}",
    "{{ inputs.big + inputs.big }}",
    "{{ inputs.huge + inputs.huge }}",
    "{{ inputs.inf - inputs.inf }}",
    "{{ counter < inputs.n }}",
    "{{ counter >= inputs.n }}",
    "{{ counter == 2 }}",
    "{{ counter != 2.0 }}",
    "{{ inputs.name == 'Ada' }}",
    "{{ inputs.none == none }}",
    "{{ inputs.name < 'B' }}",
    "{{ inputs.name < 3 }}",
    "{{ inputs.items == inputs.items }}",
    "{{ counter + 1 < inputs.n | default(0) }}",
    "{{ inputs.items | length > 2 }}",
    "{{ 1 < 2 < 3 }}",
    "n={{ counter + 1 }}, less={{ counter < 3 }}",
    # beyond the simple path (Jinja's, whole)
    "{{ -counter }}",
    "{{ counter * 2 }}",
    "{{ counter / 0 }}",
    "{{ inputs.name ~ '!' }}",
    "{{ inputs.items[0:2] }}",
    "{{ [1, 2] }}",
    "{{ {'a': 1} }}",
    "{{ range(3) | list }}",
    "{{ inputs.name if inputs.flag else 'no' }}",
    "{{ not inputs.flag }}",
    "{{ inputs.name is defined }}",
    "{{ inputs.name.upper() }}",
    "{{ ''.__class__ }}",
    "{{ inputs.__class__ }}",
    "{{ inputs._private }}",
    "{{ self }}",
    "{{ lipsum() }}",
    "{% if inputs.flag %}yes{% endif %}",
    "{# comment #}{{ inputs.name }}",
    "{{- inputs.name -}}",
    "{{ inputs.name }}\r\n",
    "{{ 'a\\nb' }}",
    "{{ 1e3 }}",
    "{{ 1_000 }}",
    "{{ inputs.name",
    "{{ }}",
    "{{ inputs. }}",
    "{{ inputs[ }}",
    "{{ 'unterminated }}",
    "{{ 'a}}b' }}",
    "{{ inputs.name }} {% for x in inputs.items %}{{ x }}{% endfor %}",
]


def outcome(templates: Templates, source: str) -> tuple[Any, ...]:
    """What the runner gets: a step's config rendered (and the one-template API's result)."""

    async def render() -> Any:
        try:
            return await templates.render_config({"value": source}, VARIABLES)
        finally:
            templates.close()

    found: list[Any] = []
    for attempt in (
        lambda: asyncio.run(render())["value"],
        lambda: templates.render(source, VARIABLES),
    ):
        try:
            result = attempt()
        except TemplateProblem as exc:
            found.append(("error", exc.code, exc.message))
        else:
            found.append(("ok", type(result).__name__, repr(result)))
    return tuple(found)


def test_the_template_globals_are_the_sandboxes() -> None:
    from steprun.runtime.templates.sandbox import Sandbox

    assert frozenset(Sandbox().globals) == TEMPLATE_GLOBALS


def test_the_corpus_exercises_both_paths() -> None:
    simple = [t for t in TEMPLATES if parse(t) is not None]
    assert len(simple) >= 100
    assert len(TEMPLATES) - len(simple) >= 30


@pytest.mark.parametrize("source", TEMPLATES)
def test_the_simple_path_renders_as_jinja_does(source: str) -> None:
    assert outcome(Templates(), source) == outcome(Templates(simple=False), source)


@pytest.mark.parametrize("source", TEMPLATES)
def test_the_simple_path_reads_and_checks_as_jinja_does(source: str) -> None:
    quick, jinja = Templates(), Templates(simple=False)
    assert quick.check(source) == jinja.check(source)
    if quick.check(source) is None:
        assert quick.references(source) == jinja.references(source)


def test_a_config_renders_the_same_on_both_paths() -> None:
    config = {
        "simple": ["{{ inputs.name }}", {"n": "{{ counter + 1 }}", "plain": "text"}],
        "jinja": "{{ inputs.items | join(',') }}",
        "number": 5,
    }

    async def render(templates: Templates, value: Any) -> Any:
        try:
            return await templates.render_config(value, VARIABLES)
        finally:
            templates.close()

    for value in (config, config["simple"], {"bad": "{{ missing }}", **config}):
        results = []
        for templates in (Templates(), Templates(simple=False)):
            try:
                results.append(asyncio.run(render(templates, value)))
            except TemplateProblem as exc:
                results.append((exc.code, exc.message))
        assert results[0] == results[1]


@pytest.mark.parametrize("simple", [True, False])
def test_a_default_covers_a_merge_field_not_written_yet(simple: bool) -> None:
    # Jinja's path failed here ("'check' is not defined") when it rendered on the event
    # loop: measuring the undefined value for the loop raised before default ran.
    runtime = make_runtime()
    runtime.templates.simple = simple
    flow = (  # a retry loop's first pass reads what its later steps write
        "flow: f\nsteps:\n"
        "  - {id: first, type: core.set, config: {value: \"{{ check.x | default('none') }}\"}}\n"
        "  - {id: check, type: core.set, config: {value: {x: 1}}}\n"
        "  - id: again\n    type: core.condition\n    config:\n"
        "      cases: [{when: \"{{ first == 'none' }}\", next: first}]\n      default: end\n"
    )
    result = run_flow(runtime, flow)
    assert result.status == "succeeded"
    assert result.merge_fields["first"] == 1
    # It ran twice: its first value was "none", so the condition sent the run back.
    assert [r["status"] for r in result.reports if r.get("step") == "first"] == ["succeeded"] * 2


def test_a_template_is_compiled_once_per_process() -> None:
    # Two runtimes (a service makes one per request) share what compiling made.
    source = "{{ inputs.items | join(', ') }} compiled once"
    first, second = Templates(), Templates(simple=False)
    assert first._compile(source) is second._compile(source)
    assert first.render(source, VARIABLES) == "1, 2, 3 compiled once"
