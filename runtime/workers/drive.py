"""Driving one run for one queue job: from where it stands until it ends or hands back.

The job's outcome tells the queue what to do next:

- the run ended (succeeded, failed, cancelled), or another process drives it for good:
  the job succeeds;
- :class:`~.journal.HandBack`: the job is retried at the run's wake-up time (its wait),
  at once (this worker is stopping), or when the lease another process holds expires;
- the run cannot be driven here at all (its flow no longer loads, a secret is missing on
  this worker): the run is marked failed with the reason, for a person to fix and
  ``steprun resume``; the job fails.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInput, SteprunError, StoreError, StoreUnavailable
from ..store import LEASE_SECONDS, AttemptRow, LeaseLost, RunStore, lease_owner, owner_alive
from ..store.rows import dump
from .history import ended_ops
from .journal import HandBack, WorkerJournal

if TYPE_CHECKING:
    from ..runtime import Runtime

FINISHED = ("succeeded", "failed", "cancelled")
# Statuses a worker may pick a run up in: recorded by --submit, parked, or mid-way.
DRIVABLE = ("queued", "waiting", "running")


@dataclass
class Driver:
    """What every job of one worker process shares."""

    runtime: Runtime
    store: RunStore
    hand_back_after: float
    stopping: asyncio.Event
    say: Callable[[str], None]
    owner: str = ""
    # Runs this process drives now. Its lease owner is the same for all of them, so the
    # lease alone cannot keep a second job of one run (the queue retried a job whose
    # worker it took for dead) from driving it beside the first here.
    driving: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.owner = self.owner or lease_owner()

    async def drive(self, run_id: str) -> str:
        """Drive ``run_id`` for one slice; returns how it ended (the job's result)."""
        row = self.store.run(run_id)
        if row.status not in DRIVABLE:
            self.say(f"run {run_id} is {row.status}: nothing to do")
            return f"run {run_id} is {row.status}: nothing to do"
        last = None
        if row.status == "waiting":  # only a parked run has a wake-up time and a step to go on
            attempts = self.store.attempts(run_id)
            last = attempts[-1] if attempts else None
        wake_at = last.wake_at if last is not None else None
        if wake_at is not None and wake_at > time.time() + 1.0:
            raise HandBack(run_id, wake_at, "not due yet")  # somebody enqueued it early
        held_until = self._held_elsewhere(row.lease_owner, row.lease_until)
        if held_until is not None:
            raise HandBack(run_id, held_until, f"{row.lease_owner} holds its lease")
        if run_id in self.driving:
            raise HandBack(run_id, time.time() + LEASE_SECONDS, "this worker drives it already")
        self.driving.add(run_id)
        try:
            return await self._drive(run_id, row.status, row.position, last)
        finally:
            self.driving.discard(run_id)

    async def _drive(
        self, run_id: str, status: str, position: str | None, last: AttemptRow | None
    ) -> str:
        from .. import durable

        reentry = None
        if status == "waiting" and last is not None and last.status == "started":
            reentry = (last.step_id, last.seq)
        make_journal = functools.partial(
            WorkerJournal,
            hand_back_after=self.hand_back_after,
            stopping=self.stopping,
            say=self.say,
            reentry=reentry,
        )
        where = f"at step {reentry[0]!r}" if reentry else f"at step {position!r}"
        self.say(f"run {run_id} taken ({status}, {where})")
        try:
            result = await durable.resume(
                self.runtime, self.store, run_id, make_journal=make_journal
            )
        except HandBack as handed:
            self.say(f"run {run_id} handed back until {_clock(handed.wake_at)}: {handed.why}")
            raise
        except LeaseLost as exc:
            await self._ended(run_id, "lease lost")
            self.say(f"run {run_id} dropped: {exc}")
            return "lease lost: another process drives the run"
        except StoreUnavailable:
            raise  # the queue retries the job shortly
        except StoreError as exc:
            row = self.store.run(run_id)
            held_until = self._held_elsewhere(row.lease_owner, row.lease_until)
            if held_until is not None:  # lost the race for the lease
                raise HandBack(run_id, held_until, f"{row.lease_owner} holds its lease") from exc
            raise
        except (InvalidInput, SteprunError) as exc:
            await self._fail(run_id, exc)
            raise
        self.say(f"run {run_id} {result.status}")
        return f"run {run_id} {result.status}"

    def _held_elsewhere(self, holder: str | None, until: float | None) -> float | None:
        """When another live process's lease on the run ends, or None if it holds none."""
        now = time.time()
        if not holder or holder == self.owner or not until or until <= now:
            return None
        if not owner_alive(holder):
            return None  # a dead process on this machine: its lease is void at once
        return min(until, now + LEASE_SECONDS) + 0.5

    async def _ended(self, run_id: str, how: str) -> None:
        # After an error, when the lease may be gone: not fenced. The row names its owner,
        # so this closes only what this process opened.
        await self.store.write(ended_ops(run_id, self.owner, how))

    async def _fail(self, run_id: str, exc: BaseException) -> None:
        error: dict[str, Any] = {
            "type": "worker_error",
            "message": f"a worker could not drive the run: {exc}",
            "code": "not_drivable",
            "param": None,
            "status": None,
            "request_id": None,
            "step": None,
        }
        self.say(f"run {run_id} failed here: {exc}")
        await self.store.write(
            [
                (
                    "UPDATE runs SET status = 'failed', error = ?, updated = ? "
                    "WHERE id = ? AND lease_owner IS NULL AND status IN "
                    "('queued', 'waiting', 'running')",
                    (dump(error), time.time(), run_id),
                )
            ]
        )
        await self._ended(run_id, "failed here")


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(at))


__all__ = ["DRIVABLE", "FINISHED", "Driver"]
