"""Guards: what must not drift. Every module imports, `__all__` tells the truth, hook
specifications keep their argument names, and the layers point one way (the CLI uses the
engine, the engine never imports the CLI or the step packs, steps never reach into the
runner).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import subprocess
import sys
import tomllib
import types
from pathlib import Path

import pluggy
import pytest

import steprun.runtime
import steprun.steps
from steprun.runtime import hookspecs
from steprun.runtime.markers import PROJECT_NAME

PACKAGES = {"steprun.runtime": steprun.runtime, "steprun.steps": steprun.steps}
# runtime/airflow is its own distribution package, steprun.airflow (see pyproject), and
# imports only where Airflow is installed (the `airflow` extra).
ELSEWHERE = {"steprun.runtime.airflow"}
try:
    import airflow  # noqa: F401

    import steprun.airflow

    PACKAGES["steprun.airflow"] = steprun.airflow
except ImportError:
    pass


def _modules() -> dict[str, Path]:
    """Every module of the two packages by dotted name, found on disk (nothing imported)."""
    found: dict[str, Path] = {}
    for name, package in PACKAGES.items():
        root = Path(package.__path__[0])
        for path in sorted(root.rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            if not all(p.isidentifier() for p in parts):
                continue
            if parts[-1] == "__init__":
                parts = parts[:-1]
            elif not (path.parent / "__init__.py").is_file():
                continue  # a stray file in a folder that is not a package
            dotted = ".".join((name, *parts))
            if not any(dotted == e or dotted.startswith(e + ".") for e in ELSEWHERE):
                found[dotted] = path
    return found


MODULES = _modules()
PACKAGE_NAMES = sorted(n for n, p in MODULES.items() if p.name == "__init__.py")


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_module_imports(name: str) -> None:
    module = importlib.import_module(name)
    assert module.__name__ == name


@pytest.mark.parametrize("name", sorted(MODULES))
def test_every_name_in_all_exists_once(name: str) -> None:
    module = importlib.import_module(name)
    listed = getattr(module, "__all__", None)
    if listed is None:
        pytest.skip(f"{name} declares no __all__")
    assert len(listed) == len(set(listed)), f"{name}.__all__ repeats a name"
    missing = [n for n in listed if not hasattr(module, n)]
    assert missing == [], f"{name}.__all__ names what the module does not have"


def _handed_on(package: types.ModuleType) -> list[str]:
    """Public names a package binds that come from itself or its own modules."""
    names = []
    for name, value in vars(package).items():
        if name.startswith("_") or name == "annotations" or isinstance(value, types.ModuleType):
            continue
        if callable(value) and hasattr(value, f"{PROJECT_NAME}_impl"):
            continue  # a pluggy hook implementation: pluggy's interface, not Python API
        origin = getattr(value, "__module__", None)
        if isinstance(origin, str) and not origin.startswith(package.__name__):
            continue  # imported from elsewhere to be used here, not handed on
        names.append(name)
    return names


@pytest.mark.parametrize("name", PACKAGE_NAMES)
def test_each_package_lists_everything_it_hands_on_in_all(name: str) -> None:
    package = importlib.import_module(name)
    listed = getattr(package, "__all__", None)
    assert listed is not None, f"{name} has no __all__"
    unlisted = sorted(set(_handed_on(package)) - set(listed))
    assert unlisted == [], f"{name} binds {unlisted} but does not list them in __all__"


def test_the_runtime_package_hands_on_the_public_api() -> None:
    for name in ("Runtime", "RunResult", "StepType", "StepContext", "StepError", "hookimpl"):
        assert name in steprun.runtime.__all__


def test_hook_specifications_keep_their_argument_names() -> None:
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    specs = {
        name: caller.spec
        for name, caller in vars(pm.hook).items()
        if isinstance(caller, pluggy.HookCaller) and caller.spec is not None
    }
    # A new hook must be pinned here too; an argument is only ever added, never renamed.
    assert {name: spec.argnames for name, spec in specs.items()} == {
        "steprun_step_types": (),
        "steprun_report": ("report",),
        "steprun_providers": (),
    }
    for spec in specs.values():
        assert not spec.opts.get("firstresult"), "results are combined as lists"
        assert spec.function.__doc__, "a hook spec says when it is called and how results combine"
        assert "return" in inspect.get_annotations(spec.function)


def _imports(path: Path, module: str) -> set[str]:
    """Absolute names of every module that ``path`` imports (relative imports resolved)."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
            else:
                base = ""
            target = ".".join(p for p in (base, node.module) if p)
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute | ast.Name)
            and (node.func.attr if isinstance(node.func, ast.Attribute) else node.func.id)
            in ("import_module", "__import__")
            and node.args
            and isinstance(node.args[0], ast.Constant)
            and isinstance(node.args[0].value, str)
        ):
            found.add(node.args[0].value)
    return found


def _crossing(module: str, forbidden: tuple[str, ...]) -> list[str]:
    imported = _imports(MODULES[module], module)
    return sorted(i for i in imported if any(i == f or i.startswith(f + ".") for f in forbidden))


# The surfaces that drive the engine: the CLI and the HTTP step service (and the Airflow
# provider, a package of its own). The engine imports none of them.
SURFACES = ("steprun.runtime.cli", "steprun.runtime.service", "steprun.airflow")


def _is_surface(name: str) -> bool:
    return any(name == s or name.startswith(s + ".") for s in SURFACES)


ENGINE = sorted(n for n in MODULES if n.startswith("steprun.runtime") and not _is_surface(n))
STEPS = sorted(n for n in MODULES if n.startswith("steprun.steps"))


@pytest.mark.parametrize("name", ENGINE)
def test_the_engine_never_imports_a_surface_or_the_step_packs(name: str) -> None:
    # plugins.py names the built-in packs in DEFAULT_PLUGINS, a tuple of strings: the
    # packs register through the hook like any third-party plugin, never by an import.
    assert _crossing(name, (*SURFACES, "steprun.steps")) == []


@pytest.mark.parametrize("name", STEPS)
def test_steps_never_reach_into_the_runner_or_the_cli(name: str) -> None:
    assert _crossing(name, ("steprun.runtime.runner", "steprun.runtime.cli")) == []


def test_importing_the_engine_loads_neither_the_cli_nor_a_step_pack() -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {ENGINE!r}:\n"
        "    importlib.import_module(name)\n"
        "print(sorted(m for m in sys.modules if m.startswith('steprun.steps') "
        "or m.startswith('steprun.runtime.cli')))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"


@pytest.mark.parametrize("name", sorted(PACKAGES))
def test_packages_ship_type_information(name: str) -> None:
    assert (Path(PACKAGES[name].__path__[0]) / "py.typed").is_file()


def test_every_package_folder_is_installed() -> None:
    """pyproject lists the packages one by one (the folders map onto steprun.*): a new
    subpackage missing from that list works in an editable install and is absent from a
    real one, which is what CI and users get."""
    root = Path(__file__).resolve().parents[1]
    setuptools = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = {Path(folder): name for name, folder in setuptools["package-dir"].items()}
    found: set[str] = set()
    for folder, name in folders.items():
        for init in (root / folder).rglob("__init__.py"):
            inner = init.parent.relative_to(root / folder).parts
            # steprun.runtime's folder holds steprun.airflow's; the longest mapping names it.
            if any(
                other != folder
                and other.parts[: len(folder.parts)] == folder.parts
                and init.parent.relative_to(root).parts[: len(other.parts)] == other.parts
                for other in folders
            ):
                continue
            found.add(".".join((name, *inner)))
    missing = sorted(found - set(setuptools["packages"]))
    assert not missing, f"add to [tool.setuptools] packages in pyproject.toml: {missing}"
