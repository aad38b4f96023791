"""Validation at scale and at depth (issue 8, item 7): what the runtime cannot run is refused
before the run, with exit 2 and one sentence, never "internal error"."""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

from steprun.runtime import FlowInvalid
from tests.runtime.conftest import Cli, make_runtime


def _chain(steps: int) -> str:
    """A flow where every step reads the merge field of the step before it."""
    lines = ["flow: chain", "steps:", "  - {id: s0, type: core.set, config: {value: 0}}"]
    for i in range(1, steps):
        lines.append(f"  - {{id: s{i}, type: core.set, config: {{value: '{{{{ s{i - 1} }}}}'}}}}")
    return "\n".join(lines) + "\n"


def _peak_bytes_of_validating(steps: int) -> int:
    runtime, text = make_runtime(), _chain(steps)
    tracemalloc.start()
    try:
        runtime.load(text)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_validation_memory_grows_linearly_with_the_steps() -> None:
    # Each step used to keep a set of every merge field written before it: twice the
    # steps took four times the memory (13,000 steps, 4 GB). bench/validation_scale.py
    # shows the time.
    small, large = _peak_bytes_of_validating(1500), _peak_bytes_of_validating(3000)
    assert large / small < 2.6, f"{small} -> {large} bytes"


def _nested(depth: int) -> str:
    return "[" * depth + "1" + "]" * depth


FLOW = "flow: deep\nsteps:\n  - id: a\n    type: core.set\n    config: {{value: {value}}}\n"


@pytest.mark.parametrize("depth", [101, 300, 600, 990])
def test_a_config_deeper_than_a_step_may_return_exits_2(
    cli: Callable[..., Cli], tmp_path: Path, depth: int
) -> None:
    flow = tmp_path / "deep.yaml"
    flow.write_text(FLOW.format(value=_nested(depth + 1)), encoding="utf-8")
    result = cli("run", flow)
    assert result.code == 2, result.stderr
    problems = [line for line in result.stderr.splitlines() if line.startswith("  ")]
    assert len(problems) == 1, result.stderr
    assert "deep.yaml:5:" in problems[0]
    assert "nested more than" in problems[0]


def test_the_deepest_config_a_step_can_return_runs(cli: Callable[..., Cli], tmp_path: Path) -> None:
    flow = tmp_path / "deep.yaml"
    flow.write_text(FLOW.format(value=_nested(101)), encoding="utf-8")  # levels 0 to 100
    result = cli("run", flow)
    assert result.code == 0, result.stderr


def test_a_deep_flow_given_as_data_is_refused_not_a_recursion_error() -> None:
    value: object = 1
    for _ in range(990):
        value = [value]
    flow = {"flow": "deep", "steps": [{"id": "a", "type": "core.set", "config": {"value": value}}]}
    with pytest.raises(FlowInvalid) as caught:
        make_runtime().load(flow)
    assert "nested more than 100 levels deep" in str(caught.value)


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (
            "flow: r\nsteps:\n  - id: a\n    type: core.set\n    config: &c {value: *c}\n",
            "refers to a value that contains it",
        ),
        (
            "flow: n\nsteps:\n  - id: a\n    type: core.set\n    config: {value: 1"
            + "0" * 5000
            + "}\n",
            "this number has 5001 digits",
        ),
        (
            "flow: k\nsteps:\n  - id: a\n    type: core.set\n    config:\n"
            "      value: {1: a, true: c}\n",
            "key true is the same key as 1 on line 6",
        ),
    ],
    ids=["recursive_alias", "huge_integer", "one_and_true"],
)
def test_what_yaml_cannot_give_is_one_sentence_and_exit_2(
    cli: Callable[..., Cli], tmp_path: Path, text: str, words: str
) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text(text, encoding="utf-8")
    result = cli("run", flow)
    assert result.code == 2, result.stderr
    assert "internal error" not in result.stderr
    problems = [line for line in result.stderr.splitlines() if line.startswith("  ")]
    assert len(problems) == 1, result.stderr
    assert words in problems[0]


def test_a_merge_key_may_be_overridden(cli: Callable[..., Cli], tmp_path: Path) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "flow: merged\n"
        "steps:\n"
        "  - &first {id: a, type: core.set, config: {value: 1}}\n"
        "  - <<: *first\n"
        "    id: b\n"
        "    config: {value: 2}\n",
        encoding="utf-8",
    )
    result = cli("run", flow)
    assert result.code == 0, result.stderr
    assert '"b": 2' in result.stdout


def test_a_key_written_twice_beside_a_merge_is_still_a_duplicate(
    cli: Callable[..., Cli], tmp_path: Path
) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "flow: merged\n"
        "steps:\n"
        "  - &first {id: a, type: core.set, config: {value: 1}}\n"
        "  - <<: *first\n"
        "    id: b\n"
        "    id: c\n",
        encoding="utf-8",
    )
    result = cli("run", flow)
    assert result.code == 2
    assert "flow.yaml:6: key 'id' appears twice in the same mapping (first on line 5)" in (
        result.stderr
    )


def test_an_alias_bomb_is_reported_once(cli: Callable[..., Cli], tmp_path: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 9)]
    flow = tmp_path / "flow.yaml"
    flow.write_text("\n".join(lines) + "\nflow: bomb\nsteps: []\n", encoding="utf-8")
    result = cli("validate", flow)
    assert result.code == 2
    assert result.stderr.count("expands to more than") == 1, result.stderr


# -- the command line's inputs and fault switches -------------------------------------------

HELLO = (
    "flow: h\ninputs: {n: 1}\nsteps:\n"
    "  - {id: a, type: core.set, config: {value: '{{ inputs.n }}'}}\n"
)


@pytest.fixture
def hello(tmp_path: Path) -> Path:
    flow = tmp_path / "hello.yaml"
    flow.write_text(HELLO, encoding="utf-8")
    return flow


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("NaN", "NaN is not a number JSON allows"),
        ("Infinity", "Infinity is not a number JSON allows"),
        ("[" * 30000 + "]" * 30000, "nested more than 100 levels deep"),
        ("[" * 102 + "]" * 102, "nested more than 100 levels deep"),
    ],
    ids=["nan", "infinity", "deep_30000", "deep_102"],
)
def test_an_input_a_run_cannot_hold_exits_2(
    cli: Callable[..., Cli], hello: Path, value: str, words: str
) -> None:
    result = cli("run", hello, "--input", f"n={value}")
    assert result.code == 2, result.stderr
    assert words in result.stderr
    assert "internal error" not in result.stderr


def test_quoted_nan_is_text(cli: Callable[..., Cli], hello: Path) -> None:
    result = cli("run", hello, "--input", 'n="NaN"')
    assert result.code == 0, result.stderr
    assert '"a": "NaN"' in result.stdout


def test_an_inputs_file_names_every_bad_line(
    cli: Callable[..., Cli], hello: Path, tmp_path: Path
) -> None:
    rows = tmp_path / "rows.jsonl"
    rows.write_bytes(b'{"n": 1}\n{"n": \n\xff\xfe{"n": 2}\n[1]\n{"n": NaN}\n{"n": 3}\n')
    result = cli("run", hello, "--inputs-file", rows)
    assert result.code == 2, result.stderr
    assert "4 bad lines" in result.stderr
    for number, words in [
        (2, "not valid JSON"),
        (3, "not UTF-8 text"),
        (4, "expected a JSON object of inputs, found list"),
        (5, "NaN is not a number JSON allows"),
    ]:
        assert f"rows.jsonl:{number}: {words}" in result.stderr, result.stderr


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ("bogus", "use POINT@STEP, where POINT is one of step-started, "),
        ("step-begun@a", "step-finished-before-commit, step-finished-after-commit"),
        ("step-started@nope", "has no step 'nope', so it would never fire"),
    ],
)
def test_an_unknown_failpoint_exits_2_naming_the_valid_ones(
    cli: Callable[..., Cli], hello: Path, value: str, words: str
) -> None:
    result = cli("run", hello, env={"STEPRUN_FAILPOINT": value})
    assert result.code == 2, result.stderr
    assert words in result.stderr
    assert "run_" not in result.stderr  # refused before any run was recorded
