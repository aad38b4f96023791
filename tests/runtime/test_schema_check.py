"""schema_check against jsonschema: where it answers, it answers as jsonschema does."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from steprun.runtime import Runtime
from steprun.runtime.schema_check import check

ROOT = Path(__file__).resolve().parents[2]
ODD_VALUES: list[Any] = [
    12345,
    -1,
    0,
    1.5,
    1.0,
    "text",
    "",
    None,
    True,
    False,
    [],
    [1],
    {},
    {"a": 1},
]


def _documents() -> list[tuple[str, Any]]:
    """(schema name, document): every example flow, every step config in them, and
    each of those spoiled in the ways people spoil them."""
    found: list[tuple[str, Any]] = []
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        flow = yaml.safe_load(path.read_text(encoding="utf-8"))
        found.append(("flow", flow))
        for step in flow.get("steps") or []:
            found.append((step["type"], step.get("config") or {}))
    spoiled: list[tuple[str, Any]] = []
    for name, document in found:
        if not isinstance(document, dict):
            continue
        spoiled.append((name, {**document, "zz_unknown": 1}))
        for key in document:
            spoiled.append((name, {k: v for k, v in document.items() if k != key}))
            for odd in ODD_VALUES:
                spoiled.append((name, {**document, key: odd}))
            inner = document[key]
            if isinstance(inner, dict):
                for sub in inner:
                    for odd in ODD_VALUES[:8]:
                        spoiled.append((name, {**document, key: {**inner, sub: odd}}))
            if isinstance(inner, list) and inner and isinstance(inner[0], dict):
                for sub in inner[0]:
                    for odd in ODD_VALUES[:8]:
                        spoiled.append((name, {**document, key: [{**inner[0], sub: odd}]}))
    spoiled.append(("core.set", {"value": datetime.date(2024, 1, 1)}))
    spoiled.append(("core.set", {"values": (1, 2)}))
    return found + spoiled


@pytest.fixture(scope="module")
def runtime() -> Runtime:
    return Runtime(autoload=False)


def _schema(runtime: Runtime, name: str) -> Any:
    if name == "flow":
        return runtime.schemas.builtin("flow.schema.json")
    return runtime.step_schema(name)


def test_where_schema_check_answers_it_agrees_with_jsonschema(runtime: Runtime) -> None:
    answered = {True: 0, False: 0}
    for name, document in _documents():
        schema = _schema(runtime, name)
        quick = check(
            schema, document, str(schema.get("$id", "")), runtime.schemas.resolver(schema)
        )
        truth = runtime.schemas.validator(schema).is_valid(document)
        if quick is not None:
            assert quick == truth, (name, document)
            answered[quick] += 1
        assert runtime.schemas.surely_valid(schema, document) == (quick is True)
    # Not vacuous: most valid documents and many invalid ones are decided without it.
    assert answered[True] >= 200
    assert answered[False] >= 200


def test_a_valid_hello_is_checked_without_jsonschema(tmp_path: Path) -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from steprun.runtime import Runtime\n"
        "Runtime(autoload=False).load('examples/hello.yaml')\n"
        "heavy = ('jsonschema', 'referencing')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_with_templates_taken_as_valid_it_reports_what_validation_reports(
    runtime: Runtime,
) -> None:
    from steprun.runtime.validation import _a_template, _about_templates, _leaves

    decided = 0
    documents = _documents()
    for name, document in list(documents):
        if name != "flow" and isinstance(document, dict):
            for key in document:  # each value in turn a template, as flows write them
                documents.append((name, {**document, key: "{{ inputs.x }}"}))
    for name, document in documents:
        if name == "flow":
            continue
        schema = _schema(runtime, name)
        errors = _leaves(runtime.schemas.validator(schema).iter_errors(document))
        reported = [e for e in errors if not _about_templates(e)]
        if runtime.schemas.surely_valid(schema, document, wild=_a_template):
            decided += 1
            assert reported == [], (name, document)
    assert decided >= 300
