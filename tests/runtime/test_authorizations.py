"""Authorizations: inherit and select-by-name, secrets from env and files, separate files."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from steprun.runtime import FlowInvalid, RunResult, Runtime, SecretError
from tests.runtime.conftest import Cli, line_of, make_runtime, run_flow


def who(result: RunResult) -> dict[str, str | None]:
    return {step: field.get("name") for step, field in result.merge_fields.items()}


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


INHERIT = """
flow: inherit
authorization: default
authorizations:
  default: {provider: local}
  primary: {provider: openai, api_key: "${env:PRIMARY_KEY}", base_url: "https://primary.example/v1/"}
  backup: {provider: openai, api_key: "${file:backup.key}"}
steps:
  - id: first
    type: test.whoami
  - id: chosen
    type: test.whoami
    authorization: primary
  - id: inherits_chosen
    type: test.whoami
    next: handler_path
  - id: skipped
    type: test.whoami
    authorization: backup
  - id: handler_path
    type: core.fail
    authorization: backup
    on_error: after_error
    config: {message: fails with backup}
  - id: after_error
    type: test.whoami
  - id: explicit_inherit
    type: test.whoami
    authorization: inherit
"""


def test_inherit_takes_the_previous_executed_steps_authorization(
    write_flow: Callable[..., Path], tmp_path: Path
) -> None:
    (tmp_path / "backup.key").write_text("sk-backup-from-a-file\n")
    runtime = make_runtime(environ={"PRIMARY_KEY": "sk-primary-from-env"})
    result = run_flow(runtime, write_flow(INHERIT))
    assert result.status == "succeeded", result.error
    assert who(result) == {
        "first": "default",  # the first step inherits the flow's authorization
        "chosen": "primary",  # selected by name
        "inherits_chosen": "primary",  # ... and the steps after inherit it
        "handler_path": None,  # (the error object has no name)
        "after_error": "backup",  # the failed step did run, with backup
        "explicit_inherit": "backup",
    }
    fields = result.merge_fields
    assert fields["first"]["provider"] == "local"
    assert fields["chosen"]["base_url"] == "https://primary.example/v1"
    assert fields["chosen"]["key_sha256"] == sha("sk-primary-from-env")
    # ${file:PATH} is read relative to the flow file, without its trailing newline.
    assert fields["after_error"]["key_sha256"] == sha("sk-backup-from-a-file")
    reports = {r["step"]: r["authorization"] for r in result.reports if r["kind"] == "step"}
    assert reports["handler_path"] == "backup"
    assert "skipped" not in reports


def test_a_flow_without_any_authorization_gives_steps_none(
    runtime: Runtime, write_flow: Callable[..., Path]
) -> None:
    result = run_flow(runtime, write_flow("flow: none\nsteps:\n  - id: a\n    type: test.whoami\n"))
    assert result.merge_fields["a"] == {"name": None, "provider": None}


def test_an_authorization_that_is_never_used_needs_no_secret(
    write_flow: Callable[..., Path],
) -> None:
    path = write_flow(
        """
        flow: unused
        authorization: local
        authorizations:
          local: {provider: local}
          production: {provider: openai, api_key: "${env:PRODUCTION_KEY_NOT_SET}"}
          other: {provider: openai, api_key: "${file:missing.key}"}
        steps:
          - id: a
            type: test.whoami
        """
    )
    result = run_flow(make_runtime(environ={}), path)
    assert result.status == "succeeded"
    assert who(result) == {"a": "local"}


def test_a_missing_environment_variable_is_a_clear_error_before_any_step(
    write_flow: Callable[..., Path],
) -> None:
    path = write_flow(
        """
        flow: missing
        authorization: openai
        authorizations:
          openai: {provider: openai, api_key: "${env:MISSING_OPENAI_KEY}"}
        steps:
          - id: a
            type: test.whoami
        """
    )
    with pytest.raises(SecretError) as caught:
        run_flow(make_runtime(environ={}), path)
    assert str(caught.value) == (
        f"{path}:4: "
        "authorization 'openai' setting 'api_key': environment variable MISSING_OPENAI_KEY is "
        "not set (referenced as ${env:MISSING_OPENAI_KEY}); export it before running, e.g. "
        "`export MISSING_OPENAI_KEY=...`"
    )


def test_a_missing_secret_exits_2_at_run_but_validates(
    cli: Callable[..., Cli], write_flow: Callable[..., Path]
) -> None:
    write_flow(
        """
        flow: missing
        authorization: openai
        authorizations:
          openai: {provider: openai, api_key: "${env:MISSING_OPENAI_KEY}"}
        steps:
          - id: a
            type: core.set
            config: {value: 1}
        """
    )
    assert cli("validate", "flow.yaml").code == 0  # the variable is needed when it runs
    result = cli("run", "flow.yaml")
    assert result.code == 2
    assert result.stdout == ""
    assert "environment variable MISSING_OPENAI_KEY is not set" in result.stderr
    assert "authorization 'openai' setting 'api_key'" in result.stderr


def test_a_missing_secret_file_names_the_file(
    write_flow: Callable[..., Path], tmp_path: Path
) -> None:
    path = write_flow(
        """
        flow: missing
        authorization: openai
        authorizations:
          openai: {provider: openai, api_key: "${file:keys/openai.key}"}
        steps:
          - id: a
            type: test.whoami
        """
    )
    with pytest.raises(SecretError) as caught:
        run_flow(make_runtime(), path)
    assert f"secret file {tmp_path / 'keys' / 'openai.key'} does not exist" in str(caught.value)


def test_an_empty_secret_is_refused(write_flow: Callable[..., Path]) -> None:
    path = write_flow(
        """
        flow: empty
        authorization: openai
        authorizations:
          openai: {provider: openai, api_key: "${env:EMPTY_KEY}"}
        steps:
          - id: a
            type: test.whoami
        """
    )
    with pytest.raises(SecretError, match=r"the secret from \$\{env:EMPTY_KEY\} is empty"):
        run_flow(make_runtime(environ={"EMPTY_KEY": ""}), path)


AUTH_FILE_FLOW = """
flow: separate
authorization: openai
steps:
  - id: a
    type: test.whoami
"""


def test_authorizations_from_a_separate_file(
    cli: Callable[..., Cli],
    write_flow: Callable[..., Path],
    tmp_path: Path,
    test_steps_env: dict[str, Any],
) -> None:
    write_flow(AUTH_FILE_FLOW)
    (tmp_path / "auth.yaml").write_text(
        "openai:\n  provider: openai\n  api_key: ${env:SEPARATE_KEY}\n  max_retries: 0\n"
    )
    result = cli(
        "run",
        "flow.yaml",
        "--authorizations",
        "auth.yaml",
        env={**test_steps_env, "SEPARATE_KEY": "sk-separate-file-key"},
    )
    assert result.code == 0, result.stderr
    field = json.loads(result.stdout)["a"]
    assert field["name"] == "openai"
    assert field["key_sha256"] == sha("sk-separate-file-key")


def test_a_wrong_authorizations_file_gets_file_line_problems(
    cli: Callable[..., Cli], write_flow: Callable[..., Path], tmp_path: Path
) -> None:
    write_flow(AUTH_FILE_FLOW)
    auth = tmp_path / "auth.yaml"
    auth.write_text(
        "openai:\n  provider: openai\n  api_kye: ${env:KEY}\nlocal:\n  provider: lokal\n"
    )
    result = cli("run", "flow.yaml", "--authorizations", "auth.yaml")
    assert result.code == 2
    assert f"auth.yaml:{line_of(auth, 'api_kye')}: openai.api_kye: unknown key 'api_kye'; " in (
        result.stderr
    )
    assert "did you mean 'api_key'?" in result.stderr
    assert f"auth.yaml:{line_of(auth, 'lokal')}: local.provider: expected one of" in (result.stderr)


def test_an_authorizations_file_that_is_missing_or_not_a_mapping(
    cli: Callable[..., Cli], write_flow: Callable[..., Path], tmp_path: Path
) -> None:
    write_flow(AUTH_FILE_FLOW)
    missing = cli("run", "flow.yaml", "--authorizations", "nope.yaml")
    assert missing.code == 2
    assert "nope.yaml: no such authorizations file" in missing.stderr
    (tmp_path / "list.yaml").write_text("- openai\n")
    listed = cli("validate", "flow.yaml", "--authorizations", "list.yaml")
    assert listed.code == 2
    assert "an authorizations file is a mapping of names to authorizations" in listed.stderr


def test_an_authorization_given_separately_satisfies_validation(
    write_flow: Callable[..., Path],
) -> None:
    runtime = make_runtime(environ={"K": "sk-given-separately"})
    path = write_flow(AUTH_FILE_FLOW)
    with pytest.raises(FlowInvalid, match="authorization 'openai' is not defined"):
        runtime.load(path)
    result = run_flow(
        runtime, path, authorizations={"openai": {"provider": "openai", "api_key": "${env:K}"}}
    )
    assert result.merge_fields["a"]["key_sha256"] == sha("sk-given-separately")


def test_a_local_authorization_points_at_the_embedded_backend(
    runtime: Runtime, write_flow: Callable[..., Path]
) -> None:
    path = write_flow(
        """
        flow: local
        authorization: here
        authorizations:
          here: {provider: local, job_seconds: 2}
        steps:
          - id: a
            type: test.whoami
        """
    )
    field = run_flow(runtime, path).merge_fields["a"]
    assert field["provider"] == "local"
    assert field["base_url"] == "http://local.steprun.invalid/v1"
    assert field["key_sha256"] is None
