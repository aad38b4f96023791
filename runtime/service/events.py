"""Live events of the runs a service drives: log lines and reports, fanned out to listeners.

A run's console lines (already redacted by its reporter) and its reports (from the
``steprun_report`` hook, also redacted) are kept per run and pushed to every open
``GET /v1/runs/{id}/events`` stream. A listener that connects late gets the history first.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Callable
from typing import IO, Any, cast

from ..markers import hookimpl

# A run's history is bounded: an endless loop must not grow the service without limit.
MAX_EVENTS_PER_RUN = 10_000


class RunEvents:
    """The events of one run, and the queues of its listeners."""

    def __init__(self, changed: Callable[[], None] = lambda: None) -> None:
        self.history: list[tuple[str, str]] = []
        self.listeners: set[asyncio.Queue[tuple[str, str] | None]] = set()
        self.ended = False
        self._changed = changed

    def publish(self, event: str, data: str) -> None:
        if len(self.history) < MAX_EVENTS_PER_RUN:
            self.history.append((event, data))
        for queue in self.listeners:
            queue.put_nowait((event, data))
        self._changed()

    def end(self, status: str) -> None:
        if self.ended:
            return
        self.publish("end", json.dumps({"status": status}))
        self.ended = True
        for queue in self.listeners:
            queue.put_nowait(None)


class EventHub:
    """Every run's events; also the plugin that receives reports from the runtime."""

    def __init__(self) -> None:
        self.runs: dict[str, RunEvents] = {}
        # Listeners to every run (the dashboard's runs page): told the id of a run that moved.
        self.watchers: set[asyncio.Queue[str]] = set()

    def of(self, run_id: str) -> RunEvents:
        found = self.runs.get(run_id)
        if found is None:
            found = self.runs[run_id] = RunEvents(lambda: self._changed(run_id))
        return found

    def _changed(self, run_id: str) -> None:
        for queue in self.watchers:
            queue.put_nowait(run_id)

    def console(self, run_id: str) -> IO[str]:
        """A text stream for a run's console: each line becomes a ``log`` event."""
        # A TextIOBase is an IO[str] at run time; typeshed does not say so.
        return cast(IO[str], _LineStream(self.of(run_id)))

    @hookimpl
    def steprun_report(self, report: dict[str, Any]) -> None:
        run_id = report.get("run_id")
        if isinstance(run_id, str) and run_id in self.runs:
            self.runs[run_id].publish("report", json.dumps(report, default=str))


class _LineStream(io.TextIOBase):
    def __init__(self, events: RunEvents) -> None:
        self._events = events
        self._partial = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self._partial += text
        *lines, self._partial = self._partial.split("\n")
        for line in lines:
            if line:
                self._events.publish("log", line)
        return len(text)


def sse(event: str, data: str) -> bytes:
    """One server-sent event (multi-line data split as the spec says)."""
    body = "".join(f"data: {line}\n" for line in data.split("\n"))
    return f"event: {event}\n{body}\n".encode()


__all__ = ["MAX_EVENTS_PER_RUN", "EventHub", "RunEvents", "sse"]
