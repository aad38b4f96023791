"""Durable runs: the journal that writes every step boundary to the run store, and resume.

The rule that makes a crash safe: "started" is committed before a step runs (so before any
request is sent), and the result is committed before the run moves on. A resumed run finds
the last attempt "started" with no result and runs that step again with
``context.resumed = True``: steps that only read simply repeat, idempotent steps repeat
harmlessly, and steps with ``effect="reconcile"`` (create a job, upload a file) first look
for what the interrupted attempt did, using what it recorded with ``context.checkpoint``.

Failpoints, for testing that promise (ours and our users'): ``STEPRUN_FAILPOINT=POINT@STEP``
kills the process with SIGKILL at POINT of step STEP, where POINT is ``step-started``
(after "started" is committed, before the step runs), ``step-finished-before-commit``
(the step has its result, nothing is committed) or ``step-finished-after-commit``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from .errors import InvalidInput, RunCancelled, StoreError
from .flow import Flow, FlowStep
from .runner import RunState
from .store import LEASE_SECONDS, Op, RunRow, RunStore, lease_owner

if TYPE_CHECKING:
    from .runtime import RunResult, Runtime

FAILPOINT_ENV = "STEPRUN_FAILPOINT"
CANCEL_POLL_SECONDS = 1.0
CANCEL_CHECK_SECONDS = 0.5
# A wait shorter than this is not worth a commit: a restart that forgets it polls at most
# this much early. Longer ones (a long poll interval, a Retry-After) are kept.
PERSIST_WAKE_SECONDS = 3.0


class StoreJournal:
    """Implements the runner's Journal on a RunStore, for one run."""

    def __init__(
        self,
        store: RunStore,
        run_id: str,
        *,
        owner: str,
        next_seq: int = 1,
        carried: Mapping[str, dict[str, Any]] | None = None,
        failpoint: str | None = None,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.owner = owner
        self._seq = next_seq
        self._current: dict[str, int] = {}
        # What an interrupted attempt recorded, per step: copied into the next attempt's row
        # so a second crash before it records anything loses nothing.
        self._carried: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (carried or {}).items()}
        self._wake: dict[str, float] = {
            k: float(v.pop("_wake_at")) for k, v in self._carried.items() if "_wake_at" in v
        }
        self._failpoint = failpoint
        self._cancel_checked = -CANCEL_CHECK_SECONDS
        self.released = False  # the run-finished write cleared the lease

    async def _write(self, ops: list[Op]) -> None:
        # Fenced: once another process has taken this run over, nothing more is written.
        await self.store.write(ops, fence=(self.run_id, self.owner))

    def _fail_at(self, point: str, step: FlowStep) -> None:
        if self._failpoint == f"{point}@{step.id}":
            os.kill(os.getpid(), signal.SIGKILL)

    async def cancelled(self, state: RunState) -> bool:
        # A read on the event loop before every step adds up over many concurrent runs;
        # a person's `steprun cancel` is still seen within half a second.
        now = time.monotonic()
        if now - self._cancel_checked < CANCEL_CHECK_SECONDS:
            return False
        self._cancel_checked = now
        return self.store.cancel_requested(self.run_id)

    async def step_started(self, state: RunState, step: FlowStep, attempt: int) -> None:
        seq = self._seq
        self._seq += 1
        self._current[step.id] = seq
        saved = self._carried.pop(step.id, {})
        wake_at = self._wake.pop(step.id, None)
        now = time.time()
        await self._write(
            [
                (
                    "INSERT INTO attempts (run_id, seq, step_id, step_type, attempt, status, "
                    "started, saved, wake_at) VALUES (?,?,?,?,?,'started',?,?,?)",
                    (self.run_id, seq, step.id, step.type, attempt, now, _dump(saved), wake_at),
                ),
                (
                    "UPDATE runs SET position = ?, authorization = ?, executed = ?, updated = ? "
                    "WHERE id = ?",
                    (step.id, state.authorization, state.executed, now, self.run_id),
                ),
            ]
        )
        self._fail_at("step-started", step)
        if wake_at is not None and wake_at > time.time():
            # The interrupted attempt was waiting (a poll interval, a Retry-After): keep
            # its wake-up time instead of hammering the API right after a restart.
            await self._sleep_until(wake_at)

    async def step_checkpoint(self, state: RunState, step: FlowStep, data: dict[str, Any]) -> None:
        await self._write(
            [
                (
                    "UPDATE attempts SET saved = ? WHERE run_id = ? AND seq = ?",
                    (_dump(data), self.run_id, self._current[step.id]),
                )
            ]
        )

    async def step_finished(self, state: RunState, step: FlowStep, report: dict[str, Any]) -> None:
        self._fail_at("step-finished-before-commit", step)
        now = time.time()
        await self._write(
            [
                (
                    "UPDATE attempts SET status = ?, ended = ?, report = ?, wake_at = NULL "
                    "WHERE run_id = ? AND seq = ?",
                    (report["status"], now, _dump(report), self.run_id, self._current[step.id]),
                ),
                (
                    "INSERT OR REPLACE INTO merge_fields (run_id, name, value) VALUES (?,?,?)",
                    (self.run_id, step.merge_field, _dump(state.merge_fields[step.merge_field])),
                ),
                (
                    "UPDATE runs SET position = ?, authorization = ?, error = ?, executed = ?, "
                    "status = ?, updated = ?, lease_until = ? WHERE id = ?",
                    (
                        state.position,
                        state.authorization,
                        _dump(state.error) if state.error is not None else None,
                        state.executed,
                        state.status,
                        now,
                        now + LEASE_SECONDS,
                        self.run_id,
                    ),
                ),
            ]
        )
        self._fail_at("step-finished-after-commit", step)

    async def run_finished(self, state: RunState, report: dict[str, Any]) -> None:
        await self._write(
            [
                (
                    "UPDATE runs SET status = ?, error = ?, position = ?, updated = ?, "
                    "lease_owner = NULL, lease_until = NULL WHERE id = ?",
                    (
                        state.status,
                        _dump(state.error) if state.error is not None else None,
                        state.position,
                        time.time(),
                        self.run_id,
                    ),
                )
            ]
        )
        self.released = True

    async def sleep(self, state: RunState, step: FlowStep, seconds: float) -> None:
        wake_at = time.time() + seconds
        if seconds >= PERSIST_WAKE_SECONDS:
            # Short sleeps (retry back-off, a fast poll) are not worth a commit; long ones
            # are what a restart must not forget.
            await self._write(
                [
                    (
                        "UPDATE attempts SET wake_at = ? WHERE run_id = ? AND seq = ?",
                        (wake_at, self.run_id, self._current[step.id]),
                    )
                ]
            )
        await self._sleep_until(wake_at)

    async def _sleep_until(self, wake_at: float) -> None:
        while True:
            remaining = wake_at - time.time()
            if remaining <= 0:
                return
            await asyncio.sleep(min(remaining, CANCEL_POLL_SECONDS))
            if self.store.cancel_requested(self.run_id):
                raise RunCancelled(f"run {self.run_id} was cancelled")


@contextlib.asynccontextmanager
async def leased(
    store: RunStore, run_id: str, owner: str, journal: StoreJournal | None = None
) -> AsyncIterator[None]:
    """Hold the run's lease while the block runs, renewing it in the background.

    A journal whose run-finished write already released the lease saves the extra write.
    """

    async def renew() -> None:
        while True:
            await asyncio.sleep(LEASE_SECONDS / 3)
            await store.write(store.renew_ops(run_id, owner), fence=(run_id, owner))

    task = asyncio.create_task(renew())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, StoreError):
            await task
        if journal is None or not journal.released:
            with contextlib.suppress(StoreError):
                await store.write(store.release_ops(run_id, owner))


async def start(
    runtime: Runtime,
    store: RunStore,
    flow: Flow,
    *,
    inputs: Mapping[str, Any],
    authorizations_file: Path | None = None,
    run_id: str | None = None,
    log_level: str | None = None,
    report_file: Path | IO[str] | None = None,
    console: IO[str] | None = None,
) -> RunResult:
    """Start a new durable run of a validated flow."""
    from .reports import ensure_writable
    from .runtime import new_run_id

    # What can still be wrong with the input is found before the run is recorded, so a
    # missing secret or an unwritable report file leaves no run behind (exit 2, no effect).
    runtime.prepare(flow)
    ensure_writable(report_file)
    run_id = run_id or new_run_id()
    owner = lease_owner()
    state = RunState(
        run_id=run_id,
        flow=flow,
        inputs={**flow.inputs, **inputs},
        position=flow.steps[0].id,
        authorization=flow.authorization,
    )
    await store.write(
        store.create_run_ops(
            run_id=run_id,
            flow=flow.name,
            flow_file=flow.file,
            flow_text=flow.source.text,
            flow_hash=flow.digest,
            base_dir=str(flow.base_dir),
            inputs=state.inputs,
            authorizations_file=str(authorizations_file.resolve()) if authorizations_file else None,
            position=state.position,
            authorization=state.authorization,
            owner=owner,
        )
    )
    journal = StoreJournal(store, run_id, owner=owner, failpoint=runtime.environ.get(FAILPOINT_ENV))
    async with leased(store, run_id, owner, journal):
        return await runtime.resume(
            state, log_level=log_level, report_file=report_file, console=console, journal=journal
        )


async def resume(
    runtime: Runtime,
    store: RunStore,
    run_id: str,
    *,
    authorizations: Mapping[str, Any] | None = None,
    log_level: str | None = None,
    report_file: Path | None = None,
    console: IO[str] | None = None,
) -> RunResult:
    """Continue a run from where it stopped (a crash, a kill, or a failed step)."""
    row = store.run(run_id)
    run_id = row.id
    if row.status == "succeeded":
        raise InvalidInput(f"run {run_id} already succeeded; there is nothing to resume")
    if row.status == "cancelled":
        raise InvalidInput(f"run {run_id} was cancelled; start a new run instead")
    owner = lease_owner()
    store.acquire(run_id, owner)  # raises if a live process drives it
    try:
        state, carried, next_seq = _restore(runtime, store, row, authorizations)
    except BaseException:
        store.write_now(store.release_ops(run_id, owner))
        raise
    if console is not None:
        print(
            f"resuming run {run_id} at step {state.position!r} "
            f"({state.executed} step executions so far)",
            file=console,
            flush=True,
        )
    if row.status == "failed":
        await store.write(
            [("UPDATE runs SET status = 'running', error = NULL WHERE id = ?", (run_id,))]
        )
    journal = StoreJournal(
        store,
        run_id,
        owner=owner,
        next_seq=next_seq,
        carried=carried,
        failpoint=runtime.environ.get(FAILPOINT_ENV),
    )
    async with leased(store, run_id, owner, journal):
        return await runtime.resume(
            state, log_level=log_level, report_file=report_file, console=console, journal=journal
        )


async def start_many(
    runtime: Runtime,
    store: RunStore,
    flow: Flow,
    rows: list[dict[str, Any]],
    *,
    concurrency: int,
    authorizations_file: Path | None = None,
    log_level: str | None = None,
    report_file: IO[str] | None = None,
    console: IO[str] | None = None,
) -> list[RunResult]:
    """One durable run per row of inputs, ``concurrency`` at a time, in this process."""
    from .runtime import RunResult

    gate = asyncio.Semaphore(concurrency)

    async def one(index: int, row: dict[str, Any]) -> RunResult:
        async with gate:
            result = await start(
                runtime,
                store,
                flow,
                inputs=row,
                authorizations_file=authorizations_file,
                log_level=log_level,
                report_file=report_file,
            )
        if console is not None:
            where = ""
            if result.error and result.status != "succeeded":
                where = f": {result.error.get('message')}"
            print(f"row {index + 1}: run {result.run_id} {result.status}{where}", file=console)
        return result

    results = await asyncio.gather(
        *(one(i, row) for i, row in enumerate(rows)), return_exceptions=True
    )
    out: list[RunResult] = []
    for index, result in enumerate(results):
        if isinstance(result, BaseException):
            if not isinstance(result, Exception):
                raise result
            out.append(
                RunResult(
                    run_id="",
                    flow=flow.name,
                    status="failed",
                    merge_fields={},
                    error={"type": "run_error", "message": f"row {index + 1}: {result}"},
                )
            )
        else:
            out.append(result)
    return out


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
    from .store import owner_alive

    row = store.run(run_id)
    run_id = row.id
    if row.status in ("succeeded", "cancelled") and not cancel_jobs:
        raise InvalidInput(f"run {run_id} already {row.status}; there is nothing to stop")
    await store.write(
        [("UPDATE runs SET cancel_requested = 1, updated = ? WHERE id = ?", (time.time(), run_id))]
    )
    live = bool(row.lease_owner) and owner_alive(row.lease_owner or "")
    if row.status in ("running", "failed") and not live:
        # Nobody drives it (it crashed, or it failed and waits for a resume): stop it here.
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
    flow = _stored_flow(runtime, row, authorizations)
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
    from .authorizations import resolve_authorization
    from .secrets import Redactor

    authorization = None
    if auth_name:
        authorization = resolve_authorization(
            auth_name,
            flow.authorizations[auth_name],
            environ=runtime.environ,
            base_dir=flow.base_dir,
            redactor=Redactor(),
        )
    return await runtime.run_step(step_type, config, authorization=authorization)


def _restore(
    runtime: Runtime,
    store: RunStore,
    row: RunRow,
    authorizations: Mapping[str, Any] | None,
) -> tuple[RunState, dict[str, dict[str, Any]], int]:
    import hashlib

    if hashlib.sha256(row.flow_text.encode("utf-8")).hexdigest() != row.flow_hash:
        raise StoreError(
            f"run {row.id}: the stored flow text does not match its hash; the store is "
            "damaged and the run cannot be resumed safely"
        )
    flow = _stored_flow(runtime, row, authorizations)
    attempts = store.attempts(row.id)
    merge_fields = store.merge_fields(row.id)
    counts: dict[str, int] = {}
    for attempt in attempts:
        counts[attempt.step_id] = max(counts.get(attempt.step_id, 0), attempt.attempt)
    carried: dict[str, dict[str, Any]] = {}
    position = row.position
    error = row.error
    last = attempts[-1] if attempts else None
    if last is not None and last.status == "started":
        # Killed mid-step: that step runs again, told it is resuming.
        position = last.step_id
        carried[last.step_id] = dict(last.saved)
        if last.wake_at is not None:
            carried[last.step_id]["_wake_at"] = last.wake_at
    elif row.status == "failed":
        failed_step = (row.error or {}).get("step") or (last.step_id if last else None)
        if failed_step is None or failed_step not in flow.by_id:
            raise InvalidInput(f"run {row.id} failed before any step; start a new run instead")
        position = failed_step
        error = None
        if last is not None and last.step_id == failed_step:
            # Its last attempt may have had an effect before failing (an ambiguous create):
            # reconcile first, exactly as after a crash.
            carried[failed_step] = dict(last.saved)
    state = RunState(
        run_id=row.id,
        flow=flow,
        inputs=row.inputs,
        position=position,
        authorization=row.authorization,
        merge_fields=merge_fields,
        error=error,
        executed=row.executed,
        started=row.started,
        attempts=counts,
        unfinished={
            k: {kk: vv for kk, vv in v.items() if kk != "_wake_at"} for k, v in carried.items()
        },
    )
    next_seq = (attempts[-1].seq + 1) if attempts else 1
    return state, carried, next_seq


def _stored_flow(runtime: Runtime, row: RunRow, authorizations: Mapping[str, Any] | None) -> Flow:
    """The run's flow as it was when it started, with the authorizations given now, else
    those of the file it started with."""
    if authorizations is None and row.authorizations_file:
        from .authorizations import read_authorizations_file

        authorizations = read_authorizations_file(Path(row.authorizations_file), runtime.schemas)
    return runtime.load_text(
        row.flow_text,
        file=row.flow_file,
        base_dir=Path(row.base_dir),
        inputs=row.inputs,
        authorizations=authorizations,
    )


def _dump(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


__all__ = [
    "FAILPOINT_ENV",
    "StoreJournal",
    "cancel",
    "leased",
    "resume",
    "start",
    "start_many",
]
