"""Durable runs: the journal that writes the step boundaries to the run store, and resume.

The rule that makes a crash safe: nothing a step does outside the process is lost or done
twice. So a step with an effect (``effect="idempotent"`` or ``"reconcile"``) has its
"started" committed, with everything still held from the steps before it, before its
first request that may have an effect (any method but GET, HEAD and OPTIONS through
``context.http``: the runner tells the journal through ``step_acting``), its first
``context.checkpoint`` or its end, whichever comes first; and its result committed before
the run moves on. One commit before the effect, one after: a create step's look-up
(GET) costs no commit, and its checkpoint (the tag to look for, before the request) is the
commit that carries its start. A resumed run finds the last attempt "started" with no
result and runs that step again with ``context.resumed = True``: idempotent steps repeat
harmlessly, and steps with ``effect="reconcile"`` (create a job, upload a file) first look
for what the interrupted attempt did, using what it recorded with ``context.checkpoint``.
A step killed before its start was committed had sent nothing that may have an effect,
and simply runs again.

A step with ``effect="none"`` only reads, so it is **not** committed on its own: its start
and result are held in memory (``pending``) and go to the store with the next commit,
which comes before the next step with an effect, with a checkpoint, a persisted wake-up
time, the end of the run, or once what is held is ``COMMIT_SECONDS`` old (checked at each
step boundary, sleep and log line; ``STEPRUN_COMMIT_INTERVAL`` sets it; that timed commit
is not waited for, and the next commit waits for it first). Why that is safe: a
crash loses at most the pure steps run since the last commit, and every commit is a
consistent state of the run (its row, merge fields and attempts as they were at one
instant), so a resume continues from that state and runs those pure steps again. Running
a step that only reads once more has no effect anyone can see, and no effect is ever
lost, because every step with one commits first. Why it matters: an fsync costs
milliseconds, a pure step microseconds; a loop of ``core.set`` and ``core.condition``
spent 53 % of its time waiting for fsync.

Failpoints, for testing that promise (ours and our users'): ``STEPRUN_FAILPOINT=POINT@STEP``
kills the process with SIGKILL at POINT of step STEP, where POINT is ``step-started``
(after "started" is committed, before the step runs), ``step-finished-before-commit``
(the step has its result, nothing of it is committed) or ``step-finished-after-commit``.
On a pure step, ``step-started`` and ``step-finished-after-commit`` commit what is held
first, so that each point means the same for every step (a state the timed commit can
reach too); ``step-finished-before-commit`` commits nothing, so a kill there loses the pure
steps held since the last commit, as a crash would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from ..durations import parse_duration
from ..errors import InvalidInput, RunCancelled, StoreError
from ..flow import Flow, FlowStep
from ..runner import RunState
from ..step import StepType
from ..store import LEASE_SECONDS, Op, RunStore
from ..store.rows import dump
from .pending import Pending

FAILPOINT_ENV = "STEPRUN_FAILPOINT"
FAILPOINTS = ("step-started", "step-finished-before-commit", "step-finished-after-commit")


def failpoint(environ: Mapping[str, str], flow: Flow) -> str | None:
    """The failpoint STEPRUN_FAILPOINT sets for ``flow``, or None; one that could never fire
    is refused, so a fault test cannot pass without testing anything."""
    value = environ.get(FAILPOINT_ENV)
    if not value:
        return None
    point, at, step = value.partition("@")
    if point not in FAILPOINTS or not at:
        raise InvalidInput(
            f"{FAILPOINT_ENV}={value!r} names no failpoint; use POINT@STEP, where POINT is "
            f"one of {', '.join(FAILPOINTS)}"
        )
    if step not in flow.by_id:
        raise InvalidInput(
            f"{FAILPOINT_ENV}={value!r}: flow {flow.name!r} has no step {step!r}, so it "
            "would never fire; name one of its steps"
        )
    return value


CANCEL_POLL_SECONDS = 1.0
CANCEL_CHECK_SECONDS = 0.5
# A wait shorter than this is not worth a commit: a restart that forgets it polls at most
# this much early. Longer ones (a long poll interval, a Retry-After) are kept.
PERSIST_WAKE_SECONDS = 3.0
# Pure steps held longer than this are committed at the next step boundary or sleep: a
# crash re-runs at most about this much of them, and `steprun show` / `logs --follow` of a
# live run lag by it. STEPRUN_COMMIT_INTERVAL sets another (0: commit every step).
COMMIT_SECONDS = 0.25
COMMIT_INTERVAL_ENV = "STEPRUN_COMMIT_INTERVAL"


def commit_interval(environ: Mapping[str, str]) -> float:
    """How long pure steps may be held uncommitted (``STEPRUN_COMMIT_INTERVAL``)."""
    value = environ.get(COMMIT_INTERVAL_ENV, "").strip()
    if not value:
        return COMMIT_SECONDS
    if value in ("0", "0s", "0ms"):
        return 0.0
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise InvalidInput(
            f"{COMMIT_INTERVAL_ENV}={value!r}: {exc}; use e.g. 250ms, 2s, or 0 to commit "
            "after every step"
        ) from None


class StoreJournal:
    """Implements the runner's Journal on a RunStore, for one run."""

    def __init__(
        self,
        store: RunStore,
        run_id: str,
        *,
        owner: str,
        step_types: Mapping[str, StepType] | None = None,
        next_seq: int = 1,
        carried: Mapping[str, dict[str, Any]] | None = None,
        failpoint: str | None = None,
        commit_seconds: float = COMMIT_SECONDS,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self.owner = owner
        # The step types, to read each one's effect; a type not known here is treated as
        # having one. Looked up by name, not copied: a runtime's catalog imports a step pack
        # only when one of its types is asked for (runtime/packs.py).
        self._types: Mapping[str, StepType] = {} if step_types is None else step_types
        self._seq = next_seq
        self._current: dict[str, int] = {}
        # What an interrupted attempt recorded, per step: copied into the next attempt's row
        # so a second crash before it records anything loses nothing.
        self._carried: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (carried or {}).items()}
        self._wake: dict[str, float] = {
            k: float(v.pop("_wake_at")) for k, v in self._carried.items() if "_wake_at" in v
        }
        self._failpoint = failpoint
        self._commit_seconds = commit_seconds
        self._cancel_checked = -CANCEL_CHECK_SECONDS
        self._pending = Pending(run_id)
        self._inflight: asyncio.Future[None] | None = None  # a timed commit not awaited yet
        self._lock = asyncio.Lock()  # awaited commits, one at a time
        self.commits = 0  # how many commits this journal made (tests count them)
        self.released = False  # the run-finished write cleared the lease

    def _pure(self, step: FlowStep) -> bool:
        found = self._types.get(step.type)
        return found is not None and found.effect == "none"

    async def _commit(self, extra: list[Op] | None = None) -> None:
        """Commit everything held (and ``extra``) in one transaction, and wait for it.

        One at a time, and the rows are taken when sent: a step may send requests at once,
        each asking for its start to be durable (step_acting); none writes a row twice.
        """
        async with self._lock:
            await self._settle()
            if not self._pending and not extra:
                return
            ops = self._pending.ops()
            if extra:
                ops += extra
            # Taken now: a log line while the disk works starts the next batch.
            self._pending.committed()
            # Fenced: once another process has taken this run over, nothing more is written.
            await self.store.write(ops, fence=(self.run_id, self.owner))
            self.commits += 1

    async def _settle(self) -> None:
        """Wait for the timed commit still in flight; raise what it met. Commits land in
        order, and none is sent after one that failed: a later one must not leave the
        store with a hole (a merge field only the failed one carried)."""
        inflight, self._inflight = self._inflight, None
        if inflight is not None:
            await inflight

    def _send_held(self) -> None:
        """Commit what is held without waiting for it (the timed commit): pure steps go on
        while the disk works. One at a time; a failed one is raised by :meth:`_settle`."""
        if self._inflight is not None or self._lock.locked() or not self._pending:
            return
        ops = self._pending.ops()
        self._pending.committed()
        self.commits += 1
        task = asyncio.ensure_future(self.store.write(ops, fence=(self.run_id, self.owner)))
        # Its error is raised where it is awaited; never "exception was never retrieved".
        task.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._inflight = task

    async def _commit_if_due(self) -> None:
        if not self._commit_seconds:  # STEPRUN_COMMIT_INTERVAL=0: every boundary, waited for
            await self._commit()
            return
        if self._inflight is not None and self._inflight.done():
            await self._settle()
        if self._pending.age() >= self._commit_seconds:
            self._send_held()

    async def _fail_at(self, point: str, step: FlowStep, *, commit: bool = False) -> None:
        if self._failpoint == f"{point}@{step.id}":
            if commit:
                await self._commit()
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
        self._pending.started(state, seq, step.id, step.type, attempt, saved, wake_at)
        # A step with an effect commits its start (with the pure steps held before it) at
        # step_acting, its checkpoint or its end: not here, so that a look-up it makes
        # first costs nothing and its checkpoint is the one commit before its effect.
        if self._pure(step):
            await self._commit_if_due()
        await self._fail_at("step-started", step, commit=True)
        if wake_at is not None and wake_at > time.time():
            # The interrupted attempt was waiting (a poll interval, a Retry-After): keep
            # its wake-up time instead of hammering the API right after a restart.
            await self._sleep_until(wake_at)

    async def step_acting(self, state: RunState, step: FlowStep) -> None:
        seq = self._current[step.id]
        if (
            self._inflight is None
            and not self._lock.locked()
            and not self._pending.holds_start(seq)
        ):
            return  # its start is in the store
        # Its start may be in a commit not landed yet (a timed one, another request's):
        # wait for those, then commit it if it is still only held.
        await self._settle()
        async with self._lock:
            pass
        if self._pending.holds_start(seq):
            await self._commit()

    async def step_checkpoint(self, state: RunState, step: FlowStep, data: dict[str, Any]) -> None:
        self._pending.saved(state, self._current[step.id], data)
        await self._commit()

    async def step_finished(self, state: RunState, step: FlowStep, report: dict[str, Any]) -> None:
        await self._fail_at("step-finished-before-commit", step)
        self._pending.finished(
            state, self._current[step.id], report["status"], report, step.merge_field
        )
        if not self._pure(step):
            await self._commit()  # its effect is known before the run moves on
        else:
            await self._commit_if_due()
        await self._fail_at("step-finished-after-commit", step, commit=True)

    async def run_finished(self, state: RunState, report: dict[str, Any]) -> None:
        self._pending.touch(state)
        await self._commit(
            [
                (
                    "UPDATE runs SET status = ?, error = ?, position = ?, updated = ?, "
                    "lease_owner = NULL, lease_until = NULL WHERE id = ?",
                    (
                        state.status,
                        dump(state.error) if state.error is not None else None,
                        state.position,
                        time.time(),
                        self.run_id,
                    ),
                )
            ]
        )
        self.released = True

    def log_line(self, state: RunState, step: FlowStep, line: dict[str, Any]) -> None:
        seq = self._current.get(step.id)
        if seq is None:
            return
        self._pending.line(seq, line)
        if self._pending.age() >= self._commit_seconds:
            try:
                asyncio.get_running_loop()
            except RuntimeError:  # logged from a step's own thread: the next boundary sends it
                return
            # A long step's lines reach `logs --follow` while it runs (this must not block).
            self._send_held()

    async def sleep(self, state: RunState, step: FlowStep, seconds: float) -> None:
        wake_at = time.time() + seconds
        if seconds >= PERSIST_WAKE_SECONDS:
            # Short sleeps (retry back-off, a fast poll) are not worth a commit; long ones
            # are what a restart must not forget.
            self._pending.wake(state, self._current[step.id], wake_at)
            await self._commit()
        else:
            await self._commit_if_due()
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


__all__ = [
    "COMMIT_INTERVAL_ENV",
    "FAILPOINTS",
    "FAILPOINT_ENV",
    "StoreJournal",
    "commit_interval",
    "failpoint",
    "leased",
]
