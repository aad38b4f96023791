"""Plugins: built-ins and third-party packages register through the same hook."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from steprun.runtime import PluginError, StepType, hookimpl
from steprun.runtime.plugins import DEFAULT_PLUGINS
from tests.runtime.conftest import Cli, install_entry_point, make_runtime, run_flow

ACME_MODULE = '''
"""A third-party step pack, written as the README shows."""

from steprun.runtime import StepType, hookimpl


async def run(config, context):
    context.log.info("shouting")
    return {"answer": config["question"].upper()}


@hookimpl
def steprun_step_types():
    return [
        StepType(
            type="acme.shout",
            title="Shout",
            version="1.2.0",
            run=run,
            schema={
                "type": "object",
                "required": ["question"],
                "properties": {"question": {"type": "string"}},
            },
        )
    ]
'''

ACME_PYPROJECT = """
[build-system]
# No version pin: it is built with --no-build-isolation by the setuptools already here.
requires = ["setuptools"]
build-backend = "setuptools.build_meta"

[project]
name = "acme-steps"
version = "1.2.0"
description = "A third-party steprun plugin, for the tests"

[project.entry-points."steprun.steps"]
acme = "acme_steps"

[tool.setuptools]
py-modules = ["acme_steps"]
"""

ACME_FLOW = """
flow: acme
steps:
  - id: shout
    type: acme.shout
    config: {question: "{{ inputs.q }}"}
"""


def pip(*args: str, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )


def _builds_wheels() -> bool:
    """Whether the setuptools here can build a wheel by itself (70.1+, or with `wheel`)."""
    try:
        version = importlib.metadata.version("setuptools")
    except importlib.metadata.PackageNotFoundError:
        return False
    major, minor = (int(part) for part in version.split(".")[:2])
    return (major, minor) >= (70, 1) or importlib.util.find_spec("wheel") is not None


@pytest.fixture(scope="module")
def acme_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The acme-steps package, built and installed by pip into its own folder.

    --target keeps the shared venv untouched; --no-build-isolation builds with the
    setuptools at hand. A venv's bundled setuptools may be too old to build a wheel
    (no bdist_wheel before 70.1 without the `wheel` package): then a recent one is
    installed into a folder of its own and put on PYTHONPATH for the build only.
    """
    root = tmp_path_factory.mktemp("acme")
    package = root / "acme-steps"
    package.mkdir()
    (package / "pyproject.toml").write_text(textwrap.dedent(ACME_PYPROJECT))
    (package / "acme_steps.py").write_text(ACME_MODULE)
    target = root / "site"
    install = ("--no-build-isolation", "--no-deps", "--no-index", "--target", str(target))
    tools = None
    if not _builds_wheels():
        tools = root / "build-tools"
        got = pip("--no-deps", "--target", str(tools), "setuptools>=70.1")
        assert got.returncode == 0, got.stderr
    built = pip(*install, str(package), pythonpath=tools)
    assert built.returncode == 0, built.stderr
    assert (target / "acme_steps-1.2.0.dist-info" / "entry_points.txt").is_file()
    return target


def test_a_pip_installed_plugin_appears_in_the_catalog(
    cli: Callable[..., Cli], acme_site: Path
) -> None:
    env = {"PYTHONPATH": str(acme_site), "STEPRUN_DISABLE_PLUGIN_AUTOLOAD": None}
    listed = cli("steps", env=env)
    assert listed.code == 0, listed.stderr
    assert any(line.split()[:2] == ["acme.shout", "1.2.0"] for line in listed.stdout.splitlines())
    as_json = json.loads(cli("steps", "--json", env=env).stdout)
    assert {"type": "acme.shout", "version": "1.2.0", "title": "Shout", "effect": "none"} in (
        as_json
    )


def test_a_pip_installed_plugin_runs_its_step(
    cli: Callable[..., Cli], write_flow: Callable[..., Path], acme_site: Path
) -> None:
    write_flow(ACME_FLOW)
    env = {"PYTHONPATH": str(acme_site), "STEPRUN_DISABLE_PLUGIN_AUTOLOAD": None}
    result = cli("run", "flow.yaml", "--input", "q=is it loud?", env=env)
    assert result.code == 0, result.stderr
    assert json.loads(result.stdout) == {"shout": {"answer": "IS IT LOUD?"}}
    assert "shout info  shouting" in result.stderr


def test_disabling_autoload_hides_entry_point_plugins(
    cli: Callable[..., Cli], write_flow: Callable[..., Path], acme_site: Path
) -> None:
    write_flow(ACME_FLOW)
    env = {"PYTHONPATH": str(acme_site), "STEPRUN_DISABLE_PLUGIN_AUTOLOAD": "1"}
    assert "acme.shout" not in cli("steps", env=env).stdout
    result = cli("run", "flow.yaml", "--input", "q=x", env=env)
    assert result.code == 2
    assert "unknown step type 'acme.shout'" in result.stderr


def test_a_plugin_that_fails_to_import_is_named(cli: Callable[..., Cli], tmp_path: Path) -> None:
    site = tmp_path / "site"
    install_entry_point(
        site,
        "broken_steps",
        {"broken_steps": "import acme_internal_that_is_not_installed\n"},
        {"broken": "broken_steps"},
    )
    result = cli("steps", env={"PYTHONPATH": str(site), "STEPRUN_DISABLE_PLUGIN_AUTOLOAD": None})
    assert result.code == 2
    assert result.stdout == ""
    assert "plugin 'broken' (from broken_steps 0.1.0) failed to load from entry point " in (
        result.stderr
    )
    assert "ModuleNotFoundError: No module named 'acme_internal_that_is_not_installed'" in (
        result.stderr
    )
    assert "STEPRUN_DISABLE_PLUGIN_AUTOLOAD=1" in result.stderr


def test_an_entry_point_plugin_that_redefines_a_builtin_type_exits_2(
    cli: Callable[..., Cli], tmp_path: Path
) -> None:
    site = tmp_path / "site"
    source = ACME_MODULE.replace('"acme.shout"', '"core.set"')
    install_entry_point(site, "dup_steps", {"dup_steps": source}, {"dup": "dup_steps"})
    result = cli("steps", env={"PYTHONPATH": str(site), "STEPRUN_DISABLE_PLUGIN_AUTOLOAD": None})
    assert result.code == 2
    assert (
        "step type 'core.set' is provided twice, by plugin 'core' and by plugin 'dup'; "
        "uninstall one of them"
    ) in result.stderr


def plugin(name: str, returns: Any) -> types.ModuleType:
    """A plugin module whose hook returns ``returns``."""
    module = types.ModuleType(name)

    @hookimpl
    def steprun_step_types() -> Any:
        return returns

    module.steprun_step_types = steprun_step_types  # type: ignore[attr-defined]
    return module


async def _noop(config: dict[str, Any], context: Any) -> Any:
    return None


def shout(type_name: str = "acme.shout", **overrides: Any) -> StepType:
    fields: dict[str, Any] = {
        "type": type_name,
        "title": "Shout",
        "version": "1.0.0",
        "run": _noop,
        "schema": {"type": "object"},
    }
    return StepType(**(fields | overrides))


def test_two_plugins_providing_the_same_type_are_both_named() -> None:
    with pytest.raises(PluginError) as caught:
        make_runtime(plugins=[plugin("acme_one", [shout()]), plugin("acme_two", [shout()])])
    assert str(caught.value) == (
        "step type 'acme.shout' is provided twice, by plugin 'acme_one' and by plugin "
        "'acme_two'; uninstall one of them"
    )


@pytest.mark.parametrize(
    ("returns", "words"),
    [
        ({"type": "acme.shout"}, "must return a list of StepType, returned dict"),
        (None, "must return a list of StepType, returned NoneType"),
        (["acme.shout"], "returned 'acme.shout', which is not a steprun.runtime.StepType"),
    ],
)
def test_a_hook_returning_something_else_names_the_plugin_and_the_hook(
    returns: Any, words: str
) -> None:
    with pytest.raises(PluginError) as caught:
        make_runtime(plugins=[plugin("acme_wrong", returns)])
    assert str(caught.value).startswith("plugin 'acme_wrong': hook steprun_step_types ")
    assert words in str(caught.value)


@pytest.mark.parametrize(
    ("step_type", "words"),
    [
        (shout("Shout"), "type 'Shout' is not of the form 'pack.name'"),
        (shout(version="1.0"), "version '1.0' is not semver"),
        (shout(title=" "), "title is empty"),
        (shout(run="not callable"), "run is not callable"),
        (shout(effect="sometimes"), "effect 'sometimes' is not one of"),
    ],
)
def test_a_bad_step_type_declaration_is_refused(step_type: StepType, words: str) -> None:
    with pytest.raises(PluginError, match="plugin 'acme_bad': step type ") as caught:
        make_runtime(plugins=[plugin("acme_bad", [step_type])])
    assert words in str(caught.value)


def test_a_hook_that_raises_names_the_plugin() -> None:
    module = types.ModuleType("acme_raises")

    @hookimpl
    def steprun_step_types() -> Any:
        raise KeyError("config")

    module.steprun_step_types = steprun_step_types  # type: ignore[attr-defined]
    with pytest.raises(PluginError, match="plugin 'acme_raises': hook steprun_step_types raised"):
        make_runtime(plugins=[module])


def test_a_step_type_without_any_schema_is_refused_when_used(
    write_flow: Callable[..., Path],
) -> None:
    runtime = make_runtime(plugins=[plugin("acme_noschema", [shout(schema=None)])])
    with pytest.raises(PluginError, match="declares no schema"):
        runtime.load(write_flow("flow: f\nsteps:\n  - {id: a, type: acme.shout}\n"))


def test_built_in_steps_register_through_the_same_hook() -> None:
    runtime = make_runtime(plugins=[])
    listed = list(runtime.step_types)  # listing the catalog registers every built-in pack
    assert any(name.startswith("openai.") for name in listed)
    impls = runtime.plugin_manager.hook.steprun_step_types.get_hookimpls()
    owners = {impl.plugin_name for impl in impls}
    assert {name.rsplit(".", 1)[-1] for name in DEFAULT_PLUGINS} <= owners
    assert "core.set" in runtime.step_types
    assert runtime.plugin_manager.get_plugin("core").__name__ == "steprun.steps.core"


def test_a_plugin_object_adds_its_types_to_one_runtime_only(
    write_flow: Callable[..., Path],
) -> None:
    with_acme = make_runtime(plugins=[plugin("acme_local", [shout("acme.only_here")])])
    without = make_runtime(plugins=[])
    assert "acme.only_here" in with_acme.step_types
    assert "acme.only_here" not in without.step_types
    path = write_flow("flow: f\nsteps:\n  - {id: a, type: acme.only_here}\n")
    assert run_flow(with_acme, path).status == "succeeded"
    assert "unknown step type 'acme.only_here'" in str(without.validate(path)[0])
