"""The embedding API: what a platform that hosts steprun calls, with no global state."""

from __future__ import annotations

import asyncio
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from steprun.runtime import (
    Authorization,
    FlowInvalid,
    InvalidInput,
    RunFailed,
    RunResult,
    Runtime,
)
from tests.runtime import steptypes
from tests.runtime.conftest import ReportCollector, dedent, make_runtime, run_flow, run_step

HELLO = Path(__file__).resolve().parents[2] / "examples" / "hello.yaml"

FLOW = """
flow: embedded
inputs: {who: world}
steps:
  - id: greeting
    type: core.set
    config: {values: {text: "Hello, {{ inputs.who }}!"}}
  - id: shout
    type: core.set
    config: {value: "{{ greeting.text | upper }}"}
"""
EXPECTED = {"greeting": {"text": "Hello, Ada!"}, "shout": "HELLO, ADA!"}


def test_a_flow_runs_from_a_path(runtime: Runtime, write_flow: Callable[..., Path]) -> None:
    result = run_flow(runtime, write_flow(FLOW), inputs={"who": "Ada"})
    assert (result.status, result.merge_fields) == ("succeeded", EXPECTED)
    assert result.succeeded
    assert result.flow == "embedded"


def test_a_flow_runs_from_a_path_given_as_a_string(
    runtime: Runtime, write_flow: Callable[..., Path]
) -> None:
    result = run_flow(runtime, str(write_flow(FLOW)), inputs={"who": "Ada"})
    assert result.merge_fields == EXPECTED


def test_a_flow_runs_from_yaml_text(runtime: Runtime) -> None:
    result = run_flow(runtime, dedent(FLOW), inputs={"who": "Ada"})
    assert result.merge_fields == EXPECTED


def test_a_flow_runs_from_a_dict(runtime: Runtime) -> None:
    flow: dict[str, Any] = {
        "flow": "embedded",
        "steps": [
            {"id": "greeting", "type": "core.set", "config": {"values": {"text": "Hello, Ada!"}}},
            {"id": "shout", "type": "core.set", "config": {"value": "{{ greeting.text|upper }}"}},
        ],
    }
    result = run_flow(runtime, flow)
    assert result.merge_fields == EXPECTED
    assert flow["steps"][1]["config"]["value"] == "{{ greeting.text|upper }}"  # not modified


def test_the_example_flow_runs_embedded(runtime: Runtime) -> None:
    result = run_flow(runtime, HELLO, inputs={"name": "Ada"})
    assert result.status == "succeeded"
    assert result.merge_fields["greeting"]["text"] == "Hello, Ada!"


def test_the_result_carries_merge_fields_and_reports(
    runtime: Runtime, write_flow: Callable[..., Path]
) -> None:
    console = io.StringIO()
    result = run_flow(runtime, write_flow(FLOW), inputs={"who": "Ada"}, console=console)
    assert result.run_id.startswith("run_")
    assert [r["kind"] for r in result.reports] == ["step", "step", "run"]
    assert {r["run_id"] for r in result.reports} == {result.run_id}
    assert result.error is None
    assert f"run {result.run_id} of flow 'embedded'" in console.getvalue()


def test_nothing_is_printed_without_a_console(
    runtime: Runtime, write_flow: Callable[..., Path], capsys: pytest.CaptureFixture[str]
) -> None:
    result = run_flow(runtime, write_flow(FLOW), inputs={"who": "Ada"}, console=None)
    assert result.succeeded
    assert capsys.readouterr() == ("", "")


def test_a_failed_run_raises_when_asked(runtime: Runtime, write_flow: Callable[..., Path]) -> None:
    path = write_flow("flow: f\nsteps:\n  - {id: a, type: core.fail, config: {message: nope}}\n")
    result = run_flow(runtime, path)
    assert result.status == "failed"
    with pytest.raises(RunFailed, match=r"^nope$") as caught:
        result.raise_for_status()
    assert caught.value.error["step"] == "a"
    assert caught.value.exit_code == 1


def test_an_invalid_flow_raises_before_any_effect(runtime: Runtime) -> None:
    with pytest.raises(FlowInvalid) as caught:
        run_flow(runtime, {"flow": "x", "steps": [{"id": "a", "type": "core.nope"}]})
    assert isinstance(caught.value, InvalidInput)
    assert caught.value.exit_code == 2
    assert caught.value.problems[0].step == "a"


def test_run_step_with_a_config(runtime: Runtime) -> None:
    result = run_step(runtime, "core.set", {"value": 42})
    assert result.status == "succeeded"
    assert result.merge_fields == {"result": 42}
    assert [r["kind"] for r in result.reports] == ["step", "run"]
    assert result.reports[0]["step_type"] == "core.set"


def test_run_step_with_inputs_in_its_templates(runtime: Runtime) -> None:
    result = run_step(runtime, "core.set", {"value": "{{ inputs.n * 2 }}"}, inputs={"n": 21})
    assert result.merge_fields == {"result": 42}


def test_run_step_with_an_authorization_object(runtime: Runtime) -> None:
    authorization = Authorization(
        name="platform-owned", provider="openai", api_key="sk-abc-123", base_url="https://x/v1"
    )
    result = run_step(runtime, "test.whoami", {}, authorization=authorization)
    field = result.merge_fields["result"]
    assert (field["name"], field["provider"], field["base_url"]) == (
        "platform-owned",
        "openai",
        "https://x/v1",
    )
    assert field["key_sha256"] is not None
    assert result.reports[0]["authorization"] == "platform-owned"


def test_run_step_with_an_authorization_spec(tmp_path: Path) -> None:
    (tmp_path / "key").write_text("sk-from-file")
    runtime = make_runtime(environ={"ORG": "org-123"})
    result = run_step(
        runtime,
        "test.whoami",
        {},
        authorization={
            "provider": "openai",
            "api_key": "${file:key}",
            "organization": "${env:ORG}",
        },
        base_dir=tmp_path,
    )
    assert result.status == "succeeded", result.error
    assert result.merge_fields["result"]["provider"] == "openai"


def test_run_step_that_fails_returns_the_error_object(runtime: Runtime) -> None:
    result = run_step(runtime, "core.fail", {"message": "nope", "code": "x"})
    assert result.status == "failed"
    assert result.merge_fields["result"]["code"] == "x"
    assert result.error is not None and result.error["message"] == "nope"


def test_run_step_with_a_wrong_config_is_invalid_input(runtime: Runtime) -> None:
    with pytest.raises(FlowInvalid, match="missing required key 'message'"):
        run_step(runtime, "core.fail", {})


def test_two_runtimes_share_no_plugins_or_reports(write_flow: Callable[..., Path]) -> None:
    one_reports, two_reports = ReportCollector(), ReportCollector()
    one = make_runtime(plugins=[steptypes, one_reports])
    two = Runtime(plugins=[two_reports], autoload=False)
    assert "test.whoami" in one.step_types
    assert "test.whoami" not in two.step_types
    assert one.plugin_manager is not two.plugin_manager
    assert one.templates is not two.templates
    assert one.plugin_manager.is_registered(one_reports)
    assert not two.plugin_manager.is_registered(one_reports)
    path = write_flow(FLOW)
    run_flow(one, path, inputs={"who": "one"})
    assert len(one_reports.reports) == 3
    assert two_reports.reports == []
    assert "unknown step type 'test.whoami'" in str(
        two.validate({"flow": "x", "steps": [{"id": "a", "type": "test.whoami"}]})[0]
    )


def test_two_runtimes_run_concurrently_in_one_event_loop(write_flow: Callable[..., Path]) -> None:
    path = write_flow(
        """
        flow: concurrent
        inputs: {who: nobody}
        steps:
          - {id: nap, type: test.sleep, config: {seconds: 0.05}}
          - {id: name, type: core.set, config: {value: "{{ inputs.who }}"}}
        """
    )

    async def main() -> list[RunResult]:
        async with make_runtime() as one, make_runtime() as two:
            return list(
                await asyncio.gather(
                    one.run(path, inputs={"who": "one"}),
                    two.run(path, inputs={"who": "two"}),
                    one.run(path, inputs={"who": "three"}),
                )
            )

    results = asyncio.run(main())
    assert [r.merge_fields["name"] for r in results] == ["one", "two", "three"]
    assert len({r.run_id for r in results}) == 3
    for result in results:
        assert {r["run_id"] for r in result.reports} == {result.run_id}


def test_validate_returns_every_problem(runtime: Runtime) -> None:
    problems = runtime.validate({"flow": "x", "stepz": [], "steps": [{"id": 1, "type": "a.b"}]})
    assert len(problems) == 3
    assert runtime.validate(HELLO) == []
