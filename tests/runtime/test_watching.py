"""Waits are never silent, and a run's story can be read back: heartbeats and `steprun logs`.

The real CLI in subprocesses, on the embedded backend (``provider: local``), in a pipe and
on a pseudo-terminal.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runtime.durable_support import (
    EXAMPLE,
    EXAMPLE_DATA,
    EXAMPLE_WAIT,
    STEPRUN,
    Workspace,
    reap_children,
    wait_for,
)

pytestmark = pytest.mark.slow


@pytest.fixture(autouse=True)
def _reap() -> Iterator[None]:
    yield
    reap_children()


def local_example(root: Path, *, job_seconds: float, wait: str) -> Path:
    """The fine-tuning example on the in-process backend, its wait step configured."""
    text = EXAMPLE.read_text(encoding="utf-8")
    assert EXAMPLE_WAIT in text and "job_seconds: 4" in text
    text = text.replace(EXAMPLE_WAIT, EXAMPLE_WAIT.removesuffix("}") + f", {wait}}}")
    text = text.replace("job_seconds: 4", f"job_seconds: {job_seconds:g}")
    for name in ("support", "support_validation"):
        text = text.replace(f": data/{name}.jsonl", f": {EXAMPLE_DATA / name}.jsonl")
    root.mkdir(parents=True, exist_ok=True)
    flow = root / "fine_tune.yaml"
    flow.write_text(text, encoding="utf-8")
    return flow


def wait_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("    wait info ")]


def test_a_wait_says_where_it_stands_at_every_heartbeat_in_a_pipe(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    # Polls 4 s apart, a job of 6 s: without heartbeats, seconds of silence between lines.
    flow = local_example(
        tmp_path, job_seconds=6, wait="poll_interval: 4s, max_poll_interval: 4s, heartbeat: 1s"
    )
    done = ws.cli("run", flow)
    assert done.code == 0, done.stderr[-3000:]
    lines = wait_lines(done.stderr)
    assert len(lines) >= 5, lines  # a line a second, not one per status change
    assert all(" waited" in line for line in lines)
    assert any("running" in line and " · ETA " in line for line in lines), lines
    assert any("train_loss" in line for line in lines), lines
    assert "=null" not in done.stderr and "trained_tokens=" not in done.stderr
    assert "\x1b[" not in done.stderr  # a pipe gets plain lines


def test_a_wait_on_a_terminal_is_one_updating_line(tmp_path: Path) -> None:
    flow = local_example(tmp_path, job_seconds=3, wait="heartbeat: 1s")
    env = {k: v for k, v in os.environ.items() if not k.startswith("STEPRUN_")}
    env |= {"STEPRUN_STATE": str(tmp_path / "runs.db"), "TERM": "xterm", "COLUMNS": "200"}
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [str(STEPRUN), "run", str(flow)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=follower,
        env=env,
    )
    os.close(follower)
    seen = b""
    deadline = time.time() + 120
    while time.time() < deadline:
        ready, _, _ = select.select([leader], [], [], 1)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:
                break  # the child closed the terminal
            if not chunk:
                break
            seen += chunk
        elif process.poll() is not None:
            break
    os.close(leader)
    assert process.wait(30) == 0, seen.decode(errors="replace")[-3000:]
    text = seen.decode(errors="replace")
    # rich redraws the line in place (cursor up / erase line) instead of adding lines...
    assert "\x1b[2K" in text or "\x1b[1A" in text, text[-2000:]
    # ...and the last state stays on screen once the step is done.
    assert "wait info " in text and "succeeded" in text and "Traceback" not in text


def test_logs_shows_a_finished_run_and_follows_a_live_one(tmp_path: Path) -> None:
    ws = Workspace(tmp_path)
    flow = local_example(tmp_path, job_seconds=4, wait="heartbeat: 1s")
    child = ws.spawn("run", flow)
    run_id = wait_for(child.run_id, "the run id", timeout=60)
    wait_for(lambda: ws.step_started("wait"), "the wait step", timeout=60)
    followed = ws.cli("logs", run_id, "--follow", timeout=120)  # returns when the run ends
    assert child.wait(60) == 0, child.stderr()
    assert followed.code == 0, followed.stderr
    out = followed.stdout
    assert out.startswith(f"run {run_id} of flow 'support-bot-fine-tune'\n")
    assert "  ✔ check succeeded in " in out and "  ✔ answer succeeded in " in out
    assert len(wait_lines(out)) >= 3  # the wait's lines, as they happened
    assert followed.stderr.strip() == f"steprun: run {run_id} succeeded"
    # After the fact: the same story, from the store alone.
    again = ws.cli("logs", run_id)
    assert again.code == 0
    assert "  ✔ answer succeeded in " in again.stdout
    assert wait_lines(again.stdout) == wait_lines(out)
    assert json.loads(child.stdout())["wait"]["status"] == "succeeded"
