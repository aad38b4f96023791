"""Validating large flows: time per step as flows grow, with and without Jinja (issues 8, 14).

    python bench/validation_scale.py [--sizes 500,1000,2000,4000] [--repeat 3]

The flow: ``core.set`` steps, each reading the previous step's merge field through two
templates of its own (``{{ sN.n + 1 }}`` and ``step {{ sN.n }} of {{ inputs.total }}``):
every template source is distinct, as in a generated flow. Printed for each size, best of
``--repeat``, each in the same process and run:
  - floor: ``yaml.load`` of the same text with libyaml (``CSafeLoader``), what reading the
    file costs at the least;
  - ``Runtime.load``: everything `steprun validate` does (YAML with line numbers, the flow
    schema, each step's config schema, template syntax, ids, exits and the dataflow), with
    simple templates read without Jinja;
  - the same with every template compiled by Jinja (``Templates.simple = False``), the
    path before issue 14, and that path again when another runtime of the process compiled
    the same templates before (compiled templates are kept once per process);
  - microseconds per step of both: flat when validation grows linearly with the flow.
Also the peak memory of ``Runtime.load`` at the largest size (tracemalloc). Nothing is
asserted: the machines here are shared and noisy.
"""

from __future__ import annotations

import argparse
import time
import tracemalloc
from collections.abc import Callable

import yaml

from steprun.runtime import Runtime
from steprun.runtime.templates import forget_compiled


def make_flow(steps: int) -> str:
    lines = [
        "flow: scale",
        f"inputs: {{total: {steps}}}",
        "steps:",
        "  - {id: s0, type: core.set, config: {values: {n: 0, label: start}}}",
    ]
    for i in range(1, steps):
        n = f"'{{{{ s{i - 1}.n + 1 }}}}'"
        label = f"'step {{{{ s{i - 1}.n }}}} of {{{{ inputs.total }}}}'"
        lines.append(
            f"  - {{id: s{i}, type: core.set, config: {{values: {{n: {n}, label: {label}}}}}}}"
        )
    return "\n".join(lines) + "\n"


def best(
    repeat: int, work: Callable[[Runtime], object], *, simple: bool = True, cold: bool = True
) -> float:
    times = []
    for _ in range(repeat):
        runtime = Runtime(autoload=False)
        runtime.templates.simple = simple
        if cold:
            forget_compiled()  # compiled templates are kept per process: start without
        started = time.perf_counter()
        work(runtime)
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="500,1000,2000,4000")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    print(
        f"{'steps':>6} {'floor':>8} {'load':>8} {'per step':>9} {'jinja':>8} {'per step':>9}  gain"
    )
    for steps in sizes:
        text = make_flow(steps)
        floor = best(args.repeat, lambda _, text=text: yaml.load(text, Loader=yaml.CSafeLoader))
        load = best(args.repeat, lambda runtime, text=text: runtime.load(text))
        jinja = best(args.repeat, lambda runtime, text=text: runtime.load(text), simple=False)
        warm = best(
            args.repeat, lambda runtime, text=text: runtime.load(text), simple=False, cold=False
        )
        print(
            f"{steps:>6} {floor:7.2f}s {load:7.2f}s {load / steps * 1e6:7.0f}µs "
            f"{jinja:7.2f}s {jinja / steps * 1e6:7.0f}µs  {jinja / load:4.1f}x"
            f"   (load {load / floor:.1f}x the floor; Jinja compiled before {warm:.2f}s)"
        )
    runtime, text = Runtime(autoload=False), make_flow(sizes[-1])
    tracemalloc.start()
    runtime.load(text)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    print(f"peak memory of Runtime.load at {sizes[-1]} steps: {peak / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
