"""Reading flow files: bad YAML gets one clear problem with its line, never a traceback."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from steprun.runtime import FlowInvalid, InvalidInput, Runtime
from steprun.runtime.yamlsource import MAX_BYTES, load_text
from tests.runtime.conftest import Cli, line_of


def only_problem(runtime: Runtime, source: object) -> tuple[str, int | None]:
    with pytest.raises(FlowInvalid) as caught:
        runtime.load(source)  # type: ignore[arg-type]
    assert len(caught.value.problems) == 1, caught.value.problems
    problem = caught.value.problems[0]
    return problem.message, problem.line


def test_malformed_yaml_is_one_problem_at_its_line(
    runtime: Runtime, write_flow: Callable[..., Path]
) -> None:
    path = write_flow(
        """
        flow: broken
        steps:
          - id: a
            type: core.set
            config: {value: [1, 2}
        """
    )
    message, line = only_problem(runtime, path)
    assert message.startswith("YAML syntax error")
    assert line == line_of(path, "[1, 2}")


def test_malformed_yaml_exits_2_with_file_and_line(
    cli: Callable[..., Cli], write_flow: Callable[..., Path]
) -> None:
    path = write_flow("flow: x\nsteps:\n  - id: a\n   type: core.set\n")
    result = cli("run", path)
    assert result.code == 2
    assert result.stdout == ""
    assert "flow.yaml:4: YAML syntax error" in result.stderr


@pytest.mark.parametrize(
    ("text", "found"),
    [("- a\n- b\n", "found a list"), ("hello\n", "found the single value 'hello'")],
)
def test_a_flow_that_is_not_a_mapping_is_refused(
    runtime: Runtime, write_flow: Callable[..., Path], text: str, found: str
) -> None:
    message, line = only_problem(runtime, write_flow(text))
    assert "a flow file must be a mapping" in message
    assert found in message
    assert line == 1


def test_a_list_flow_exits_2_via_the_cli(
    cli: Callable[..., Cli], write_flow: Callable[..., Path]
) -> None:
    result = cli("validate", write_flow("- id: a\n  type: core.set\n"))
    assert result.code == 2
    assert "flow.yaml:1: a flow file must be a mapping" in result.stderr


def test_an_empty_file_is_refused(runtime: Runtime, write_flow: Callable[..., Path]) -> None:
    message, _ = only_problem(runtime, write_flow(""))
    assert "the file is empty" in message


def test_an_empty_file_exits_2(cli: Callable[..., Cli], write_flow: Callable[..., Path]) -> None:
    result = cli("run", write_flow("# nothing but a comment\n"))
    assert result.code == 2
    assert "flow.yaml: the file is empty" in result.stderr


def test_a_10_mb_flow_file_is_refused_without_being_parsed(
    runtime: Runtime, tmp_path: Path
) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text("flow: huge\nsteps: []\n# " + "x" * (10 * 1024 * 1024) + "\n")
    started = time.perf_counter()
    message, _ = only_problem(runtime, path)
    assert time.perf_counter() - started < 1.0
    assert "10.5 MB" in message and f"{MAX_BYTES // 1024} KiB" in message


def test_a_10_mb_flow_exits_2_via_the_cli(cli: Callable[..., Cli], tmp_path: Path) -> None:
    path = tmp_path / "huge.yaml"
    path.write_text("flow: huge\nsteps:\n" + "  - {id: s, type: core.set}\n" * 400_000)
    result = cli("run", path)
    assert result.code == 2
    assert "huge.yaml: the file is" in result.stderr
    assert "a flow file may be at most" in result.stderr


def test_a_yaml_string_over_the_limit_is_refused() -> None:
    with pytest.raises(FlowInvalid, match="a flow file may be at most"):
        load_text("flow: x\n#" + "y" * MAX_BYTES, "<string>")


def test_duplicate_yaml_keys_are_an_error_naming_both_lines(
    runtime: Runtime, write_flow: Callable[..., Path]
) -> None:
    path = write_flow(
        """
        flow: twice
        steps:
          - id: a
            type: core.set
            config:
              value: 1
              value: 2
        """
    )
    message, line = only_problem(runtime, path)
    assert line == line_of(path, "value: 2")
    assert f"first on line {line_of(path, 'value: 1')}" in message
    assert "appears twice" in message


def test_duplicate_top_level_keys_exit_2(
    cli: Callable[..., Cli], write_flow: Callable[..., Path]
) -> None:
    result = cli("validate", write_flow("flow: a\nflow: b\nsteps: [{id: s, type: core.log}]\n"))
    assert result.code == 2
    assert "flow.yaml:2: key 'flow' appears twice in the same mapping (first on line 1)" in (
        result.stderr
    )


def test_an_alias_bomb_is_refused_quickly(
    runtime: Runtime, write_flow: Callable[..., Path]
) -> None:
    lines = ["flow: bomb", "a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    lines += ["steps: [{id: s, type: core.log, config: {message: hi}}]"]
    started = time.perf_counter()
    with pytest.raises(FlowInvalid, match="expands to more than"):
        runtime.load(write_flow("\n".join(lines) + "\n"))
    assert time.perf_counter() - started < 2.0


def test_python_tags_are_refused_not_constructed(
    runtime: Runtime, write_flow: Callable[..., Path]
) -> None:
    path = write_flow(
        """
        flow: tags
        steps:
          - id: a
            type: core.set
            config: {value: !!python/object/apply:os.system ["echo pwned"]}
        """
    )
    message, line = only_problem(runtime, path)
    assert "without !tags" in message
    assert line == line_of(path, "python/object")


def test_a_missing_flow_file_is_invalid_input(runtime: Runtime, tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="no such flow file"):
        runtime.load(tmp_path / "nope.yaml")


def test_a_missing_flow_file_exits_2(cli: Callable[..., Cli]) -> None:
    result = cli("run", "nope.yaml")
    assert result.code == 2
    assert "nope.yaml: no such flow file; check the path" in result.stderr


def test_a_file_that_is_not_utf8_is_named(runtime: Runtime, tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("flow: caf\xe9\nsteps: []\n".encode("latin-1"))
    with pytest.raises(InvalidInput, match="not UTF-8 text"):
        runtime.load(path)


def test_every_value_remembers_its_line(write_flow: Callable[..., Path]) -> None:
    path = write_flow(
        """
        flow: lines
        steps:
          - id: a
            type: core.set
            config:
              values:
                deep: [1, 2]
        """
    )
    source = load_text(path.read_text(), str(path))
    assert source.line(("steps", 0, "config", "values", "deep")) == line_of(path, "deep:")
    assert source.line(("steps", 0, "config", "values", "deep", 1)) == line_of(path, "deep:")
    assert source.line(("steps", 0, "type")) == line_of(path, "type:")
    # An unknown path falls back to its nearest ancestor.
    assert source.line(("steps", 0, "nope")) == line_of(path, "- id: a")


def test_yes_no_on_off_and_dates_stay_strings_as_in_yaml_1_2() -> None:
    from steprun.runtime.yamlsource import load_text

    data = load_text(
        "a: no\nb: yes\nc: on\nd: NO\ne: 2024-01-01\nf: true\ng: False\n", "f.yaml"
    ).data
    assert data == {
        "a": "no",
        "b": "yes",
        "c": "on",
        "d": "NO",
        "e": "2024-01-01",
        "f": True,
        "g": False,
    }
