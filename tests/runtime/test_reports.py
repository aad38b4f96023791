"""Reports: one per executed step and one per run, to the console, a JSON Lines file and a hook."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from steprun.runtime import hookimpl
from tests.runtime import steptypes
from tests.runtime.conftest import Cli, ReportCollector, make_runtime, run_flow

# What DESIGN.md says every step report holds (and what platforms may rely on).
STEP_FIELDS = {
    "kind",
    "run_id",
    "flow",
    "step",
    "step_type",
    "step_version",
    "status",
    "started_at",
    "ended_at",
    "duration_ms",
    "log_level",
    "tags",
    "merge_field",
    "error",
}
RUN_FIELDS = {"kind", "run_id", "flow", "status", "started_at", "ended_at", "duration_ms", "error"}

FLOW = """
flow: reporting
log_level: warn
tags:
  - {category: team, label: owner, value: support}
  - {category: cost, label: center, value: 42}
steps:
  - id: quiet
    type: core.log
    config: {level: info, message: dropped at warn}
  - id: loud
    type: core.log
    config: {level: warn, message: kept at warn}
  - id: chatty
    type: core.log
    log_level: debug
    merge_field: chat
    tags: [{category: stage, label: step, value: smoke-test}]
    config: {level: debug, message: kept at debug, fields: {n: 1}}
  - id: errs
    type: test.leak
    on_error: end
    config: {how: crash}
"""


def step_reports(reports: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {r["step"]: r for r in reports if r["kind"] == "step"}


def test_each_executed_step_reports_once_with_every_field(
    write_flow: Callable[..., Path],
) -> None:
    collector = ReportCollector()
    runtime = make_runtime(plugins=[steptypes, collector])
    result = run_flow(runtime, write_flow(FLOW))
    reports = result.reports
    assert [r["kind"] for r in reports] == ["step"] * 4 + ["run"]
    by_step = step_reports(reports)
    assert list(by_step) == ["quiet", "loud", "chatty", "errs"]
    run_id = result.run_id
    for report in by_step.values():
        assert set(report) >= STEP_FIELDS, STEP_FIELDS - set(report)
        assert report["run_id"] == run_id
        assert report["flow"] == "reporting"
        started = datetime.fromisoformat(report["started_at"])
        ended = datetime.fromisoformat(report["ended_at"])
        assert started <= ended
        assert started.tzinfo is not None
        assert report["duration_ms"] >= 0
    chatty = by_step["chatty"]
    assert chatty["step_type"] == "core.log"
    assert chatty["step_version"] == "1.0.0"
    assert chatty["status"] == "succeeded"
    assert chatty["merge_field"] == "chat"
    assert chatty["error"] is None
    errs = by_step["errs"]
    assert (errs["step_type"], errs["step_version"]) == ("test.leak", "2.1.0")
    assert errs["status"] == "error_handled"
    assert errs["error"]["type"] == "internal_error"
    run = reports[-1]
    assert set(run) >= RUN_FIELDS
    assert run["status"] == "succeeded"
    assert run["steps_executed"] == 4
    assert run["error"] is None
    # The hook got the very same reports, in the same order.
    assert collector.reports == reports


def test_log_levels_are_inherited_from_the_flow_and_lines_below_are_dropped(
    write_flow: Callable[..., Path],
) -> None:
    console = io.StringIO()
    result = run_flow(make_runtime(), write_flow(FLOW), console=console)
    by_step = step_reports(result.reports)
    assert by_step["quiet"]["log_level"] == "warn"
    assert by_step["quiet"]["logs"] == []
    assert [line["message"] for line in by_step["loud"]["logs"]] == ["kept at warn"]
    assert by_step["chatty"]["log_level"] == "debug"
    [line] = by_step["chatty"]["logs"]
    assert (line["level"], line["message"], line["fields"]) == ("debug", "kept at debug", {"n": 1})
    text = console.getvalue()
    assert "dropped at warn" not in text
    assert "loud warn  kept at warn" in text
    assert "chatty debug kept at debug n=1" in text
    # The crash's traceback is a debug line, below the step's (inherited) warn level.
    assert by_step["errs"]["logs"] == []
    assert "Traceback" not in text


@pytest.mark.parametrize(("override", "kept"), [("debug", 3), ("error", 0)])
def test_the_log_level_option_overrides_flow_and_steps(
    write_flow: Callable[..., Path], override: str, kept: int
) -> None:
    result = run_flow(make_runtime(), write_flow(FLOW), log_level=override)
    by_step = step_reports(result.reports)
    assert {r["log_level"] for r in by_step.values()} == {override}
    lines = [line for step in ("quiet", "loud", "chatty") for line in by_step[step]["logs"]]
    assert len(lines) == kept


def test_tags_are_the_flows_then_the_steps(write_flow: Callable[..., Path]) -> None:
    result = run_flow(make_runtime(), write_flow(FLOW))
    by_step = step_reports(result.reports)
    flow_tags = [
        {"category": "team", "label": "owner", "value": "support"},
        {"category": "cost", "label": "center", "value": 42},
    ]
    assert by_step["quiet"]["tags"] == flow_tags
    assert by_step["chatty"]["tags"] == [
        *flow_tags,
        {"category": "stage", "label": "step", "value": "smoke-test"},
    ]
    assert result.reports[-1]["tags"] == flow_tags


def test_a_failing_report_hook_does_not_change_the_run(write_flow: Callable[..., Path]) -> None:
    class Broken:
        @hookimpl
        def steprun_report(self, report: dict[str, Any]) -> None:
            raise OSError("the platform's sink is down")

    console = io.StringIO()
    runtime = make_runtime(plugins=[steptypes, Broken()])
    result = run_flow(runtime, write_flow(FLOW), console=console)
    assert result.status == "succeeded"
    assert len(result.reports) == 5
    assert "warning: a steprun_report hook failed: OSError: the platform's sink is down" in (
        console.getvalue()
    )


def test_the_report_file_is_json_lines_and_the_log_level_option_applies(
    cli: Callable[..., Cli],
    write_flow: Callable[..., Path],
    tmp_path: Path,
    test_steps_env: dict[str, Any],
) -> None:
    write_flow(FLOW)
    result = cli(
        "run", "flow.yaml", "--report", "out/report.jsonl", "--log-level", "info",
        env=test_steps_env,
    )  # fmt: skip
    assert result.code == 0, result.stderr
    lines = (tmp_path / "out" / "report.jsonl").read_text().splitlines()
    reports = [json.loads(line) for line in lines]
    assert [r["kind"] for r in reports] == ["step"] * 4 + ["run"]
    assert len({r["run_id"] for r in reports}) == 1
    by_step = step_reports(reports)
    for report in by_step.values():
        assert set(report) >= STEP_FIELDS
        assert report["log_level"] == "info"
    assert [line["message"] for line in by_step["quiet"]["logs"]] == ["dropped at warn"]
    assert by_step["chatty"]["logs"] == []  # debug is below the --log-level
    assert reports[-1]["status"] == "succeeded"
    # The console shows progress, the JSON on stdout is only the merge fields.
    assert "✔ quiet succeeded" in result.stderr
    assert "↪ errs error_handled" in result.stderr
    assert set(json.loads(result.stdout)) == {"quiet", "loud", "chat", "errs"}


def test_a_report_file_that_cannot_be_written_is_a_clear_error(
    cli: Callable[..., Cli], write_flow: Callable[..., Path], tmp_path: Path
) -> None:
    write_flow("flow: r\nsteps:\n  - {id: a, type: core.set, config: {value: 1}}\n")
    (tmp_path / "taken").write_text("a file, not a folder")
    result = cli("run", "flow.yaml", "--report", "taken/report.jsonl")
    assert result.code in (1, 2)
    assert "cannot write the report file taken/report.jsonl" in result.stderr
