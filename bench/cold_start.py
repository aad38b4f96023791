"""Cold start: `steprun run examples/hello.yaml` beside `python -c "import httpx"` (issue 14).

    python bench/cold_start.py [--repeat 15]

Each command is a fresh interpreter, started --repeat times, the commands interleaved so
that the machine's load falls on all of them alike; the median wall time of each is
printed, and steprun's as a multiple of the floor (the goal: at most 2x):
  - floor: ``python -c "import httpx"``, the price of any Python tool that speaks HTTP;
  - ``python -c pass``, the interpreter alone;
  - ``steprun --help``;
  - ``steprun run examples/hello.yaml`` (core steps only, no network), its run store in a
    temporary folder created by a first run that is not counted.
Nothing is asserted: the machines here are shared and noisy.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(command: list[str], env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=env, check=True, stdout=subprocess.DEVNULL, cwd=ROOT)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    steprun = [sys.executable, "-c", "from steprun.runtime.cli import main; main()"]
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "STEPRUN_STATE": str(Path(tmp) / "runs.db")}
        commands = {
            'python -c "import httpx" (floor)': [sys.executable, "-c", "import httpx"],
            "python -c pass": [sys.executable, "-c", "pass"],
            "steprun --help": [*steprun, "--help"],
            "steprun run examples/hello.yaml": [*steprun, "run", "-q", "examples/hello.yaml"],
        }
        for command in commands.values():  # warm the OS caches and create the run store
            timed(command, env)
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeat):
            for name, command in commands.items():
                times[name].append(timed(command, env))
    floor = statistics.median(next(iter(times.values())))
    for name, found in times.items():
        median = statistics.median(found)
        print(f"{name:<36} median {median * 1000:6.0f} ms   {median / floor:4.2f}x the floor")


if __name__ == "__main__":
    main()
