"""The journal of a run driven by a worker: waits and shutdowns hand the run back.

A worker drives a run like ``steprun resume`` does (the durable journal, the lease as the
fence), with two differences, both about freeing the worker's slot:

- A step that sleeps for ``hand_back_after`` seconds or more (a poll interval, a
  ``Retry-After``) does not sleep here. Its wake-up time is committed on its attempt, the
  run is parked (status ``waiting``) in the same fenced commit, and :class:`HandBack`
  unwinds the step; the queue runs the run again at that time, on whichever worker is free.
- Once the worker is stopping (SIGTERM), a run hands back after the step it is in
  (status ``queued``), or at once if that step sleeps.

A handed-back step is continued, not retried: the next driver goes on with the same
attempt row (same ``seq``, same execution count), resumed with what the step recorded,
exactly as after a crash, so a step that was mid-way through a create reconciles before
sending. Every drive is recorded in the lease history (``history``): a commit of its own
opens it before the drive writes anything else, and the commit that lets the run go
closes it, both under the lease.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from ..durable.journal import StoreJournal
from ..errors import StoreError
from ..flow import FlowStep
from ..runner import RunState
from ..store import Op, RunStore
from .history import began_ops, ended_ops


class HandBack(StoreError):
    """The run goes back to the queue until ``wake_at``: the driver stops here.

    A StoreError because the runner lets those through untouched (a step's own error exits
    must never catch it), exactly like a lost lease.
    """

    def __init__(self, run_id: str, wake_at: float, why: str) -> None:
        super().__init__(f"run {run_id} handed back: {why}")
        self.run_id = run_id
        self.wake_at = wake_at
        self.why = why


Say = Callable[[str], None]


class WorkerJournal(StoreJournal):
    """A StoreJournal that hands the run back instead of holding a worker while it waits."""

    def __init__(
        self,
        store: RunStore,
        run_id: str,
        *,
        hand_back_after: float,
        stopping: asyncio.Event,
        say: Say,
        reentry: tuple[str, int] | None = None,
        **journal: Any,
    ) -> None:
        super().__init__(store, run_id, **journal)
        self.hand_back_after = hand_back_after
        self.stopping = stopping
        self.say = say
        # (step id, seq) of the attempt an earlier driver handed back: continued, not redone.
        self._reentry = reentry
        self._continued: str | None = None  # the step continued, until it finishes
        self._opened = False  # this drive's row in the lease history is written
        self._closing: str | None = None  # how this drive ends, written with the last commit

    async def _commit(self, extra: list[Op] | None = None) -> None:
        if self._closing is not None:
            extra = [*(extra or []), *ended_ops(self.run_id, self.owner, self._closing)]
        await super()._commit(extra)

    async def _open(self) -> None:
        """Record, fenced, that this process drives the run from now: before anything
        else this drive commits, so that its row in the history spans all its writes."""
        if not self._opened:
            self._opened = True
            await super()._commit(began_ops(self.run_id, self.owner))

    async def step_started(self, state: RunState, step: FlowStep, attempt: int) -> None:
        await self._open()
        reentry, self._reentry = self._reentry, None
        if reentry is None or reentry[0] != step.id:
            await super().step_started(state, step, attempt)
            self.say(f"run {self.run_id} step {step.id!r} started")
            return
        # The runner counted this entry as a new execution; it is the same one, continued.
        state.executed -= 1
        state.attempts[step.id] = max(state.attempts.get(step.id, 1) - 1, 1)
        self._continued = step.id
        seq = reentry[1]
        self._current[step.id] = seq
        self._pending.stored(seq)  # its row is in the store: what changes is an UPDATE
        self._carried.pop(step.id, None)  # already on that row
        wake_at = self._wake.pop(step.id, None)
        # Nothing to commit: the run's row already says it is running (durable.resume)
        # at this step (the hand-back's commit).
        self.say(f"run {self.run_id} step {step.id!r} continues")
        if wake_at is not None and wake_at > time.time():
            await self._sleep_until(wake_at)  # the queue ran it a little early (clock skew)

    async def step_finished(self, state: RunState, step: FlowStep, report: dict[str, Any]) -> None:
        if step.id == self._continued:
            # Stored with the attempt it continued (the runner numbered the entry anew).
            report = {**report, "attempt": state.attempts[step.id]}
            self._continued = None
        await super().step_finished(state, step, report)
        self.say(f"run {self.run_id} step {step.id!r} {report['status']}")
        if self.stopping.is_set() and state.status == "running" and state.position is not None:
            await self._park(state, "queued", None)
            raise HandBack(self.run_id, time.time(), "this worker is stopping")

    async def run_finished(self, state: RunState, report: dict[str, Any]) -> None:
        self._closing = state.status  # closed in the commit that releases the lease
        await super().run_finished(state, report)

    async def sleep(self, state: RunState, step: FlowStep, seconds: float) -> None:
        if seconds < self.hand_back_after and not self.stopping.is_set():
            await super().sleep(state, step, seconds)
            return
        wake_at = time.time() + seconds
        await self._park(state, "waiting", (self._current[step.id], wake_at))
        why = "this worker is stopping" if self.stopping.is_set() else f"step {step.id!r} waits"
        raise HandBack(self.run_id, wake_at, f"{why} {seconds:.1f} s")

    async def _park(self, state: RunState, status: str, wake: tuple[int, float] | None) -> None:
        """Commit, fenced, what is held, that the run waits in the queue (with its wake-up
        time), and that this drive ends, before the lease is released."""
        if wake is not None:
            self._pending.wake(state, *wake)
        self._pending.touch(state)
        self._closing = "handed back"
        park = "UPDATE runs SET status = ?, updated = ? WHERE id = ?"
        await self._commit([(park, (status, time.time(), self.run_id))])


__all__ = ["HandBack", "WorkerJournal"]
