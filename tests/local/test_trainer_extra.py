"""Without the ``steprun[train]`` extra, a flow that asks for the real trainer fails
validation with one sentence that gives the pip command."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

FLOW = """\
flow: needs-the-extra
authorizations:
  local:
    provider: local
    trainer: transformers
authorization: local
steps:
  - {id: hello, type: core.log, config: {message: hi}}
"""
# torch and trl are not ours: the child process runs as if they were not installed.
WITHOUT_THE_EXTRA = (
    "import sys\n"
    "sys.modules['torch'] = sys.modules['trl'] = None\n"
    "from steprun.runtime.cli import main\n"
    "sys.argv = ['steprun', 'validate', sys.argv[1]]\n"
    "main()\n"
)


def test_a_flow_asking_for_the_real_trainer_without_the_extra_fails_validation(
    tmp_path: Path,
) -> None:
    flow = tmp_path / "flow.yaml"
    flow.write_text(FLOW)
    done = subprocess.run(
        [sys.executable, "-c", WITHOUT_THE_EXTRA, str(flow)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert f"{flow}:5" in done.stderr  # the line of `trainer: transformers`
    # Whatever else is missing here (all of it, without the extra), torch and trl are named.
    assert re.search(r"torch, .*trl", done.stderr), done.stderr
    assert "pip install 'steprun[train]'" in done.stderr
    assert "Traceback" not in done.stderr
