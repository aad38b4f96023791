"""The durable runs a service drives: start, describe, cancel, and resume after a restart.

Runs go through the same durable store as ``steprun run`` (``durable.start`` and
``durable.resume``), so a service killed mid-run resumes the run where it stopped when it
starts again, with every never-pay-twice rule of a resumed run.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InvalidInput, SteprunError, StoreError
from .callbacks import Callbacks
from .events import EventHub
from .records import Records

if TYPE_CHECKING:
    from ..flow import Flow
    from ..runtime import Runtime
    from ..store import RunStore
    from ..workers.queue import Queue

FINISHED = ("succeeded", "failed", "cancelled")
# How often the service looks at a run the workers drive, to end its events and call back.
WATCH_SECONDS = 1.0


class RunNotFound(InvalidInput):
    """No run of that id in the service's store."""


class RunManager:
    def __init__(
        self,
        runtime: Runtime,
        store: RunStore,
        records: Records,
        hub: EventHub,
        callbacks: Callbacks,
        *,
        authorizations: Mapping[str, Any] | None,
        authorizations_file: Path | None,
        base_dir: Path,
        queue: Queue | None = None,
    ) -> None:
        self.runtime = runtime
        # `serve --submit`: runs are queued for `steprun worker`s, not driven here.
        self.queue = queue
        self.store = store
        self.records = records
        self.hub = hub
        self.callbacks = callbacks
        self.authorizations = dict(authorizations) if authorizations else None
        self.authorizations_file = authorizations_file
        self.base_dir = base_dir
        self.tasks: dict[str, asyncio.Task[None]] = {}

    # -- start -----------------------------------------------------------------------

    def load(self, flow: str | Mapping[str, Any], inputs: Mapping[str, Any]) -> Flow:
        """Validate a flow sent in a request; FlowInvalid/SecretError if it cannot run."""
        if isinstance(flow, str):
            loaded = self.runtime.load_text(
                flow,
                file="<request flow>",
                base_dir=self.base_dir,
                inputs=inputs,
                authorizations=self.authorizations,
            )
        else:
            loaded = self.runtime.load(flow, inputs=inputs, authorizations=self.authorizations)
        self.runtime.prepare(loaded)  # a missing secret is the caller's 400, before any record
        return loaded

    def start(self, flow: Flow, inputs: Mapping[str, Any], callback_url: str | None) -> str:
        from .. import durable
        from ..runtime import new_run_id

        run_id = new_run_id()
        self.records.accept(run_id, callback_url)
        if self.queue is not None:
            self._spawn(run_id, lambda: self._submitted(run_id, flow, inputs))
            return run_id
        console = self.hub.console(run_id)
        self._spawn(
            run_id,
            lambda: durable.start(
                self.runtime,
                self.store,
                flow,
                inputs=dict(inputs),
                authorizations_file=self.authorizations_file,
                run_id=run_id,
                console=console,
            ),
        )
        return run_id

    async def _submitted(self, run_id: str, flow: Flow, inputs: Mapping[str, Any]) -> None:
        """Record and queue the run, then watch it until a worker has finished it."""
        from ..workers import submit

        assert self.queue is not None
        app = await self.queue.app()
        await submit(
            self.store,
            app,
            flow,
            inputs=dict(inputs),
            authorizations_file=self.authorizations_file,
            run_id=run_id,
        )
        await self._watch(run_id)

    async def _watch(self, run_id: str) -> None:
        while self._status(run_id) not in FINISHED:
            await asyncio.sleep(WATCH_SECONDS)

    def _spawn(self, run_id: str, work: Callable[[], Awaitable[Any]]) -> None:
        task = asyncio.create_task(self._drive(run_id, work), name=f"steprun run {run_id}")
        self.tasks[run_id] = task
        task.add_done_callback(lambda _t: self.tasks.pop(run_id, None))

    async def _drive(self, run_id: str, work: Callable[[], Awaitable[Any]]) -> None:
        events = self.hub.of(run_id)
        try:
            await work()
        except asyncio.CancelledError:
            raise  # the service is stopping: the run stays resumable, no callback yet
        except SteprunError as exc:
            events.publish("log", f"run {run_id} stopped: {exc}")
        except Exception as exc:  # a bug must not take the service down with it
            events.publish("log", f"run {run_id} stopped by an internal error: {exc!r}")
        status = self._status(run_id)
        events.end(status)
        if status in FINISHED:
            await self._callback(run_id)

    async def _callback(self, run_id: str) -> None:
        with contextlib.suppress(RunNotFound):
            await self.callbacks.deliver(run_id, self.describe(run_id))

    # -- after a restart -------------------------------------------------------------

    async def resume_unfinished(self) -> list[str]:
        """Resume the runs this service accepted and did not finish; deliver owed callbacks."""
        from .. import durable

        resumed: list[str] = []
        for record in self.records.all():
            try:
                row = self.store.run(record.run_id)
            except StoreError:
                continue  # accepted, then the service died before the run was recorded
            if row.status in FINISHED:
                if record.callback_state == "pending":
                    self._spawn_callback(record.run_id)
                continue
            run_id = row.id
            if self.queue is not None:  # the workers drive it: watch it, call back after
                self._spawn(run_id, lambda run_id=run_id: self._watch(run_id))  # type: ignore[misc]
                resumed.append(run_id)
                continue
            console = self.hub.console(run_id)
            self._spawn(
                run_id,
                lambda run_id=run_id, console=console: durable.resume(  # type: ignore[misc]
                    self.runtime,
                    self.store,
                    run_id,
                    authorizations=self.authorizations,
                    console=console,
                ),
            )
            resumed.append(run_id)
        return resumed

    def resume(self, run_id: str) -> None:
        """Resume a failed or interrupted run in this service (the dashboard's button)."""
        from .. import durable

        row = self.store.run(run_id)
        if row.id in self.tasks:
            raise InvalidInput(f"run {row.id} is already running here")
        self.hub.runs.pop(row.id, None)  # a fresh stream of events for the new attempt
        console = self.hub.console(row.id)
        self._spawn(
            row.id,
            lambda: durable.resume(
                self.runtime,
                self.store,
                row.id,
                authorizations=self.authorizations,
                console=console,
            ),
        )

    def _spawn_callback(self, run_id: str) -> None:
        task = asyncio.create_task(self._callback(run_id), name=f"steprun callback {run_id}")
        self.tasks[f"callback:{run_id}"] = task
        task.add_done_callback(lambda _t: self.tasks.pop(f"callback:{run_id}", None))

    # -- read and stop ---------------------------------------------------------------

    def _status(self, run_id: str) -> str:
        try:
            return self.store.run(run_id).status
        except StoreError:
            return "failed"

    def describe(self, run_id: str) -> dict[str, Any]:
        """A run as the API shows it: status, position, redacted merge fields, its steps."""
        try:
            row = self.store.run(run_id)
        except StoreError:
            row = None
        record = self.records.get(run_id)
        if row is None or row.id != run_id:
            if record is not None and run_id in self.tasks:
                return {"id": run_id, "status": "queued", "callback_url": record.callback_url}
            raise RunNotFound(f"no run {run_id!r}")
        steps = [
            {
                "step": a.step_id,
                "type": a.step_type,
                "attempt": a.attempt,
                "status": a.status,
                "started": a.started,
                "ended": a.ended,
                "report": a.report,
            }
            for a in self.store.attempts(run_id)
        ]
        return {
            **row.public(),
            "merge_fields": self.store.merge_fields(run_id),
            "steps": steps,
            "callback_url": record.callback_url if record else None,
        }

    def list(self, limit: int) -> list[dict[str, Any]]:
        return [row.public() for row in self.store.runs(limit)]

    async def cancel(self, run_id: str) -> dict[str, Any]:
        from .. import durable

        self.describe(run_id)  # 404 first
        await durable.cancel(
            self.runtime, self.store, run_id, authorizations=self.authorizations, wait_seconds=10
        )
        return self.describe(run_id)

    async def aclose(self) -> None:
        tasks = list(self.tasks.values())
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


__all__ = ["FINISHED", "RunManager", "RunNotFound"]
