"""What a run's journal has recorded but not yet committed, and the ops that commit it.

Held as the latest value of each thing rather than as a list of statements: a loop of pure
steps that rewrites one merge field a thousand times between two commits writes it once,
and a step that starts and finishes between two commits is one ``INSERT``. Values are
turned into JSON when committed, not when recorded, for the same reason.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from ..runner import RunState
from ..store import LEASE_SECONDS, Op
from ..store.rows import dump


@dataclass
class _Attempt:
    step_id: str
    step_type: str
    attempt: int
    started: float
    status: str = "started"
    saved: dict[str, Any] | None = None
    wake_at: float | None = None
    ended: float | None = None
    report: dict[str, Any] | None = None


class Pending:
    """One run's uncommitted step boundaries (attempts, merge fields, its row, log lines)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        self._attempts: dict[int, _Attempt] = {}
        self._stored: set[int] = set()  # attempts whose row is already in the store
        self._fields: set[str] = set()
        self._lines: list[tuple[int, dict[str, Any]]] = []
        self._state: RunState | None = None  # its row is written from this, as it is then
        self.since: float | None = None  # monotonic time the oldest uncommitted change was made

    def __bool__(self) -> bool:
        return self.since is not None

    def age(self) -> float:
        return 0.0 if self.since is None else time.monotonic() - self.since

    def touch(self, state: RunState | None) -> None:
        if state is not None:
            self._state = state
        if self.since is None:
            self.since = time.monotonic()

    def started(
        self,
        state: RunState,
        seq: int,
        step_id: str,
        step_type: str,
        attempt: int,
        saved: dict[str, Any],
        wake_at: float | None,
    ) -> None:
        self._attempts[seq] = _Attempt(
            step_id, step_type, attempt, time.time(), saved=saved, wake_at=wake_at
        )
        self.touch(state)

    def holds_start(self, seq: int) -> bool:
        """Whether attempt ``seq`` has started and its row is not in the store yet."""
        return seq in self._attempts and seq not in self._stored

    def stored(self, seq: int) -> None:
        """An attempt whose row is already in the store, continued by this journal (a
        worker takes up a step another handed back): what changes is an UPDATE."""
        self._stored.add(seq)

    def _attempt(self, seq: int) -> _Attempt:
        found = self._attempts.get(seq)
        if found is None:  # committed earlier: only what changes now is written
            found = self._attempts[seq] = _Attempt("", "", 0, 0.0)
        return found

    def saved(self, state: RunState, seq: int, data: dict[str, Any]) -> None:
        self._attempt(seq).saved = data
        self.touch(state)

    def wake(self, state: RunState, seq: int, wake_at: float) -> None:
        self._attempt(seq).wake_at = wake_at
        self.touch(state)

    def finished(
        self, state: RunState, seq: int, status: str, report: dict[str, Any], field: str
    ) -> None:
        found = self._attempt(seq)
        found.status, found.ended, found.report, found.wake_at = status, time.time(), report, None
        self._fields.add(field)
        self.touch(state)

    def line(self, seq: int, line: dict[str, Any]) -> None:
        self._lines.append((seq, line))
        if self.since is None:
            self.since = time.monotonic()

    def ops(self) -> list[Op]:
        """Everything held, as statements; call :meth:`committed` once they are."""
        ops: list[Op] = []
        for seq, a in self._attempts.items():
            saved = dump(a.saved) if a.saved is not None else None
            report = dump(a.report) if a.report is not None else None
            if seq not in self._stored:
                ops.append(
                    (
                        "INSERT INTO attempts (run_id, seq, step_id, step_type, attempt, status, "
                        "started, ended, saved, wake_at, report) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                        (
                            self.run_id,
                            seq,
                            a.step_id,
                            a.step_type,
                            a.attempt,
                            a.status,
                            a.started,
                            a.ended,
                            saved or "{}",
                            a.wake_at,
                            report,
                        ),
                    )
                )
            elif a.status == "started":  # a checkpoint or a wake-up time, mid-step
                ops.append(
                    (
                        "UPDATE attempts SET saved = COALESCE(?, saved), "
                        "wake_at = COALESCE(?, wake_at) WHERE run_id = ? AND seq = ?",
                        (saved, a.wake_at, self.run_id, seq),
                    )
                )
            else:
                ops.append(
                    (
                        "UPDATE attempts SET status = ?, ended = ?, report = ?, wake_at = NULL, "
                        "saved = COALESCE(?, saved) WHERE run_id = ? AND seq = ?",
                        (a.status, a.ended, report, saved, self.run_id, seq),
                    )
                )
        state = self._state
        if state is not None:
            ops += [
                (
                    "INSERT INTO merge_fields (run_id, name, value) VALUES (?,?,?) "
                    "ON CONFLICT (run_id, name) DO UPDATE SET value = excluded.value",
                    (self.run_id, name, dump(state.merge_fields[name])),
                )
                for name in self._fields
            ]
            now = time.time()
            ops.append(
                (
                    'UPDATE runs SET position = ?, "authorization" = ?, error = ?, failure = ?, '
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
                )
            )
        ops += [
            (
                "INSERT INTO log_lines (run_id, attempt, line) VALUES (?,?,?)",
                (self.run_id, seq, dump(line)),
            )
            for seq, line in self._lines
        ]
        return ops

    def committed(self) -> None:
        """What :meth:`ops` returned is in the store: hold nothing."""
        for seq, a in self._attempts.items():
            if a.status == "started":
                self._stored.add(seq)  # it may still change: an UPDATE then
            else:
                self._stored.discard(seq)
        self._attempts.clear()
        self._fields.clear()
        self._lines.clear()
        self._state = None
        self.since = None


__all__ = ["Pending"]
