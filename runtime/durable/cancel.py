"""Stopping a run for good (`steprun cancel`), and the fine-tuning jobs it created."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import IO, TYPE_CHECKING, Any

from ..errors import InvalidInput
from ..flow import Flow
from ..store import RunRow, RunStore
from .runs import stored_flow

if TYPE_CHECKING:
    from ..runtime import RunResult, Runtime


CREATE_JOB_TYPE = "openai.create_fine_tuning_job"


async def cancel(
    runtime: Runtime,
    store: RunStore,
    run_id: str,
    *,
    cancel_jobs: bool = False,
    authorizations: Mapping[str, Any] | None = None,
    wait_seconds: float = 10.0,
    console: IO[str] | None = None,
) -> dict[str, Any]:
    """Stop a run; with ``cancel_jobs``, also cancel the fine-tuning jobs it created."""
    from ..store import owner_alive

    row = store.run(run_id)
    run_id = row.id
    if row.status in ("succeeded", "cancelled") and not cancel_jobs:
        raise InvalidInput(f"run {run_id} already {row.status}; there is nothing to stop")
    await store.write(
        [("UPDATE runs SET cancel_requested = 1, updated = ? WHERE id = ?", (time.time(), run_id))]
    )
    live = bool(row.lease_owner) and owner_alive(row.lease_owner or "")
    if row.status in ("running", "failed", "queued", "waiting") and not live:
        # Nobody drives it (it crashed, it failed and waits for a resume, or it waits in
        # the workers' queue): stop it here.
        await store.write(
            [
                (
                    "UPDATE runs SET status = 'cancelled', updated = ? WHERE id = ?",
                    (time.time(), run_id),
                )
            ]
        )
    elif live:
        say = f"asked {row.lease_owner} to stop run {run_id}"
        if console is not None:
            print(say, file=console, flush=True)
        deadline = time.time() + wait_seconds
        while time.time() < deadline and store.run(run_id).status == "running":
            await asyncio.sleep(0.2)
    jobs: list[dict[str, Any]] = []
    if cancel_jobs:
        jobs = await _cancel_jobs(runtime, store, store.run(run_id), authorizations, console)
    final = store.run(run_id)
    return {"run_id": run_id, "status": final.status, "cancelled_jobs": jobs}


async def _cancel_jobs(
    runtime: Runtime,
    store: RunStore,
    row: RunRow,
    authorizations: Mapping[str, Any] | None,
    console: IO[str] | None,
) -> list[dict[str, Any]]:
    flow = stored_flow(runtime, row, authorizations)
    fields = store.merge_fields(row.id)
    found: dict[str, str | None] = {}  # job id -> authorization name
    searches: dict[str, str | None] = {}  # step id -> authorization name, for lookups
    for attempt in store.attempts(row.id):
        if attempt.step_type != CREATE_JOB_TYPE or attempt.step_id not in flow.by_id:
            continue
        auth_name = (attempt.report or {}).get("authorization", row.authorization)
        value = fields.get(flow.by_id[attempt.step_id].merge_field)
        if attempt.status == "succeeded" and isinstance(value, dict) and value.get("id"):
            found[str(value["id"])] = auth_name
        elif attempt.status == "started":
            searches[attempt.step_id] = auth_name
    for step_id, auth_name in searches.items():
        # An interrupted create may have created a job: find it by the metadata it tagged.
        listed = await _step(
            runtime,
            flow,
            "openai.list_fine_tuning_jobs",
            {"metadata": {"steprun_run_id": row.id, "steprun_step_id": step_id}, "all": True},
            auth_name,
        )
        for job in (listed.merge_fields.get("result") or {}).get("data", []) or []:
            found[str(job["id"])] = auth_name
    results = []
    for job_id, auth_name in found.items():
        outcome = await _step(
            runtime,
            flow,
            "openai.cancel_fine_tuning_job",
            {"job_id": job_id, "if_finished": "succeed"},
            auth_name,
        )
        value = outcome.merge_fields.get("result") or {}
        item = {
            "job_id": job_id,
            "outcome": outcome.status,
            "status": value.get("status"),
            "error": value.get("message") if outcome.status != "succeeded" else None,
        }
        results.append(item)
        if console is not None:
            print(f"job {job_id}: {item['status'] or item['error']}", file=console, flush=True)
    return results


async def _step(
    runtime: Runtime, flow: Flow, step_type: str, config: dict[str, Any], auth_name: str | None
) -> RunResult:
    from ..authorizations import resolve_authorization
    from ..secrets import Redactor

    authorization = None
    if auth_name:
        authorization = resolve_authorization(
            auth_name,
            flow.authorizations[auth_name],
            environ=runtime.environ,
            base_dir=flow.base_dir,
            redactor=Redactor(),
            providers=runtime.providers,
        )
    return await runtime.run_step(step_type, config, authorization=authorization)


__all__ = ["cancel"]
