"""`steprun serve-local` as a user starts it."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

STEPRUN = Path(sys.executable).parent / "steprun"


def test_a_busy_port_is_one_clear_error_with_exit_2() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = subprocess.run(
            [str(STEPRUN), "serve-local", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in done.stderr
    assert "--port 0 for a free one" in done.stderr
    assert "Traceback" not in done.stderr
