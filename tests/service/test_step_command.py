"""`steprun step TYPE`: one step, one JSON object on stdout, exit codes as `run`."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

from .conftest import CANARY, STEPRUN


def step(
    *args: str, stdin: str | None = None, cwd: Path, env: dict[str, str] | None = None
) -> tuple[int, dict[str, Any], str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("STEPRUN_")}
    environ["STEPRUN_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    environ["STEPRUN_STATE"] = str(cwd / "state" / "runs.db")
    environ.update(env or {})
    proc = subprocess.run(
        [str(STEPRUN), "step", *args],
        input=stdin,
        capture_output=True,
        text=True,
        cwd=cwd,
        env=environ,
        timeout=60,
    )
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr
    lines = proc.stdout.splitlines()
    assert len(lines) == 1, f"stdout is one JSON object, got {proc.stdout!r}"
    return proc.returncode, json.loads(lines[0]), proc.stderr


def test_a_step_that_succeeds_prints_its_output_and_exits_0(tmp_path: Path) -> None:
    code, result, _ = step("core.set", "--config", '{"values": {"n": 3}}', cwd=tmp_path)
    assert code == 0
    assert result["status"] == "succeeded"
    assert result["output"] == {"n": 3}
    assert result["error"] is None
    assert result["report"]["step_type"] == "core.set"


def test_config_from_stdin_and_from_a_yaml_file(tmp_path: Path) -> None:
    code, result, _ = step("core.set", "--config", "-", stdin='{"value": [1, 2]}', cwd=tmp_path)
    assert (code, result["output"]) == (0, [1, 2])
    (tmp_path / "config.yaml").write_text("values:\n  greeting: hi {{ inputs.who }}\n")
    code, result, _ = step(
        "core.set", "--config", "@config.yaml", "--input", "who=Ada", cwd=tmp_path
    )
    assert (code, result["output"]) == (0, {"greeting": "hi Ada"})


def test_a_config_the_schema_refuses_exits_2_and_names_the_setting(tmp_path: Path) -> None:
    code, result, stderr = step("core.set", "--config", '{"valuez": 1}', cwd=tmp_path)
    assert code == 2
    assert result["status"] == "invalid"
    paths = [p["path"] for p in result["error"]["problems"]]
    assert "config.valuez" in paths
    assert "did you mean 'value'" in result["error"]["message"]
    assert "invalid" in stderr


def test_unreadable_config_and_unknown_step_type_exit_2(tmp_path: Path) -> None:
    code, result, _ = step("core.set", "--config", "{not json", cwd=tmp_path)
    assert code == 2 and result["status"] == "invalid"
    assert "--config" in result["error"]["message"]
    code, result, _ = step("core.nope", cwd=tmp_path)
    assert code == 2 and "unknown step type" in result["error"]["message"]


def test_a_failing_step_exits_1_with_its_error_object(tmp_path: Path) -> None:
    code, result, _ = step("core.fail", "--config", '{"message": "no good"}', cwd=tmp_path)
    assert code == 1
    assert result["status"] == "failed"
    assert result["error"]["message"] == "no good"
    assert result["report"]["status"] == "failed"


def test_a_named_authorization_reaches_the_api_and_its_key_never_shows(
    tmp_path: Path, backend: str
) -> None:
    auth = tmp_path / "auth.yaml"
    auth.write_text(
        "good:\n  provider: openai\n  api_key: ${env:KEY}\n"
        f"  base_url: {backend}/v1\n"
        "bad:\n  provider: openai\n  api_key: ${env:WRONG}\n"
        f"  base_url: {backend}/v1\n  max_retries: 0\n"
    )
    env = {"KEY": CANARY, "WRONG": CANARY[::-1]}
    code, result, stderr = step(
        "openai.list_fine_tuning_jobs",
        "--config",
        "{}",
        "--authorization",
        "good",
        "--authorizations",
        str(auth),
        cwd=tmp_path,
        env=env,
    )
    assert code == 0, result
    assert result["output"]["object"] == "list"
    code, result, stderr = step(
        "openai.list_fine_tuning_jobs",
        "--config",
        "{}",
        "--authorization",
        "bad",
        "--authorizations",
        str(auth),
        cwd=tmp_path,
        env=env,
    )
    assert code == 1
    assert result["error"]["status"] == 401
    shown = json.dumps(result) + stderr
    for secret in (CANARY, CANARY[::-1]):
        assert secret not in shown
        assert secret[-12:] not in shown


def test_an_unknown_authorization_name_lists_the_defined_ones(tmp_path: Path) -> None:
    auth = tmp_path / "auth.yaml"
    auth.write_text("prod:\n  provider: local\n")
    code, result, _ = step(
        "core.set",
        "--config",
        '{"value": 1}',
        "--authorization",
        "prd",
        "--authorizations",
        str(auth),
        cwd=tmp_path,
    )
    assert code == 2
    assert "'prd' is not defined" in result["error"]["message"]
    assert "prod" in result["error"]["message"]
