"""Requests per second through the OpenAI steps, beside a bare httpx loop (issue 4).

    python bench/local_backend.py [--requests 1000] [--repeat 3] [--no-in-process]

Two requests, each sent ``--requests`` times one after the other (no concurrency: the
figure is the cost of one request), against the same backend in the same run:
  - retrieve: ``GET /fine_tuning/jobs/{id}`` of a job that has succeeded;
  - completion: a non-streamed ``POST /chat/completions`` to its fine-tuned model.

Each is sent three ways:
  - bare httpx: one ``httpx.AsyncClient``, ``await client.get(...)`` / ``.post(...)`` in a
    loop, the body decoded with ``response.json()``. The floor.
  - ``Runtime.run_step``: the step (``openai.retrieve_fine_tuning_job``,
    ``openai.request_fine_tuned_model``) run once per request, as a platform with its own
    flow engine embeds steprun. Each call includes what such a platform pays: building and
    validating the one-step flow, resolving the authorization, the runner (schema check,
    timeout, merge field, redaction of the output), the step's client (headers, retry
    policy, error mapping, JSON parsing), its log line and its report.
  - a flow: one validated flow of ``--requests`` such steps, their configs templated from
    the flow's inputs (``{{ inputs.job_id }}``), run with ``Runtime.run``: per step the
    runner renders the config and checks it (every step renders the same config here, so
    the runtime's memo of valid configs spares all but the first jsonschema check), runs
    the step, and reports; validation of the flow is done before timing. No run store.
  - that flow, durable: the same flow started with ``durable.start`` on a fresh SQLite run
    store (WAL, synchronous=FULL), as ``steprun run`` does. Issue 14's target: the engine's
    overhead per step (this row's time per request minus the bare loop's) at most 0.5x
    the bare call (stretch: 0.25x).

Against ``steprun serve-local`` (uvicorn on 127.0.0.1, started here as a subprocess on port
0, with an API key) and, unless ``--no-in-process``, against the embedded backend
in-process (``provider: local``: httpx's ASGITransport, no socket). The ratio is steps'
requests per second over the bare loop's; 1.00 would mean the steps cost nothing.
Best of ``--repeat``. Nothing is asserted: the machines here are shared and noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
from _serve import (
    API_KEY,
    BASE_MODEL,
    QUESTION,
    TRAINING_FILE,
    finished_job,
    headers,
    machine,
    serve_local,
)
from pydantic import SecretStr

from steprun.runtime import Runtime
from steprun.runtime.authorizations import LOCAL_BASE_URL, Authorization
from steprun.runtime.durable import start
from steprun.runtime.store import RunStore

RETRIEVE = "openai.retrieve_fine_tuning_job"
REQUEST = "openai.request_fine_tuned_model"
MAX_TOKENS = 64


def step_configs(job_id: str, model: str) -> dict[str, dict[str, Any]]:
    return {
        "retrieve": {"job_id": job_id},
        "completion": {
            "model": model,
            "mode": "chat",
            "prompt": QUESTION,
            "max_tokens": MAX_TOKENS,
        },
    }


def chat_body(model: str) -> dict[str, Any]:
    """What the request step sends for the config above (``build_request``)."""
    return {
        "model": model,
        "max_tokens": MAX_TOKENS,
        "messages": [{"role": "user", "content": QUESTION}],
    }


def templated_flow(
    kind: str, n: int, authorization: dict[str, Any], job_id: str, model: str
) -> dict[str, Any]:
    if kind == "retrieve":
        step = {"type": RETRIEVE, "config": {"job_id": "{{ inputs.job_id }}"}}
    else:
        step = {
            "type": REQUEST,
            "config": {
                "model": "{{ inputs.model }}",
                "mode": "chat",
                "prompt": "{{ inputs.question }}",
                "max_tokens": MAX_TOKENS,
            },
        }
    return {
        "flow": f"bench-{kind}",
        "authorization": "a",
        "authorizations": {"a": authorization},
        "inputs": {"job_id": job_id, "model": model, "question": QUESTION},
        "steps": [{"id": f"s{i}", **step} for i in range(n)],
    }


async def timed(n: int, send: Callable[[], Awaitable[None]]) -> tuple[float, float]:
    """Wall and CPU seconds (of this process) of ``n`` sends."""
    await send()  # warm: connection, caches, lazily built backend model
    began, cpu = time.perf_counter(), time.process_time()
    for _ in range(n):
        await send()
    return time.perf_counter() - began, time.process_time() - cpu


class Target:
    """One backend: how the bare loop reaches it, and the authorization steps use."""

    def __init__(
        self,
        name: str,
        runtime: Runtime,
        bare: httpx.AsyncClient,
        base_url: str,
        authorization: Authorization,
        flow_authorization: dict[str, Any],
        job_id: str,
        model: str,
    ) -> None:
        self.name = name
        self.runtime = runtime
        self.bare = bare
        self.base_url = base_url
        self.authorization = authorization
        self.flow_authorization = flow_authorization
        self.job_id = job_id
        self.model = model

    async def measure(self, kind: str, n: int, repeat: int) -> dict[str, float]:
        url = f"{self.base_url}/fine_tuning/jobs/{self.job_id}"
        body = chat_body(self.model)
        auth = headers()

        async def bare() -> None:
            if kind == "retrieve":
                response = await self.bare.get(url, headers=auth)
            else:
                response = await self.bare.post(
                    f"{self.base_url}/chat/completions", headers=auth, json=body
                )
            response.raise_for_status()
            response.json()

        config = step_configs(self.job_id, self.model)[kind]
        step_type = RETRIEVE if kind == "retrieve" else REQUEST

        async def one_step() -> None:
            result = await self.runtime.run_step(
                step_type, config, authorization=self.authorization
            )
            if result.status != "succeeded":
                raise SystemExit(f"{step_type} failed: {result.error}")

        flow = self.runtime.load(
            templated_flow(kind, n, self.flow_authorization, self.job_id, self.model)
        )

        async def whole_flow(durable: bool) -> tuple[float, float]:
            with tempfile.TemporaryDirectory(prefix="steprun-bench-") as tmp:
                store = RunStore(Path(tmp) / "runs.db") if durable else None
                try:
                    began, cpu = time.perf_counter(), time.process_time()
                    if store is not None:
                        result = await start(self.runtime, store, flow, inputs={})
                    else:
                        result = await self.runtime.run(flow)
                    took = time.perf_counter() - began, time.process_time() - cpu
                finally:
                    if store is not None:
                        store.close()
            if result.status != "succeeded":
                raise SystemExit(f"the {kind} flow failed: {result.error}")
            return took

        best = dict.fromkeys(("bare", "run_step", "flow", "durable"), float("inf"))
        for _ in range(repeat):
            # Interleaved, so that a noisy moment on the machine hits every row alike.
            for key, (wall, cpu) in (
                ("bare", await timed(n, bare)),
                ("run_step", await timed(n, one_step)),
                ("flow", await whole_flow(durable=False)),
                ("durable", await whole_flow(durable=True)),
            ):
                best[key] = min(best[key], wall)
                best[f"{key}_cpu"] = min(best.get(f"{key}_cpu", float("inf")), cpu)
        return best


async def served(args: argparse.Namespace) -> list[tuple[str, str, dict[str, float]]]:
    rows: list[tuple[str, str, dict[str, float]]] = []
    with serve_local(job_seconds=args.job_seconds) as server:
        base_url = server.url
        # The bare loop gets a client of its own, set like the runtime's (no redirects).
        async with httpx.AsyncClient(timeout=60) as bare:
            job_id, model = await finished_job(bare, base_url)
            environ = {"BENCH_API_KEY": API_KEY}
            async with Runtime(environ=environ) as runtime:
                target = Target(
                    "serve-local",
                    runtime,
                    bare,
                    base_url,
                    Authorization(
                        name="a", provider="openai", api_key=SecretStr(API_KEY), base_url=base_url
                    ),
                    {
                        "provider": "openai",
                        "api_key": "${env:BENCH_API_KEY}",
                        "base_url": base_url,
                    },
                    job_id,
                    model,
                )
                for kind in ("retrieve", "completion"):
                    rows.append(
                        (target.name, kind, await target.measure(kind, args.requests, args.repeat))
                    )
    return rows


async def in_process(args: argparse.Namespace) -> list[tuple[str, str, dict[str, float]]]:
    rows: list[tuple[str, str, dict[str, float]]] = []
    local = {"provider": "local", "job_seconds": args.job_seconds}
    async with Runtime(environ={}) as runtime:
        # The first step resolves the spec, which sets the embedded backend's job_seconds.
        upload = await runtime.run_step(
            "openai.upload_file",
            {"file": str(TRAINING_FILE), "purpose": "fine-tune"},
            authorization=local,
        )
        job = await runtime.run_step(
            "openai.create_fine_tuning_job",
            {"training_file": upload.merge_fields["result"]["id"], "model": BASE_MODEL},
            authorization=local,
        )
        done = await runtime.run_step(
            "openai.wait_for_fine_tuning_job",
            {"job_id": job.merge_fields["result"]["id"], "poll_interval": "0.2s"},
            authorization=local,
        )
        if done.status != "succeeded":
            raise SystemExit(f"the in-process setup job did not succeed: {done.error}")
        backend = runtime.local_backend
        transport = httpx.ASGITransport(app=backend.app)
        async with httpx.AsyncClient(transport=transport, timeout=60) as bare:
            target = Target(
                "in-process",
                runtime,
                bare,
                LOCAL_BASE_URL,
                Authorization(name="a", provider="local", base_url=LOCAL_BASE_URL),
                {"provider": "local"},
                str(done.merge_fields["result"]["id"]),
                str(done.merge_fields["result"]["fine_tuned_model"]),
            )
            for kind in ("retrieve", "completion"):
                rows.append(
                    (target.name, kind, await target.measure(kind, args.requests, args.repeat))
                )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--requests", type=int, default=1000, help="requests per measurement")
    parser.add_argument("--repeat", type=int, default=3, help="best of this many")
    parser.add_argument(
        "--job-seconds", type=float, default=1.0, help="how long the setup job takes"
    )
    parser.add_argument(
        "--no-in-process", action="store_true", help="only measure against serve-local"
    )
    args = parser.parse_args()

    rows = asyncio.run(served(args))
    if not args.no_in_process:
        rows += asyncio.run(in_process(args))

    print(
        f"{args.requests} requests per measurement, one at a time, best of {args.repeat}; "
        f"{machine()}"
    )
    print(
        f"  {'backend':<12} {'request':<11} {'path':<28} {'req/s':>8} {'µs/req':>8} {'vs bare':>8}"
        f" {'CPU µs/req':>11}"
    )
    labels = {
        "bare": "bare httpx loop",
        "run_step": "steps: Runtime.run_step",
        "flow": "steps: flow of N steps",
        "durable": "steps: that flow, durable",
    }
    for backend, kind, best in rows:
        for key, label in labels.items():
            rate = args.requests / best[key]
            ratio = best["bare"] / best[key]
            print(
                f"  {backend:<12} {kind:<11} {label:<28} {rate:8.0f} "
                f"{best[key] / args.requests * 1e6:8.0f} {ratio:8.2f} "
                f"{best[f'{key}_cpu'] / args.requests * 1e6:11.0f}"
            )
    print(
        "vs bare: the steps' requests per second over the bare loop's (1.00 = no cost); "
        "CPU: this process's CPU time per request (best of the runs; the server's is apart)"
    )
    for backend, kind, best in rows:
        # Issue 14 goal 1: what the engine adds to each step of a durable flow, as a
        # fraction of the bare request it wraps.
        ratio = (best["durable"] - best["bare"]) / best["bare"]
        verdict = "within" if ratio <= 0.5 else "OVER"
        stretch = "within" if ratio <= 0.25 else "not yet"
        cpu = (best["durable_cpu"] - best["bare_cpu"]) / args.requests * 1e6
        print(
            f"target ({backend}, {kind}): engine overhead per durable step <= 0.5x the bare "
            f"call: {(best['durable'] - best['bare']) / args.requests * 1e6:.0f} µs = "
            f"{ratio:.2f}x ({verdict}; stretch 0.25x: {stretch}); in CPU, {cpu:.0f} µs = "
            f"{cpu / (best['bare'] / args.requests * 1e6):.2f}x the bare call's time"
        )


if __name__ == "__main__":
    main()
