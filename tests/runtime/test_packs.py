"""Built-in packs imported on first use: a flow of core steps starts without them."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from steprun.runtime import PluginError, StepType, hookimpl
from steprun.runtime.packs import LAZY_PACKS, PROVIDER_PACKS
from steprun.runtime.plugins import collect_providers, collect_step_types, make_plugin_manager
from tests.runtime.conftest import make_runtime

ROOT = Path(__file__).resolve().parents[2]
# What a flow of core steps with simple templates must not load: the OpenAI and eval
# packs, what they need, and Jinja.
HEAVY = ("httpx", "pydantic", "jinja2", "steprun.steps.openai", "steprun.steps.eval", "openai")


def imported_by(args: list[str], tmp_path: Path) -> set[str]:
    """The modules a `steprun` command has imported when it exits (``sys.modules``)."""
    listing = tmp_path / "modules.txt"
    code = (
        "import atexit, sys\n"
        f"atexit.register(lambda: open({str(listing)!r}, 'w').write('\\n'.join(sys.modules)))\n"
        "from steprun.runtime.cli import main\n"
        "main()\n"
    )
    env = {**os.environ, "STEPRUN_STATE": str(tmp_path / "runs.db")}
    result = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return set(listing.read_text().splitlines())


def test_running_hello_imports_no_http_client_pydantic_jinja_or_step_pack(
    tmp_path: Path,
) -> None:
    modules = imported_by(["run", "-q", "examples/hello.yaml"], tmp_path)
    assert "steprun.steps.core" in modules  # the run happened, and was seen
    assert sorted(m for m in modules if m.split(".")[0] in HEAVY or m.startswith(HEAVY)) == []
    # No installed distribution declares a steprun plugin here: found without it.
    assert "importlib.metadata" not in modules


def test_listing_the_step_types_imports_every_pack(tmp_path: Path) -> None:
    modules = imported_by(["steps"], tmp_path)
    assert set(LAZY_PACKS) <= modules


@pytest.mark.parametrize("module", sorted(LAZY_PACKS))
def test_each_deferred_pack_keeps_to_its_declared_prefix(module: str) -> None:
    pm = make_plugin_manager(builtins=(module,), autoload=False)
    names = list(collect_step_types(pm))
    assert names
    assert [n for n in names if not n.startswith(LAZY_PACKS[module])] == []
    # A provider lookup imports only the packs named as declaring providers.
    assert bool(collect_providers(pm)) == (module in PROVIDER_PACKS)
    assert importlib.import_module(module).__name__ == module


def _duplicate(type_name: str) -> Any:
    async def run(config: dict[str, Any], context: Any) -> Any:
        return None

    class Dup:
        @hookimpl
        def steprun_step_types(self) -> list[StepType]:
            return [StepType(type=type_name, title="Dup", version="1.0.0", run=run, schema={})]

    return Dup()


def test_a_plugin_redefining_a_deferred_type_is_named_when_the_type_is_used(
    tmp_path: Path,
) -> None:
    runtime = make_runtime(plugins=[_duplicate("openai.upload_file")])
    flow = tmp_path / "f.yaml"
    flow.write_text("flow: f\nsteps:\n  - {id: a, type: openai.upload_file, config: {}}\n")
    with pytest.raises(PluginError, match=r"'openai\.upload_file' is provided twice"):
        runtime.load(flow)


def test_an_authorization_finds_the_providers_of_a_deferred_pack(tmp_path: Path) -> None:
    runtime = make_runtime()
    flow = tmp_path / "f.yaml"
    flow.write_text(
        "flow: f\nauthorization: mine\nauthorizations:\n"
        "  mine: {provider: local, timeout: 30s}\n"
        "steps:\n  - {id: a, type: core.set, config: {value: 1}}\n"
    )
    assert runtime.load(flow).authorizations["mine"]["provider"] == "local"
    flow.write_text(flow.read_text().replace("timeout: 30s", "timeout: soon"))
    problems = runtime.validate(flow)
    assert [p.path for p in problems] == ["authorizations.mine.timeout"]
