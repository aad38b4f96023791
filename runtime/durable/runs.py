"""Starting a durable run, and resuming one."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from ..errors import InvalidInput, StoreError
from ..flow import Flow
from ..runner import RunState
from ..store import Op, RunRow, RunStore, lease_owner
from ..store.rows import dump
from .journal import StoreJournal, commit_interval, failpoint, leased

if TYPE_CHECKING:
    from ..runtime import RunResult, Runtime


async def start(
    runtime: Runtime,
    store: RunStore,
    flow: Flow,
    *,
    inputs: Mapping[str, Any],
    authorizations_file: Path | None = None,
    run_id: str | None = None,
    batch: tuple[str, int] | None = None,
    log_level: str | None = None,
    report_file: Path | IO[str] | None = None,
    console: IO[str] | None = None,
) -> RunResult:
    """Start a new durable run of a validated flow (as row ``batch[1]`` of batch
    ``batch[0]``: recorded with the run, refused if another run started that row)."""
    from ..reports import ensure_writable
    from ..runtime import new_run_id

    # What can still be wrong with the input is found before the run is recorded, so a
    # missing secret or an unwritable report file leaves no run behind (exit 2, no effect).
    runtime.prepare(flow)
    ensure_writable(report_file)
    fault = failpoint(runtime.environ, flow)
    interval = commit_interval(runtime.environ)
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
        + (store.batch_row_ops(run_id, *batch) if batch else [])
    )
    journal = StoreJournal(
        store,
        run_id,
        owner=owner,
        step_types=runtime.step_types,
        failpoint=fault,
        commit_seconds=interval,
    )
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
    report_file: Path | IO[str] | None = None,
    console: IO[str] | None = None,
    flow_file: Path | None = None,
    inputs: Mapping[str, Any] | None = None,
    make_journal: Callable[..., StoreJournal] = StoreJournal,
) -> RunResult:
    """Continue a run from where it stopped (a crash, a kill, or a failed step).

    ``flow_file`` replaces the run's stored flow (an edited file: a fix), after checking that
    the run's position and every merge field it wrote still exist in it; ``inputs``
    override the run's inputs. Both are stored: a later resume continues with them.
    ``make_journal`` builds the run's journal (a worker's hands the run back when it waits).
    """
    row = store.run(run_id)
    run_id = row.id
    if row.status == "succeeded":
        raise InvalidInput(f"run {run_id} already succeeded; there is nothing to resume")
    if row.status == "cancelled":
        raise InvalidInput(f"run {run_id} was cancelled; start a new run instead")
    owner = lease_owner()
    store.acquire(run_id, owner)  # raises if a live process drives it
    try:
        state, carried, next_seq = _restore(
            runtime, store, row, authorizations, flow_file, set(inputs or ())
        )
        fault = failpoint(runtime.environ, state.flow)
        interval = commit_interval(runtime.environ)
        if flow_file is not None or inputs:
            state.flow.check_inputs(inputs or {}, "--input")
            state.inputs = {**state.inputs, **(inputs or {})}
            await store.write(_replace_ops(row, state))
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
            [
                (
                    "UPDATE runs SET status = 'running', error = NULL, failure = NULL WHERE id = ?",
                    (run_id,),
                )
            ]
        )
    elif row.status != "running":  # queued or waiting for a worker: driven from now
        await store.write([("UPDATE runs SET status = 'running' WHERE id = ?", (run_id,))])
    journal = make_journal(
        store,
        run_id,
        owner=owner,
        step_types=runtime.step_types,
        next_seq=next_seq,
        carried=carried,
        failpoint=fault,
        commit_seconds=interval,
    )
    async with leased(store, run_id, owner, journal):
        return await runtime.resume(
            state, log_level=log_level, report_file=report_file, console=console, journal=journal
        )


def _restore(
    runtime: Runtime,
    store: RunStore,
    row: RunRow,
    authorizations: Mapping[str, Any] | None,
    flow_file: Path | None = None,
    new_inputs: set[str] | None = None,
) -> tuple[RunState, dict[str, dict[str, Any]], int]:
    import hashlib

    if hashlib.sha256(row.flow_text.encode("utf-8")).hexdigest() != row.flow_hash:
        raise StoreError(
            f"run {row.id}: the stored flow text does not match its hash; the store is "
            "damaged and the run cannot be resumed safely"
        )
    flow = stored_flow(runtime, row, authorizations, flow_file, new_inputs or set())
    attempts = store.attempts(row.id)
    merge_fields = store.merge_fields(row.id)
    counts: dict[str, int] = {}
    for attempt in attempts:
        counts[attempt.step_id] = max(counts.get(attempt.step_id, 0), attempt.attempt)
    carried: dict[str, dict[str, Any]] = {}
    position = row.position
    error = row.error
    failure = row.failure
    last = attempts[-1] if attempts else None
    if last is not None and last.status == "started":
        # Killed mid-step: that step runs again, told it is resuming.
        position = last.step_id
        carried[last.step_id] = dict(last.saved)
        if last.wake_at is not None:
            carried[last.step_id]["_wake_at"] = last.wake_at
    elif row.status == "failed":
        failed_step = (row.error or {}).get("step") or (last.step_id if last else None)
        if failed_step is None or (failed_step not in flow.by_id and flow_file is None):
            raise InvalidInput(f"run {row.id} failed before any step; start a new run instead")
        position = failed_step
        error = failure = None
        if last is not None and last.step_id == failed_step:
            # Its last attempt may have had an effect before failing (an ambiguous create):
            # reconcile first, exactly as after a crash.
            carried[failed_step] = dict(last.saved)
    if flow_file is not None:
        _check_compatible(row, flow, position, merge_fields)
    state = RunState(
        run_id=row.id,
        flow=flow,
        inputs=row.inputs,
        position=position,
        authorization=row.authorization,
        merge_fields=merge_fields,
        error=error,
        failure=failure,
        handled=[a.step_id for a in attempts if a.status == "error_handled"],
        in_handler=row.status != "failed" and any(a.step_id == flow.on_error for a in attempts),
        executed=row.executed,
        started=row.started,
        attempts=counts,
        unfinished={
            k: {kk: vv for kk, vv in v.items() if kk != "_wake_at"} for k, v in carried.items()
        },
    )
    next_seq = (attempts[-1].seq + 1) if attempts else 1
    return state, carried, next_seq


def _check_compatible(
    row: RunRow, flow: Flow, position: str | None, merge_fields: Mapping[str, Any]
) -> None:
    """Refuse (exit 2) a flow that cannot continue this run: its position or a merge field
    the run already wrote would be gone."""
    problems = []
    if position is not None and position not in flow.by_id:
        problems.append(f"the run continues at step {position!r}, which {flow.file} does not have")
    writers = {s.merge_field for s in flow.steps}
    lost = sorted(set(merge_fields) - writers)
    if lost:
        problems.append(
            f"the run already wrote merge field(s) {', '.join(lost)}, which no step of "
            f"{flow.file} writes"
        )
    if problems:
        raise InvalidInput(
            f"{flow.file} cannot continue run {row.id}: {'; and '.join(problems)}. Keep "
            "those step ids (and merge fields) when editing a flow for a resume, or start "
            "a new run"
        )


def _replace_ops(row: RunRow, state: RunState) -> list[Op]:
    """Store the flow and inputs a resume continues with, for every later resume."""
    flow = state.flow
    return [
        (
            "UPDATE runs SET flow = ?, flow_file = ?, flow_text = ?, flow_hash = ?, "
            "base_dir = ?, inputs = ? WHERE id = ?",
            (
                flow.name,
                flow.file,
                flow.source.text,
                flow.digest,
                str(flow.base_dir),
                dump(state.inputs),
                row.id,
            ),
        )
    ]


def stored_flow(
    runtime: Runtime,
    row: RunRow,
    authorizations: Mapping[str, Any] | None,
    flow_file: Path | None = None,
    new_inputs: set[str] | None = None,
) -> Flow:
    """The run's flow as it was when it started (or the edited ``flow_file``), with the
    authorizations given now, else those of the file it started with."""
    if authorizations is None and row.authorizations_file:
        from ..authorizations import read_authorizations_file

        authorizations = read_authorizations_file(Path(row.authorizations_file), runtime.schemas)
    if flow_file is not None:
        names = set(row.inputs) | (new_inputs or set())
        return runtime.load(flow_file, inputs=names, authorizations=authorizations)
    return runtime.load_text(
        row.flow_text,
        file=row.flow_file,
        base_dir=Path(row.base_dir),
        inputs=row.inputs,
        authorizations=authorizations,
    )


__all__ = ["resume", "start", "stored_flow"]
