"""Batches: one durable run per row of an inputs file, and resuming a whole batch.

The batch and every row's inputs are stored before the first row starts, so a batch
stopped at any moment (Ctrl-C, a kill) loses no row: ``resume_batch`` resumes the rows
whose run did not succeed and starts the rows never started, from the stored inputs.
Each row's outcome is handed to ``on_row`` as it finishes (completion order); every
outcome carries its row.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ..errors import SteprunError, StoreError, StoreUnavailable
from ..flow import Flow
from ..store import Batch, RunStore
from .runs import resume, start

if TYPE_CHECKING:
    from ..runtime import RunResult, Runtime

BATCH_PREFIX = "batch_"  # tells `steprun resume` a batch id from a run id
# A row whose run is one of these is done: a batch resume leaves it as it is.
DONE = ("succeeded", "cancelled")


@dataclass
class RowOutcome:
    """What one row of a batch came to."""

    row: int  # its line in the inputs file
    run_id: str | None  # None: no run could be started for it
    status: str
    merge_fields: dict[str, Any] = field(default_factory=dict)
    error: dict[str, Any] | None = None

    def line(self) -> dict[str, Any]:
        """The row's stdout line."""
        found = {
            "row": self.row,
            "run": self.run_id,
            "status": self.status,
            "merge_fields": self.merge_fields,
        }
        found["error"] = self.error
        return found


@dataclass
class _Work:
    row: int
    inputs: dict[str, Any]
    run_id: str | None  # the run to resume, or None to start one


def new_batch_id() -> str:
    from ..runtime import new_run_id

    return BATCH_PREFIX + new_run_id().removeprefix("run_")


async def start_batch(
    runtime: Runtime,
    store: RunStore,
    flow: Flow,
    rows: Sequence[tuple[int, dict[str, Any]]],
    *,
    batch_id: str,
    inputs_file: Path,
    concurrency: int,
    on_row: Callable[[RowOutcome], None],
    authorizations_file: Path | None = None,
    log_level: str | None = None,
    report_file: IO[str] | None = None,
    console: IO[str] | None = None,
    active: set[int] | None = None,
) -> list[RowOutcome]:
    """Record the batch with every row's inputs, then run the rows ``concurrency`` at a
    time in this process. ``active`` holds the rows being run at each instant (what a
    Ctrl-C stopped)."""
    runtime.prepare(flow)  # a missing secret: exit 2, before anything is recorded
    await store.write(
        store.create_batch_ops(
            batch_id=batch_id,
            flow=flow.name,
            flow_file=flow.file,
            flow_text=flow.source.text,
            flow_hash=flow.digest,
            base_dir=str(flow.base_dir),
            inputs_file=str(inputs_file.resolve()),
            authorizations_file=str(authorizations_file.resolve()) if authorizations_file else None,
            concurrency=concurrency,
            rows=rows,
        )
    )
    work = [_Work(row, inputs, None) for row, inputs in rows]
    return await _run_rows(
        runtime,
        store,
        batch_id,
        lambda: flow,
        work,
        concurrency=concurrency,
        on_row=on_row,
        authorizations=None,
        authorizations_file=authorizations_file,
        log_level=log_level,
        report_file=report_file,
        console=console,
        active=set() if active is None else active,
    )


async def resume_batch(
    runtime: Runtime,
    store: RunStore,
    batch_id: str,
    *,
    on_row: Callable[[RowOutcome], None],
    concurrency: int | None = None,
    authorizations: Mapping[str, Any] | None = None,
    log_level: str | None = None,
    report_file: IO[str] | None = None,
    console: IO[str] | None = None,
    active: set[int] | None = None,
) -> list[RowOutcome]:
    """Resume every row of the batch whose run did not succeed (a failed run retries from
    its failed step, as `steprun resume RUN` does) and start every row never started.
    Rows already done are handed to ``on_row`` first, as they are."""
    batch = store.batch(batch_id)
    done, work = [], []
    for item in batch.rows:
        if item.run is not None and item.run.status in DONE:
            merge_fields = _stored_fields(store, item.run.id)
            done.append(
                RowOutcome(item.row, item.run.id, item.run.status, merge_fields, item.run.error)
            )
        else:
            work.append(_Work(item.row, item.inputs, item.run.id if item.run else None))
    if console is not None:
        never = sum(1 for w in work if w.run_id is None)
        print(
            f"resuming batch {batch.id}: {len(done)} of {len(batch.rows)} rows done, "
            f"{len(work) - never} to resume, {never} never started",
            file=console,
            flush=True,
        )
    for outcome in done:
        on_row(outcome)
    flow: list[Flow] = []

    def batch_flow() -> Flow:
        # Loaded once, and only if a row is to be started: the rows' own runs keep theirs.
        if not flow:
            flow.append(_stored_flow(runtime, batch, authorizations))
        return flow[0]

    authorizations_file = Path(batch.authorizations_file) if batch.authorizations_file else None
    return done + await _run_rows(
        runtime,
        store,
        batch.id,
        batch_flow,
        work,
        concurrency=concurrency or batch.concurrency,
        on_row=on_row,
        authorizations=authorizations,
        authorizations_file=authorizations_file,
        log_level=log_level,
        report_file=report_file,
        console=console,
        active=set() if active is None else active,
    )


async def _run_rows(
    runtime: Runtime,
    store: RunStore,
    batch_id: str,
    flow: Callable[[], Flow],
    work: list[_Work],
    *,
    concurrency: int,
    on_row: Callable[[RowOutcome], None],
    authorizations: Mapping[str, Any] | None,
    authorizations_file: Path | None,
    log_level: str | None,
    report_file: IO[str] | None,
    console: IO[str] | None,
    active: set[int],
) -> list[RowOutcome]:
    gate = asyncio.Semaphore(concurrency)

    async def one(item: _Work) -> RowOutcome:
        from ..runtime import new_run_id

        run_id = item.run_id or new_run_id()
        async with gate:
            active.add(item.row)
            try:
                result = await _row(item, run_id)
            except StoreUnavailable:
                raise  # the disk refuses the store: no other row can do better
            except SteprunError as exc:
                # This row could not start or resume (another process drives its run, a
                # store refusal): said on its own line, the other rows go on.
                outcome = _not_run(store, batch_id, item, run_id, exc)
            else:
                outcome = RowOutcome(
                    item.row, result.run_id, result.status, result.merge_fields, result.error
                )
            active.discard(item.row)  # not in a finally: a cancelled row was in flight
        if console is not None:
            where = ""
            if outcome.error and outcome.status != "succeeded":
                where = f": {outcome.error.get('message')}"
            print(
                f"row {item.row}: run {outcome.run_id or '(none)'} {outcome.status}{where}",
                file=console,
                flush=True,
            )
        on_row(outcome)
        return outcome

    async def _row(item: _Work, run_id: str) -> RunResult:
        if item.run_id is not None:
            return await resume(
                runtime,
                store,
                item.run_id,
                authorizations=authorizations,
                log_level=log_level,
                report_file=report_file,
            )
        return await start(
            runtime,
            store,
            flow(),
            run_id=run_id,
            batch=(batch_id, item.row),
            inputs=item.inputs,
            authorizations_file=authorizations_file,
            log_level=log_level,
            report_file=report_file,
        )

    return list(await asyncio.gather(*(one(item) for item in work)))


def _not_run(store: RunStore, batch_id: str, item: _Work, tried: str, exc: Exception) -> RowOutcome:
    """The outcome of a row that could not start (as run ``tried``) or resume."""
    message = f"row {item.row}: {exc}"
    run_id = item.run_id
    if run_id is None:
        # Refused because another process started this row meanwhile (a second
        # `steprun resume BATCH`)? Then say so, rather than the store's unique index.
        with contextlib.suppress(StoreError):
            found = next(r.run for r in store.batch(batch_id).rows if r.row == item.row)
            run_id = found.id if found else None
            if found is not None and found.id != tried:
                message = (
                    f"row {item.row}: another process started it as run {found.id} (two "
                    f"resumes of batch {batch_id} at once?); `steprun show {found.id}`"
                )
    return RowOutcome(item.row, run_id, "failed", error={"type": "run_error", "message": message})


def _stored_fields(store: RunStore, run_id: str) -> dict[str, Any]:
    """A finished run's merge fields in the order its steps wrote them (as its line had
    them when it ran), not the store's order."""
    stored = store.merge_fields(run_id)
    order = [(a.report or {}).get("merge_field") for a in store.attempts(run_id)]
    return {name: stored[name] for name in dict.fromkeys(order) if name in stored} | stored


def _stored_flow(runtime: Runtime, batch: Batch, authorizations: Mapping[str, Any] | None) -> Flow:
    """The batch's flow as it was when it started, with the authorizations given now,
    else those of the file it started with."""
    if hashlib.sha256(batch.flow_text.encode("utf-8")).hexdigest() != batch.flow_hash:
        raise StoreError(
            f"batch {batch.id}: the stored flow text does not match its hash; the store is "
            "damaged and the rows never started cannot be started safely"
        )
    if authorizations is None and batch.authorizations_file:
        from ..authorizations import read_authorizations_file

        authorizations = read_authorizations_file(Path(batch.authorizations_file), runtime.schemas)
    names = set().union(*(set(r.inputs) for r in batch.rows))
    return runtime.load_text(
        batch.flow_text,
        file=batch.flow_file,
        base_dir=Path(batch.base_dir),
        inputs=names,
        authorizations=authorizations,
    )


__all__ = ["BATCH_PREFIX", "DONE", "RowOutcome", "new_batch_id", "resume_batch", "start_batch"]
