"""Validating a large flow, beside reading its YAML (issue 8, item 7).

    python bench/validation_scale.py [--steps 13000] [--repeat 3]

The flow: ``--steps`` ``core.set`` steps (about 64 bytes each, like the issue's 836 kB
flow), every hundredth reading the previous step's merge field through a template.
Compiling a template costs about a millisecond (Jinja's code generation), which issue 14
takes on; here the shape of the validation is measured.
Printed, best of ``--repeat``, each in the same process and run:
  - floor: ``yaml.load`` of the same text with libyaml (``CSafeLoader``), what reading the
    file costs at the least;
  - ``Runtime.load``: everything `steprun validate` does (YAML with line numbers, the flow
    schema, each step's config schema, template syntax, ids, exits and the dataflow);
  - both again at half the steps: the ratio of the two is about 2 when validation grows
    linearly with the number of steps (it was about 4 before issue 8).
Also the peak memory of ``Runtime.load`` (tracemalloc). Nothing is asserted: the machines
here are shared and noisy; the test suite pins the growth by memory instead.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from collections.abc import Callable

import yaml

from steprun.runtime import Runtime


def make_flow(steps: int) -> str:
    lines = ["flow: scale", "steps:", "  - {id: s0, type: core.set, config: {value: 0}}"]
    for i in range(1, steps):
        value = f"'{{{{ s{i - 1} }}}}'" if i % 100 == 0 else f"[{i}, step {i}]"
        lines.append(f"  - {{id: s{i}, type: core.set, config: {{value: {value}}}}}")
    return "\n".join(lines) + "\n"


def best(repeat: int, work: Callable[[Runtime], object]) -> float:
    times = []
    for _ in range(repeat):
        runtime = Runtime(autoload=False)  # fresh: templates are compiled once per runtime
        started = time.perf_counter()
        work(runtime)
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=13_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    results = {}
    for steps in (args.steps // 2, args.steps):
        text = make_flow(steps)
        floor = best(args.repeat, lambda _, text=text: yaml.load(text, Loader=yaml.CSafeLoader))
        load = best(args.repeat, lambda runtime, text=text: runtime.load(text))
        results[steps] = load
        print(
            f"{steps:>6} steps ({len(text) / 1000:.0f} kB): floor (libyaml) {floor:6.2f} s   "
            f"Runtime.load {load:6.2f} s   ({load / floor:.1f}x the floor)"
        )
    half, full = results[args.steps // 2], results[args.steps]
    print(f"growth from {args.steps // 2} to {args.steps} steps: {full / half:.2f}x (linear: 2)")
    runtime, text = Runtime(autoload=False), make_flow(args.steps)
    tracemalloc.start()
    runtime.load(text)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"peak memory of Runtime.load at {args.steps} steps: {peak / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
