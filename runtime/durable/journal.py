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
import os
import signal
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from ..errors import InvalidInput, RunCancelled, StoreError
from ..flow import Flow, FlowStep
from ..runner import RunState
from ..store import LEASE_SECONDS, Op, RunStore
from ..store.rows import dump

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
                    (self.run_id, seq, step.id, step.type, attempt, now, dump(saved), wake_at),
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
                    (dump(data), self.run_id, self._current[step.id]),
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
                    (report["status"], now, dump(report), self.run_id, self._current[step.id]),
                ),
                (
                    "INSERT OR REPLACE INTO merge_fields (run_id, name, value) VALUES (?,?,?)",
                    (self.run_id, step.merge_field, dump(state.merge_fields[step.merge_field])),
                ),
                (
                    "UPDATE runs SET position = ?, authorization = ?, error = ?, failure = ?, "
                    "executed = ?, status = ?, updated = ?, lease_until = ? WHERE id = ?",
                    (
                        state.position,
                        state.authorization,
                        dump(state.error) if state.error is not None else None,
                        dump(state.failure) if state.failure is not None else None,
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
        self.store.write_soon(
            [
                (
                    "INSERT INTO log_lines (run_id, attempt, line) VALUES (?,?,?)",
                    (self.run_id, seq, dump(line)),
                )
            ],
            fence=(self.run_id, self.owner),
        )

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


__all__ = ["FAILPOINTS", "FAILPOINT_ENV", "StoreJournal", "failpoint", "leased"]
