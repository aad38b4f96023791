"""A canary key runs through every path of the runtime and never appears in any output.

The test steps in ``steptypes`` log the key, return it, raise errors carrying it and crash
with it in the message; the runtime must mask it in the console, the printed JSON, the
report file, the report hook, the merge fields, the run store and error messages.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from steprun.runtime import Authorization
from steprun.runtime.secrets import MASK, Redactor, reference_problems, resolve
from tests.runtime import steptypes
from tests.runtime.conftest import Cli, ReportCollector, make_runtime, run_flow, run_step

CANARY = "sk-canary-" + secrets.token_hex(16)
# The key as it is, as a URL would carry it, and its random part alone (a partial leak).
CANARY_FORMS = (CANARY, quote(CANARY, safe=""), CANARY.removeprefix("sk-canary-"))

EVERY_PATH = """
flow: canary
authorization: openai
on_error: flow_handler
tags: [{category: team, label: owner, value: security}]
authorizations:
  openai: {provider: openai, api_key: "${env:CANARY_KEY}"}
steps:
  - id: who
    type: test.whoami
  - id: logs
    type: test.leak
    config: {how: log}
  - id: returns
    type: test.leak
    config: {how: return}
  - id: reads_it
    type: core.set
    config: {value: "{{ returns }} {{ returns.key }}"}
  - id: handled
    type: test.leak
    on_error: handler
    config: {how: step_error}
  - id: handler
    type: core.log
    config: {level: error, message: "{{ error.message }} {{ error }}"}
  - id: crashes
    type: test.leak
    handle_error: false
    config: {how: crash}
  - id: flow_handler
    type: core.log
    config: {level: warn, message: "caught: {{ error }}"}
"""

UNHANDLED = """
flow: canary-fails
authorization: openai
steps:
  - id: logs
    type: test.leak
    config: {how: log}
  - id: fails
    type: test.leak
    config: {how: step_error}
"""


def assert_clean(where: str, text: str) -> None:
    for form in CANARY_FORMS:
        assert form.lower() not in text.lower(), f"the canary key leaked into {where}"


def test_the_canary_never_leaks_from_the_cli(
    cli: Callable[..., Cli],
    write_flow: Callable[..., Path],
    tmp_path: Path,
    test_steps_env: dict[str, Any],
) -> None:
    write_flow(EVERY_PATH)
    write_flow(UNHANDLED, "fails.yaml")
    (tmp_path / "canary.key").write_text(CANARY + "\n")
    (tmp_path / "auth.yaml").write_text(
        "openai:\n  provider: openai\n  api_key: ${file:canary.key}\n"
    )
    env = {**test_steps_env, "CANARY_KEY": CANARY}

    ok = cli(
        "run",
        "flow.yaml",
        "--report",
        "ok.jsonl",
        "--log-level",
        "debug",
        env=env,
        traceback_ok=True,
    )  # debug logs carry the crash's traceback, redacted
    assert ok.code == 1, ok.stderr  # every path ran; the flow handler caught the crash
    failed = cli(
        "run",
        "fails.yaml",
        "--authorizations",
        "auth.yaml",
        "--report",
        "failed.jsonl",
        env=test_steps_env,
    )
    assert failed.code == 1, failed.stderr
    run_ids = [
        line.split()[1]
        for line in (ok.stderr + failed.stderr).splitlines()
        if line.startswith("run run_")
    ]
    assert len(run_ids) == 2
    shown = [cli("show", run_id, "--json", env=test_steps_env) for run_id in run_ids]
    listed = cli("runs", "--json", env=test_steps_env)

    # The key was really used, and every attempt to show it was masked.
    fields = json.loads(ok.stdout)
    assert fields["who"]["key_sha256"] == hashlib.sha256(CANARY.encode()).hexdigest()
    assert fields["returns"]["key"] == MASK
    assert fields["reads_it"].endswith(f" {MASK}")
    assert fields["handled"]["message"] == f"the API rejected key {MASK}"
    assert "Traceback" in ok.stderr and MASK in ok.stderr

    outputs = {
        "stdout of run": ok.stdout,
        "stderr of run": ok.stderr,
        "stdout of the failed run": failed.stdout,
        "stderr of the failed run": failed.stderr,
        "the report file": (tmp_path / "ok.jsonl").read_text(),
        "the failed run's report file": (tmp_path / "failed.jsonl").read_text(),
        "steprun runs": listed.stdout + listed.stderr,
    }
    for result in shown:
        assert result.code == 0, result.stderr
        outputs["steprun show"] = result.stdout + result.stderr
    store = {f.name: f.read_bytes().decode("latin-1") for f in (tmp_path / "state").iterdir()}
    assert any(f"the API rejected key {MASK}" in text for text in store.values())
    outputs.update({f"the run store {name}": text for name, text in store.items()})
    for where, text in outputs.items():
        assert_clean(where, text)
    reports = [json.loads(line) for line in outputs["the report file"].splitlines()]
    assert len(reports) == 9  # 8 steps and the run
    assert any(MASK in json.dumps(r["logs"]) for r in reports if r["kind"] == "step")


def test_the_canary_never_leaks_when_embedded(write_flow: Callable[..., Path]) -> None:
    collector = ReportCollector()
    runtime = make_runtime(
        plugins=[steptypes, collector],
        environ={"CANARY_KEY": CANARY},
    )
    console = io.StringIO()
    result = run_flow(runtime, write_flow(EVERY_PATH), console=console, log_level="debug")
    assert result.status == "failed"  # the flow handler ran after the crash
    assert len(collector.reports) == 9
    assert collector.reports == result.reports
    for where, text in {
        "the console": console.getvalue(),
        "the merge fields": json.dumps(result.merge_fields),
        "the reports": json.dumps(result.reports),
        "the report hook": json.dumps(collector.reports),
    }.items():
        assert_clean(where, text)


@pytest.mark.parametrize("how", ["log", "return", "step_error", "crash"])
def test_the_canary_never_leaks_from_run_step(how: str) -> None:
    collector = ReportCollector()
    runtime = make_runtime(
        plugins=[steptypes, collector],
        environ={"CANARY_KEY": CANARY},
    )
    console = io.StringIO()
    by_object = run_step(
        runtime,
        "test.leak",
        {"how": how},
        authorization=Authorization(name="mine", provider="openai", api_key=CANARY),
        console=console,
        log_level="debug",
    )
    by_spec = run_step(
        runtime,
        "test.leak",
        {"how": how},
        authorization={"provider": "openai", "api_key": "${env:CANARY_KEY}"},
        console=console,
    )
    for result in (by_object, by_spec):
        assert result.status == ("succeeded" if how in ("log", "return") else "failed")
        assert_clean("run_step's result", json.dumps([result.merge_fields, result.reports]))
        assert_clean("run_step's error", json.dumps(result.error))
    assert_clean("run_step's console", console.getvalue())
    assert_clean("run_step's report hook", json.dumps(collector.reports))


def test_a_literal_key_in_a_flow_is_refused_and_never_stored(
    cli: Callable[..., Cli], tmp_path: Path
) -> None:
    # Issue #8: the flow ran, and its text, key included, was kept in the run store.
    flow = tmp_path / "literal.yaml"
    flow.write_text(
        "flow: literal\n"
        "authorization: openai\n"
        "authorizations:\n"
        f"  openai: {{provider: openai, api_key: {CANARY}}}\n"
        "steps:\n"
        "  - id: a\n"
        "    type: core.set\n"
        "    config: {values: {x: 1}}\n",
        encoding="utf-8",
    )
    for command in ("run", "validate"):
        done = cli(command, flow)
        assert done.code == 2, done.stderr
        assert f"{flow}:4:" in done.stderr
        assert "literal api_key" in done.stderr and "${env:NAME}" in done.stderr
        assert "${file:PATH}" in done.stderr
        assert_clean(f"`steprun {command}`", done.stdout + done.stderr)
    for stored in (tmp_path / "state").glob("*"):
        assert_clean(f"the store file {stored.name}", stored.read_bytes().decode("latin-1"))


def test_the_redactor_masks_every_form_of_a_secret() -> None:
    redactor = Redactor()
    secret = 'sk-"odd"/key+1'
    redactor.add(secret)
    redactor.add("abc")  # too short to mask without destroying the text
    text = f"{secret} {json.dumps(secret)} {quote(secret, safe='')} abc"
    assert redactor.text(text) == f'{MASK} "{MASK}" {MASK} abc'
    # JSON-escaped as other encoders write it, in a body that is not parsed as JSON.
    escaped = secret.replace('"', '\\"').replace("/", "\\/").replace("+", "\\u002B")
    assert redactor.text(f"<{escaped}>") == f"<{MASK}>"
    # Base64, alone and inside a longer base64 text (a Basic credential), standard or
    # URL-safe: what is left of it carries no more than a few bits of the secret.
    for prefix in (b"", b"u:", b"user:"):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            encoded = encode(prefix + secret.encode()).decode()
            masked = redactor.text(encoded)
            assert MASK in masked and len(masked) <= len(prefix) * 2 + 3 + len(MASK) + 4
    assert redactor.data({secret: [secret, 1, None]}) == {MASK: [MASK, 1, None]}
    assert not Redactor()
    assert Redactor().data({"a": "b"}) == {"a": "b"}


def test_secret_references_are_resolved_and_registered(tmp_path: Path) -> None:
    (tmp_path / "key.txt").write_text("  from-a-file  \n")
    redactor = Redactor()
    value = resolve(
        "${env:A}:${file:key.txt}",
        environ={"A": "from-env"},
        base_dir=tmp_path,
        where="test",
        redactor=redactor,
    )
    assert value == "from-env:from-a-file"
    assert redactor.text(value) == f"{MASK}:{MASK}"


def test_reference_syntax_problems_are_found_without_resolving() -> None:
    assert reference_problems("${env:OK} ${file:ok.txt}") == []
    assert reference_problems("${vault:x}") == [
        "unknown secret source 'vault' in '${vault:x}': use ${env:NAME} or ${file:PATH}"
    ]
    assert reference_problems("${env: }") == ["'${env: }' names no variable"]
