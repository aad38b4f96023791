"""Submitting runs to the workers: record each run, then queue it.

A submitted run is recorded exactly as ``steprun run`` records one (its flow's text and
hash, inputs, authorizations file), with status ``queued`` and no lease: nothing drives
it until a worker takes its job. Nothing is sent to any API here. The flow's secrets are
resolved by the worker that drives the run, in its own environment, and the
authorizations file is read there from the same path.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import StoreError
from ..store.rows import dump
from .queue import enqueue

if TYPE_CHECKING:
    from procrastinate import App

    from ..flow import Flow
    from ..store import RunStore


async def submit(
    store: RunStore,
    app: App,
    flow: Flow,
    *,
    inputs: Mapping[str, Any],
    authorizations_file: Path | None = None,
    run_id: str | None = None,
) -> str:
    """Record a run of the validated ``flow`` and queue it; returns its id."""
    from ..runtime import new_run_id

    run_id = run_id or new_run_id()
    ops = store.create_run_ops(
        run_id=run_id,
        flow=flow.name,
        flow_file=flow.file,
        flow_text=flow.source.text,
        flow_hash=flow.digest,
        base_dir=str(flow.base_dir),
        inputs={**flow.inputs, **inputs},
        authorizations_file=str(authorizations_file.resolve()) if authorizations_file else None,
        position=flow.steps[0].id,
        authorization=flow.authorization,
        owner="",
    )
    ops.append(
        (
            "UPDATE runs SET status = 'queued', lease_owner = NULL, lease_until = NULL "
            "WHERE id = ?",
            (run_id,),
        )
    )
    await store.write(ops)
    try:
        await enqueue(app, run_id)
    except StoreError as exc:
        # Recorded but not queued: say so in the run itself, where `steprun resume` finds it.
        error = {
            "type": "worker_error",
            "message": f"the run was recorded but could not be queued: {exc}",
            "code": "not_queued",
            "param": None,
            "status": None,
            "request_id": None,
            "step": None,
        }
        await store.write(
            [
                (
                    "UPDATE runs SET status = 'failed', error = ?, updated = ? WHERE id = ?",
                    (dump(error), time.time(), run_id),
                )
            ]
        )
        raise
    return run_id


__all__ = ["submit"]
