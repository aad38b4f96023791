"""The run store on a disk that refuses it: a real small file system (tmpfs, mounted for
the test, which needs root), full or read-only, and the real CLI in a child process.

Issue #8: on a nearly full disk the store's writer thread died with a traceback and
`steprun run` hung; a disk that filled mid-run exited 2 saying the store was damaged.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.runtime.durable_support import STEPRUN, child_env

REPO = Path(__file__).resolve().parents[2]
HELLO = REPO / "examples" / "hello.yaml"
# Three steps of 150 KB merge fields each: the third does not fit on a 400 KB disk.
BIG = """\
flow: big
version: 1
steps:
  - id: a
    type: core.set
    config: {values: {text: "{{ 'a' * 150000 }}"}}
  - id: b
    type: core.set
    config: {values: {text: "{{ 'b' * 150000 }}"}}
  - id: c
    type: core.set
    config: {values: {text: "{{ 'c' * 150000 }}"}}
"""
# A hung command is the bug this file pins; no test waits on a disk longer than this.
HANG = 60


class SmallDisk:
    def __init__(self, mountpoint: Path) -> None:
        self.path = mountpoint

    def mount(self, options: str) -> None:
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(self.path)], check=True)

    def remount(self, options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(self.path)], check=True)


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[SmallDisk]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mountpoint = tmp_path / "disk"
    mountpoint.mkdir()
    found = SmallDisk(mountpoint)
    try:
        found.mount("size=4m")
    except (subprocess.CalledProcessError, OSError):
        pytest.skip("this machine does not allow mounting a tmpfs")
    yield found
    subprocess.run(["umount", str(mountpoint)], check=False)


def steprun(state: Path, *args: str | Path) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(STEPRUN), *map(str, args)],
        capture_output=True,
        text=True,
        env=child_env(state),
        timeout=HANG,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


def error_line(stderr: str) -> str:
    [line] = [x for x in stderr.splitlines() if x.startswith("steprun: error:")]
    return line


def test_a_store_on_a_full_disk_ends_the_command_with_exit_1_naming_the_cause(
    disk: SmallDisk,
) -> None:
    disk.remount("size=60k")
    state = disk.path / "runs.db"
    done = steprun(state, "run", HELLO)
    assert done.returncode == 1, done.stderr
    line = error_line(done.stderr)
    assert f"the run store {state}: the disk is full" in line
    assert "damaged" not in line


def test_a_disk_that_fills_mid_run_stops_it_and_resume_finishes_it_once_there_is_room(
    disk: SmallDisk, tmp_path: Path
) -> None:
    disk.remount("size=400k")
    state = disk.path / "runs.db"
    flow = tmp_path / "big.yaml"
    flow.write_text(BIG, encoding="utf-8")
    done = steprun(state, "run", flow)
    assert done.returncode == 1, done.stderr
    line = error_line(done.stderr)
    assert f"cannot write the run store {state}: the disk is full" in line
    assert "steprun resume" in line

    disk.remount("size=4m")
    [run] = json.loads(steprun(state, "runs", "--json").stdout)
    assert run["status"] == "interrupted"  # its process is gone
    resumed = steprun(state, "resume", run["id"])
    assert resumed.returncode == 0, resumed.stderr
    fields = json.loads(resumed.stdout)
    assert {name: len(value["text"]) for name, value in fields.items()} == {
        "a": 150000,
        "b": 150000,
        "c": 150000,
    }


def test_a_store_on_a_read_only_disk_says_read_only_not_damaged(disk: SmallDisk) -> None:
    state = disk.path / "runs.db"
    assert steprun(state, "run", HELLO).returncode == 0
    disk.remount("ro")
    done = steprun(state, "run", HELLO)
    assert done.returncode == 1, done.stderr
    line = error_line(done.stderr)
    assert f"the run store {state}: its file system is read-only" in line
    assert "damaged" not in line
