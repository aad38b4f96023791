"""Engine overhead per step: a 1,000-step flow of templated ``core.set`` steps.

    python bench/engine_overhead.py [--steps 1000] [--repeat 5]

Prints microseconds per step that the engine adds on top of the steps' own work, measured
against awaiting the same step functions directly in a bare loop in the same process:
  - run only (the flow already validated), the figure the target speaks of (< 100 µs);
  - validation included (YAML parse, schemas, template analysis, dataflow);
  - with the durable run store (pure steps are held and committed together, at least
    every 250 ms; see runtime/durable/journal.py).
And a loop of pure steps (``core.set`` adding one to a counter, ``core.condition`` going
back to it; issue 14 goal 2: at most 150 µs per step with the durable store), with the
store and without it, beside the same two step functions awaited in a bare loop.
Best of --repeat runs, each on one core. Nothing is asserted: machines here are shared.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from steprun.runtime import Runtime
from steprun.runtime.durable import start
from steprun.runtime.step import StepContext, StepLogger
from steprun.runtime.store import RunStore
from steprun.steps.core import condition, set_values


def make_flow(steps: int) -> str:
    body: list[dict[str, Any]] = [
        {"id": "s0", "type": "core.set", "config": {"values": {"n": 0, "label": "start"}}}
    ]
    for i in range(1, steps):
        body.append(
            {
                "id": f"s{i}",
                "type": "core.set",
                "config": {
                    "values": {
                        "n": f"{{{{ s{i - 1}.n + 1 }}}}",
                        "label": f"step {{{{ s{i - 1}.n }}}} of {{{{ inputs.total }}}}",
                    }
                },
            }
        )
    return yaml.safe_dump(
        {"flow": "bench", "inputs": {"total": steps}, "steps": body}, sort_keys=False
    )


def make_loop(iterations: int) -> str:
    """``counter`` counts to ``iterations``: two pure steps per iteration."""
    return yaml.safe_dump(
        {
            "flow": "bench-loop",
            "inputs": {"n": iterations},
            "max_steps": 2 * iterations + 10,
            "steps": [
                {"id": "counter", "type": "core.set", "config": {"value": 0}},
                {
                    "id": "bump",
                    "type": "core.set",
                    "merge_field": "counter",
                    "config": {"value": "{{ counter + 1 }}"},
                },
                {
                    "id": "again",
                    "type": "core.condition",
                    "config": {
                        "cases": [{"when": "{{ counter < inputs.n }}", "next": "bump"}],
                        "default": "end",
                    },
                },
            ],
        },
        sort_keys=False,
    )


async def bare_pure_loop(iterations: int) -> float:
    """The loop's own work: the two step functions awaited with rendered configs."""
    context = StepContext(
        run_id="bench",
        flow="bench",
        step_id="s",
        step_type="core.set",
        authorization=None,
        http=None,  # type: ignore[arg-type]  # neither step touches it
        log=StepLogger("info", lambda *a: None),
    )
    began = time.perf_counter()
    counter = 0
    while True:
        counter = await set_values({"value": counter + 1}, context)
        result = await condition(
            {"cases": [{"when": counter < iterations, "next": "bump"}], "default": "end"},
            context,
        )
        if result.next == "end":
            break
    return time.perf_counter() - began


async def bare_loop(steps: int) -> float:
    """The steps' own work: the same function awaited with already-rendered configs."""
    import httpx

    async with httpx.AsyncClient() as http:
        context = StepContext(
            run_id="bench",
            flow="bench",
            step_id="s",
            step_type="core.set",
            authorization=None,
            http=http,
            log=StepLogger("info", lambda *a: None),
        )
        configs = [{"values": {"n": i, "label": f"step {i} of {steps}"}} for i in range(steps)]
        began = time.perf_counter()
        for config in configs:
            await set_values(config, context)
        return time.perf_counter() - began


async def engine(text: str, *, validate: bool, durable: bool) -> float:
    runtime = Runtime(autoload=False)
    with tempfile.TemporaryDirectory() as tmp:
        store = RunStore(Path(tmp) / "runs.db") if durable else None
        try:
            flow = None if validate else runtime.load(text)
            began = time.perf_counter()
            loaded = flow or runtime.load(text)
            if store is not None:
                result = await start(runtime, store, loaded, inputs={})
            else:
                result = await runtime.run(loaded)
            took = time.perf_counter() - began
            assert result.status == "succeeded", result.error
        finally:
            if store is not None:
                store.close()
            await runtime.aclose()
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--loop", type=int, default=2000, help="iterations of the pure loop")
    args = parser.parse_args()
    text = make_flow(args.steps)

    def best(fn: Any) -> float:
        return min(asyncio.run(fn()) for _ in range(args.repeat))

    bare = best(lambda: bare_loop(args.steps))
    run_only = best(lambda: engine(text, validate=False, durable=False))
    with_validation = best(lambda: engine(text, validate=True, durable=False))
    durable = best(lambda: engine(text, validate=False, durable=True))

    def per_step(total: float) -> float:
        return (total - bare) / args.steps * 1e6

    loop_text = make_loop(args.loop)
    loop_steps = 2 * args.loop  # bump and again per iteration, plus counter (ignored)
    bare_pure = best(lambda: bare_pure_loop(args.loop))
    loop_plain = best(lambda: engine(loop_text, validate=False, durable=False))
    loop_durable = best(lambda: engine(loop_text, validate=False, durable=True))

    rows = [
        ("bare loop (step functions awaited directly)", bare, None),
        ("engine, run only", run_only, per_step(run_only)),
        ("engine, validation included", with_validation, per_step(with_validation)),
        ("engine + durable run store", durable, per_step(durable)),
    ]
    print(f"{args.steps}-step flow of templated core.set steps, best of {args.repeat}")
    print(f"python {sys.version.split()[0]}")
    for name, total, overhead in rows:
        extra = f"{overhead:8.1f} µs/step overhead" if overhead is not None else ""
        print(f"  {name:<46} {total * 1000:9.1f} ms  {extra}")
    target = per_step(run_only)
    verdict = "within" if target < 100 else "OVER"
    print(f"target: < 100 µs/step engine overhead (run only): {target:.1f} µs ({verdict})")
    print(f"loop of core.set + core.condition, {loop_steps} steps, best of {args.repeat}")
    for name, total in (
        ("bare loop (the two step functions awaited)", bare_pure),
        ("engine, no store", loop_plain),
        ("engine + durable run store", loop_durable),
    ):
        print(f"  {name:<46} {total * 1000:9.1f} ms  {total / loop_steps * 1e6:8.1f} µs/step")
    durable_step = loop_durable / loop_steps * 1e6
    print(
        f"target: <= 150 µs/step, durable store on: {durable_step:.1f} µs "
        f"({'within' if durable_step <= 150 else 'OVER'}); the store adds "
        f"{(loop_durable - loop_plain) / loop_steps * 1e6:.1f} µs/step over no store"
    )


if __name__ == "__main__":
    main()
