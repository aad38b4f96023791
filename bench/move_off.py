"""How long the move-off example takes, offline, with its replacement trained for real.

    python bench/move_off.py [--input n_epochs=3 ...] [--one-thread]

Runs ``steprun run examples/move_off_openai.yaml`` (its own inputs unless ``--input``
says) in a fresh state folder and prints, from the same run: the wall time against the
issue's budget (5 minutes on 2 cores), the CPU seconds of the whole process tree, and
beside them the floor, the work the flow cannot avoid: the training itself (the job's
"started" to "model created" events, exact times from its folder) and the replacement's
generated answers (the ``replayed`` step). What is left is the rest of the flow. CPU
seconds are read from /proc for every process whose command line names the run's folder
(the CLI and the training process, which is not its child); on a shared machine they say
more than the wall time: on 2 idle cores the flow needs about its CPU seconds divided by
the cores it keeps busy.

``--one-thread`` runs it again with ``OMP_NUM_THREADS=1``: on a shared, loaded machine
torch's two intra-op threads wait on each other, and steprun-tiny's small matrices gain
nothing from them. The load average is printed: the machines are shared, so read the
split between floor and rest, not the absolute times. Needs ``steprun[train]``.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
STEPRUN = Path(sys.executable).parent / "steprun"
BUDGET_SECONDS = 300.0


def run_example(inputs: list[str], environ: dict[str, str]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        args = [str(STEPRUN), "run", "examples/move_off_openai.yaml"]
        args += ["--input", f"out_dir={root / 'out'}", "--report", str(root / "report.jsonl")]
        for value in inputs:
            args += ["--input", value]
        env = {**os.environ, **environ, "STEPRUN_STATE": str(root / "runs.db")}
        env.pop("OPENAI_API_KEY", None)
        began = time.perf_counter()
        with CpuOf(str(root)) as cpu:
            done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True)
        wall = time.perf_counter() - began
        if done.returncode != 0:
            sys.exit(f"the example failed:\n{done.stderr[-3000:]}")
        fields = json.loads(done.stdout)
        steps = {
            r["step"]: r["duration_ms"] / 1000
            for r in map(json.loads, (root / "report.jsonl").read_text().splitlines())
            if r.get("kind") == "step" and "duration_ms" in r
        }
        job = fields["job"]["id"]
        events = root / "local-backend.replacement" / "jobs" / job / "events.jsonl"
        exact = [json.loads(line) for line in events.read_text().splitlines()]
        started = next(e["created_at"] for e in exact if e["key"] == "started")
        finished = next(e["created_at"] for e in exact if e["key"] == "model")
        return {
            "wall": wall,
            "cpu": cpu.seconds,
            "train": finished - started,
            "answers": steps.get("replayed", 0.0),
            "steps": int(fields["report"]["loss_points"]),
            "exact_match": fields["compare"]["summary"]["exact_match"],
            "token_f1": fields["compare"]["summary"]["token_f1"],
        }


class CpuOf:
    """CPU seconds of the processes whose command line holds ``mark``, polled from /proc."""

    def __init__(self, mark: str) -> None:
        self.mark = mark.encode()
        self.last: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> CpuOf:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def seconds(self) -> float:
        return sum(self.last.values())

    def _poll(self) -> None:
        tick = os.sysconf("SC_CLK_TCK")
        while not self._stop.wait(0.2):
            for entry in Path("/proc").iterdir():
                if not entry.name.isdigit():
                    continue
                try:
                    if self.mark not in (entry / "cmdline").read_bytes():
                        continue
                    fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                except OSError:  # the process ended meanwhile
                    continue
                # utime and stime: fields 14 and 15 of stat, counted after the command.
                self.last[int(entry.name)] = (int(fields[11]) + int(fields[12])) / tick


def show(title: str, r: dict[str, Any]) -> None:
    floor = r["train"] + r["answers"]
    verdict = "within" if r["wall"] <= BUDGET_SECONDS else "OVER"
    print(f"{title}", flush=True)
    print(
        f"  whole flow       {r['wall']:7.1f} s wall  ({verdict} the {BUDGET_SECONDS:.0f} s "
        f"budget), {r['cpu']:7.1f} CPU s in all processes"
    )
    print(
        f"  floor            {floor:7.1f} s = training {r['train']:.1f} s "
        f"({r['steps']} steps) + the replacement's 11 answers {r['answers']:.1f} s"
    )
    print(f"  rest of the flow {r['wall'] - floor:7.1f} s")
    print(
        f"  scores: exact match {r['exact_match']:.0%}, token F1 {r['token_f1']:.3f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--input", action="append", default=[], help="NAME=VALUE")
    parser.add_argument("--one-thread", action="store_true", help="also OMP_NUM_THREADS=1")
    args = parser.parse_args()
    print(f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at the start")
    show("the example as it is:", run_example(args.input, {}))
    if args.one_thread:
        show("OMP_NUM_THREADS=1:", run_example(args.input, {"OMP_NUM_THREADS": "1"}))
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
