"""Fixtures for the runtime's tests.

Each test gets a fresh :class:`Runtime` (its own plugin manager, catalog and templates)
with the small step types of :mod:`tests.runtime.steptypes`, a helper that writes flow
files to ``tmp_path``, and a helper that runs the real ``steprun`` console script in a
subprocess: exit codes, stdout/stderr and "never a traceback" can only be seen there.
"""

from __future__ import annotations

import asyncio
import copy
import io
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from steprun.runtime import RunResult, Runtime, hookimpl
from tests.runtime import steptypes
from tests.runtime.stores import KINDS, Postgres

# `python -m steprun...` has no __main__; the console script sits next to the interpreter.
STEPRUN = Path(sys.executable).parent / "steprun"


def dedent(text: str) -> str:
    """Flow text as written in a test, with line 1 being its first line."""
    return textwrap.dedent(text).lstrip("\n")


def line_of(text: str | Path, snippet: str) -> int:
    """The 1-based line of the one line of ``text`` that contains ``snippet``."""
    if isinstance(text, Path):
        text = text.read_text(encoding="utf-8")
    found = [n for n, line in enumerate(text.splitlines(), start=1) if snippet in line]
    assert len(found) == 1, f"{snippet!r} is on lines {found}; make it unique"
    return found[0]


@dataclass
class Cli:
    code: int
    stdout: str
    stderr: str


class ReportCollector:
    """A platform's reporting plugin: keeps every report it is given."""

    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []

    @hookimpl
    def steprun_report(self, report: dict[str, Any]) -> None:
        self.reports.append(copy.deepcopy(report))


def make_runtime(**options: Any) -> Runtime:
    """A runtime with the test step types and no entry-point plugins (hermetic)."""
    options.setdefault("plugins", [steptypes])
    options.setdefault("autoload", False)
    return Runtime(**options)


def run_flow(runtime: Runtime, source: Any, **options: Any) -> RunResult:
    """Run a flow to its end in a fresh event loop (closing the runtime's HTTP client)."""
    options.setdefault("console", io.StringIO())
    return runtime.run_sync(source, **options)


def run_step(runtime: Runtime, step_type: str, config: Mapping[str, Any], **options: Any) -> Any:
    async def main() -> RunResult:
        try:
            return await runtime.run_step(step_type, config, **options)
        finally:
            await runtime.aclose()

    return asyncio.run(main())


def install_entry_point(
    site: Path, dist: str, modules: Mapping[str, str], entry_points: Mapping[str, str]
) -> None:
    """Install modules and a distribution with ``steprun.steps`` entry points into ``site``.

    What pip leaves behind, without pip: importlib.metadata finds the .dist-info folder on
    sys.path (PYTHONPATH=site), exactly as it finds an installed package's.
    """
    site.mkdir(parents=True, exist_ok=True)
    for name, source in modules.items():
        (site / f"{name}.py").write_text(source, encoding="utf-8")
    info = site / f"{dist}-0.1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1.0\n", encoding="utf-8"
    )
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text("[steprun.steps]\n" + lines, encoding="utf-8")


@pytest.fixture
def runtime() -> Iterator[Runtime]:
    yield make_runtime()


@pytest.fixture
def console() -> io.StringIO:
    return io.StringIO()


@pytest.fixture
def write_flow(tmp_path: Path) -> Callable[..., Path]:
    def write(text: str, name: str = "flow.yaml") -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(dedent(text), encoding="utf-8")
        return path

    return write


@pytest.fixture
def cli(tmp_path: Path) -> Callable[..., Cli]:
    """Run ``steprun ARGS`` in ``tmp_path``; every call is checked for a Python traceback.

    Entry-point plugins are off unless ``env`` says otherwise (a value of None removes a
    variable); the run store lives in ``tmp_path``, never in the user's home.
    """

    def run(
        *args: str | Path,
        env: Mapping[str, str | None] | None = None,
        traceback_ok: bool = False,
        timeout: float = 60,
    ) -> Cli:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("STEPRUN_")}
        environ["STEPRUN_STATE"] = str(tmp_path / "state" / "runs.db")
        environ["STEPRUN_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        for key, value in (env or {}).items():
            if value is None:
                environ.pop(key, None)
            else:
                environ[key] = value
        proc = subprocess.run(
            [str(STEPRUN), *map(str, args)],
            capture_output=True,
            text=True,
            env=environ,
            cwd=tmp_path,
            timeout=timeout,
        )
        if not traceback_ok:
            assert "Traceback" not in proc.stderr, proc.stderr
            assert "Traceback" not in proc.stdout, proc.stdout
        return Cli(proc.returncode, proc.stdout, proc.stderr)

    return run


@pytest.fixture
def test_steps_env(tmp_path: Path) -> dict[str, str | None]:
    """Environment for a CLI subprocess that loads the test step types as an entry point."""
    site = tmp_path / "site-test-steps"
    install_entry_point(
        site,
        "steprun_test_steps",
        {"steprun_test_steps": Path(steptypes.__file__).read_text(encoding="utf-8")},
        {"test": "steprun_test_steps"},
    )
    return {"PYTHONPATH": str(site), "STEPRUN_DISABLE_PLUGIN_AUTOLOAD": None}


# -- the run stores the store and durable tests run against -------------------------------


@pytest.fixture(params=KINDS)
def store_kind(request: pytest.FixtureRequest) -> str:
    kind: str = request.param
    return kind


@pytest.fixture
def new_state(
    store_kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> Callable[[str], str | Path]:
    """Makes fresh, empty stores of this test's kind: ``new_state("name")``."""

    # Taken now, not inside make(): tests call it from their worker threads.
    postgres: Postgres | None = None
    if store_kind == "postgres":
        postgres = request.getfixturevalue("postgres")

    def make(name: str = "state") -> str | Path:
        if postgres is None:
            return tmp_path / name / "state" / "runs.db"
        return postgres.fresh()

    return make


@pytest.fixture
def state(new_state: Callable[[str], str | Path]) -> str | Path:
    """A fresh store of each kind: an SQLite file's path, or a PostgreSQL URL."""
    return new_state("state")


@pytest.fixture
def postgres_store(postgres: Postgres) -> Iterator[Any]:
    from steprun.runtime.store import open_store

    found = open_store(postgres.fresh())
    yield found
    found.close()
