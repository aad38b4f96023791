"""The runner: exits, error objects, handlers, loops, limits and timeouts."""

from __future__ import annotations

import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from steprun.runtime import RunResult, Runtime
from tests.runtime.conftest import Cli, run_flow

ERROR_KEYS = {"type", "message", "code", "param", "status", "request_id", "step"}


def executed(result: RunResult) -> list[str]:
    return [r["step"] for r in result.reports if r["kind"] == "step"]


def statuses(result: RunResult) -> dict[str, str]:
    return {r["step"]: r["status"] for r in result.reports if r["kind"] == "step"}


def test_steps_fall_through_in_order_and_next_jumps(
    runtime: Runtime, write_flow: Callable[..., Path]
) -> None:
    path = write_flow(
        """
        flow: exits
        steps:
          - id: a
            type: core.set
            config: {value: 1}
            next: c
          - id: b
            type: core.set
            config: {value: 2}
          - id: c
            type: core.set
            config: {value: 3}
          - id: d
            type: core.set
            config: {value: 4}
            next: end
          - id: e
            type: core.set
            config: {value: 5}
        """
    )
    result = run_flow(runtime, path)
    assert result.status == "succeeded"
    assert executed(result) == ["a", "c", "d"]
    assert result.merge_fields == {"a": 1, "c": 3, "d": 4}


def test_a_handled_error_stores_the_error_object_and_takes_on_error(
    runtime: Runtime, write_flow: Callable[..., Path]
) -> None:
    path = write_flow(
        """
        flow: handled
        steps:
          - id: call
            type: core.fail
            on_error: handler
            config: {message: rate limited, type: rate_limit_error, code: too_many, param: model}
          - id: skipped
            type: core.set
            config: {value: never}
          - id: handler
            type: core.set
            config:
              values: {saw: "{{ error }}", text: "{{ error.type }}: {{ error.message }}"}
        """
    )
    result = run_flow(runtime, path)
    assert result.status == "succeeded"
    assert executed(result) == ["call", "handler"]
    error = result.merge_fields["call"]
    assert set(error) == ERROR_KEYS
    assert error == {
        "type": "rate_limit_error",
        "message": "rate limited",
        "code": "too_many",
        "param": "model",
        "status": None,
        "request_id": None,
        "step": "call",
    }
    assert statuses(result) == {"call": "error_handled", "handler": "succeeded"}
    assert result.merge_fields["handler"] == {
        "saw": error,
        "text": "rate_limit_error: rate limited",
    }
    [report] = [r for r in result.reports if r.get("step") == "call"]
    assert report["error"] == error
    assert result.error is None


def test_handle_error_false_goes_to_the_flow_handler_and_the_run_fails(
    runtime: Runtime, write_flow: Callable[..., Path]
) -> None:
    path = write_flow(
        """
        flow: flow-handler
        on_error: report_failure
        steps:
          - id: risky
            type: core.fail
            handle_error: false
            config: {message: boom, code: broken}
            next: end
          - id: report_failure
            type: core.log
            config: {level: error, message: "failed at {{ error.step }}: {{ error.message }}"}
        """
    )
    result = run_flow(runtime, path)
    assert result.status == "failed"
    assert result.error is not None and result.error["step"] == "risky"
    assert result.reports[-1]["error"]["code"] == "broken"  # the original error
    assert executed(result) == ["risky", "report_failure"]
    assert statuses(result) == {"risky": "failed", "report_failure": "succeeded"}
    assert result.merge_fields["risky"]["code"] == "broken"
    assert result.merge_fields["report_failure"]["message"] == "failed at risky: boom"


def test_an_error_without_on_error_goes_to_the_flow_handler_and_the_run_fails(
    runtime: Runtime, write_flow: Callable[..., Path]
) -> None:
    path = write_flow(
        """
        flow: flow-handler
        on_error: handler
        steps:
          - id: a
            type: test.crash
            config: {message: plugin bug}
          - id: b
            type: core.set
            config: {value: never}
          - id: handler
            type: core.set
            config: {value: "{{ error.type }}/{{ error.code }}"}
        """
    )
    result = run_flow(runtime, path)
    assert result.status == "failed"
    assert executed(result) == ["a", "handler"]
    assert result.merge_fields["handler"] == "internal_error/step_crashed"


FLOW_HANDLER = """
flow: cli-exits
on_error: handler
steps:
  - id: risky
    type: core.fail
    handle_error: false
    config: {{message: boom}}
  - id: handler
    type: {handler_type}
    config: {{message: "handler saw {{{{ error.message }}}}"}}
"""


def test_cli_exits_1_after_the_flow_handler_ran(
    cli: Callable[..., Cli], write_flow: Callable[..., Path]
) -> None:
    path = write_flow(FLOW_HANDLER.format(handler_type="core.log"))
    result = cli("run", "flow.yaml", "--report", "report.jsonl")
    assert result.code == 1, result.stderr
    fields = json.loads(result.stdout)
    assert fields["handler"]["message"] == "handler saw boom"  # the handler ran
    assert "✘ risky failed" in result.stderr
    assert "failed at step 'risky': boom" in result.stderr.splitlines()[-1]
    run_report = json.loads((path.parent / "report.jsonl").read_text().splitlines()[-1])
    assert run_report["status"] == "failed"
    assert run_report["error"]["message"] == "boom"


def test_cli_exits_0_after_a_step_level_error_exit_and_names_the_handled_step(
    cli: Callable[..., Cli], write_flow: Callable[..., Path]
) -> None:
    path = write_flow(
        """
        flow: step-level
        on_error: flow_handler
        steps:
          - id: risky
            type: core.fail
            config: {message: boom}
            on_error: own
          - id: own
            type: core.log
            config: {message: "own handler saw {{ error.message }}"}
            next: end
          - id: flow_handler
            type: core.log
            config: {message: never}
        """
    )
    result = cli("run", "flow.yaml", "--report", "report.jsonl")
    assert result.code == 0, result.stderr
    assert result.stderr.splitlines()[-1].endswith(
        "succeeded (errors handled by the flow at: risky)"
    )
    run_report = json.loads((path.parent / "report.jsonl").read_text().splitlines()[-1])
    assert run_report["handled_steps"] == ["risky"]


def test_cli_exits_1_when_the_flow_handler_fails_itself(
    cli: Callable[..., Cli], write_flow: Callable[..., Path]
) -> None:
    write_flow(FLOW_HANDLER.format(handler_type="core.fail"))
    result = cli("run", "flow.yaml")
    assert result.code == 1
    fields = json.loads(result.stdout)
    assert fields["handler"]["message"] == "handler saw boom"
    assert "✘ handler failed in " in result.stderr
    # The run's error is the one the handler was handling: resume retries from there.
    assert "failed at step 'risky': boom" in result.stderr.splitlines()[-1]


def test_cli_exits_1_when_no_handler_catches_the_error(
    cli: Callable[..., Cli], write_flow: Callable[..., Path]
) -> None:
    write_flow(
        """
        flow: unhandled
        steps:
          - id: first
            type: core.set
            config: {value: 1}
          - id: broken
            type: core.fail
            config: {message: nothing catches this, type: flow_error}
          - id: never
            type: core.set
            config: {value: 2}
        """
    )
    result = cli("run", "flow.yaml")
    assert result.code == 1
    assert json.loads(result.stdout) == {
        "first": 1,
        "broken": {
            "type": "flow_error",
            "message": "nothing catches this",
            "code": None,
            "param": None,
            "status": None,
            "request_id": None,
            "step": "broken",
        },
    }
    assert "failed at step 'broken': nothing catches this" in result.stderr


def test_an_unhandled_error_fails_the_run_with_its_error(
    runtime: Runtime, write_flow: Callable[..., Path]
) -> None:
    path = write_flow(
        """
        flow: unhandled
        steps:
          - id: broken
            type: core.fail
            config: {message: nope, details: {why: [1, 2]}}
          - id: never
            type: core.set
            config: {value: 2}
        """
    )
    result = run_flow(runtime, path)
    assert result.status == "failed"
    assert executed(result) == ["broken"]
    assert result.error is not None
    assert result.error["step"] == "broken"
    assert result.error["details"] == {"why": [1, 2]}
    assert result.reports[-1]["kind"] == "run"
    assert result.reports[-1]["status"] == "failed"


def test_a_retry_loop_with_core_condition(
    runtime: Runtime, write_flow: Callable[..., Path]
) -> None:
    path = write_flow(
        """
        flow: retry
        inputs: {attempts: 4}
        steps:
          - id: tries
            type: core.set
            config: {value: 0}
          - id: attempt
            type: core.set
            merge_field: tries
            config: {value: "{{ tries + 1 }}"}
          - id: again
            type: core.condition
            config:
              cases: [{when: "{{ tries < inputs.attempts }}", next: attempt}]
              default: done
          - id: never
            type: core.set
            config: {value: skipped}
          - id: done
            type: core.log
            config: {message: "took {{ tries }} tries"}
        """
    )
    result = run_flow(runtime, path)
    assert result.status == "succeeded"
    assert executed(result) == ["tries", *["attempt", "again"] * 4, "done"]
    assert result.merge_fields["tries"] == 4
    assert result.merge_fields["again"] == {"matched": None, "next": "done"}
    assert result.merge_fields["done"]["message"] == "took 4 tries"
    assert "never" not in result.merge_fields


def test_max_steps_stops_a_loop_that_never_ends(
    runtime: Runtime, write_flow: Callable[..., Path]
) -> None:
    path = write_flow(
        """
        flow: forever
        max_steps: 50
        steps:
          - id: spin
            type: core.condition
            config: {cases: [{when: true, next: spin}]}
        """
    )
    started = time.perf_counter()
    result = run_flow(runtime, path)
    assert time.perf_counter() - started < 5
    assert result.status == "failed"
    assert len(executed(result)) == 50
    assert result.error is not None
    assert result.error["type"] == "step_limit"
    assert result.error["code"] == "max_steps"
    assert "its limit (max_steps: 50); a loop may never end" in result.error["message"]


def test_the_flow_timeout_stops_the_run(runtime: Runtime, write_flow: Callable[..., Path]) -> None:
    path = write_flow(
        """
        flow: slow
        timeout: 300ms
        steps:
          - id: quick
            type: core.set
            config: {value: 1}
          - id: slow
            type: test.sleep
            on_error: handler
            config: {seconds: 30}
          - id: handler
            type: core.set
            config: {value: "{{ error.code }}"}
        """
    )
    started = time.perf_counter()
    result = run_flow(runtime, path)
    assert time.perf_counter() - started < 3
    # The whole-run limit is not a step's error to handle: the run stops.
    assert result.status == "failed"
    assert executed(result) == ["quick", "slow"]
    assert result.error is not None
    assert result.error["code"] == "run_timeout"
    assert result.error["type"] == "timeout"
    assert "the run exceeded its timeout (0.3 s) during step 'slow'" in result.error["message"]


def test_a_step_timeout_takes_the_error_exit(
    runtime: Runtime, write_flow: Callable[..., Path]
) -> None:
    path = write_flow(
        """
        flow: slow-step
        timeout: 1h
        steps:
          - id: slow
            type: test.sleep
            timeout: 200ms
            on_error: handler
            config: {seconds: 30}
          - id: handler
            type: core.set
            config: {value: "{{ error.type }}"}
        """
    )
    started = time.perf_counter()
    result = run_flow(runtime, path)
    assert time.perf_counter() - started < 3
    assert result.status == "succeeded"
    assert statuses(result) == {"slow": "error_handled", "handler": "succeeded"}
    assert result.merge_fields["handler"] == "timeout"
    assert "did not finish within its timeout (0.2 s)" in result.merge_fields["slow"]["message"]


def test_a_step_within_its_timeout_succeeds(
    runtime: Runtime, write_flow: Callable[..., Path]
) -> None:
    path = write_flow(
        """
        flow: fast-enough
        steps:
          - id: nap
            type: test.sleep
            timeout: 5s
            config: {seconds: 0.01}
        """
    )
    assert run_flow(runtime, path).merge_fields == {"nap": {"slept": 0.01}}


def test_a_crashing_plugin_becomes_internal_error_without_a_traceback(
    runtime: Runtime, write_flow: Callable[..., Path]
) -> None:
    path = write_flow(
        """
        flow: crash
        steps:
          - id: bug
            type: test.crash
            config: {message: "list index out of range"}
        """
    )
    console = io.StringIO()
    result = run_flow(runtime, path, console=console)
    assert result.status == "failed"
    error = result.merge_fields["bug"]
    assert error["type"] == "internal_error"
    assert error["code"] == "step_crashed"
    assert error["message"] == (
        "step type test.crash 1.0.0 crashed: RuntimeError: list index out of range"
    )
    assert "Traceback" not in console.getvalue()
    assert "crashed: RuntimeError: list index out of range" in console.getvalue()


def test_a_crash_traceback_is_a_debug_log_line_of_the_step(
    runtime: Runtime, write_flow: Callable[..., Path]
) -> None:
    path = write_flow(
        """
        flow: crash
        log_level: debug
        steps:
          - id: bug
            type: test.crash
        """
    )
    result = run_flow(runtime, path)
    [report] = [r for r in result.reports if r["kind"] == "step"]
    [line] = report["logs"]
    assert line["level"] == "debug"
    assert line["message"].startswith("Traceback (most recent call last):")
    assert "RuntimeError: the plugin has a bug" in line["message"]


def test_a_crashing_plugin_exits_1_without_a_traceback(
    cli: Callable[..., Cli], write_flow: Callable[..., Path], test_steps_env: dict[str, Any]
) -> None:
    write_flow("flow: crash\nsteps:\n  - id: bug\n    type: test.crash\n")
    result = cli("run", "flow.yaml", env=test_steps_env)
    assert result.code == 1
    assert "crashed: RuntimeError: the plugin has a bug" in result.stderr


def test_a_plugin_returning_a_value_that_is_not_json(
    runtime: Runtime, write_flow: Callable[..., Path]
) -> None:
    path = write_flow(
        """
        flow: bad-output
        steps:
          - id: odd
            type: test.not_json
            on_error: caught
          - id: caught
            type: core.set
            config: {value: "{{ error.code }}"}
        """
    )
    result = run_flow(runtime, path)
    assert result.status == "succeeded"
    assert result.merge_fields["odd"]["type"] == "internal_error"
    assert result.merge_fields["odd"]["message"] == (
        "step type test.not_json returned a set, which is not JSON"
    )
    assert result.merge_fields["caught"] == "bad_output"


def test_every_step_reports_exactly_once_even_in_loops_and_errors(
    runtime: Runtime, write_flow: Callable[..., Path]
) -> None:
    path = write_flow(
        """
        flow: once
        steps:
          - id: n
            type: core.set
            config: {value: 0}
          - id: bump
            type: core.set
            merge_field: n
            config: {value: "{{ n + 1 }}"}
          - id: loop
            type: core.condition
            config: {cases: [{when: "{{ n < 3 }}", next: bump}]}
          - id: fail
            type: core.fail
            on_error: end
            config: {message: stop}
        """
    )
    result = run_flow(runtime, path)
    steps = [r for r in result.reports if r["kind"] == "step"]
    assert [r["step"] for r in steps] == ["n", *["bump", "loop"] * 3, "fail"]
    assert [r["attempt"] for r in steps if r["step"] == "bump"] == [1, 2, 3]
    assert sum(1 for r in result.reports if r["kind"] == "run") == 1
    assert result.reports[-1]["steps_executed"] == len(steps)


def test_a_rendered_config_is_checked_in_every_run_though_valid_ones_are_remembered(
    runtime: Runtime, write_flow: Callable[..., Path]
) -> None:
    # core.condition's `when` must be a boolean: true passes, and neither 1 nor "true"
    # may pass on the strength of a remembered valid config that looks alike.
    path = write_flow(
        """
        flow: remembered
        inputs: {flag: true}
        steps:
          - id: choose
            type: core.condition
            config: {cases: [{when: "{{ inputs.flag }}", next: end}]}
        """
    )
    loaded = runtime.load(path)
    outcomes = []
    for flag in (True, True, 1, "true", True):
        result = run_flow(runtime, loaded, inputs={"flag": flag})
        error = result.error or {}
        outcomes.append((result.status, error.get("type")))
    assert outcomes == [
        ("succeeded", None),
        ("succeeded", None),
        ("failed", "invalid_config"),
        ("failed", "invalid_config"),
        ("succeeded", None),
    ]
