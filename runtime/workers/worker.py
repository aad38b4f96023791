"""``steprun worker``: one process that drives runs from the queue until it is stopped.

It registers two tasks on a Procrastinate app: ``steprun.drive`` (one slice of one run,
:mod:`.drive`) and ``steprun.recover`` (every few seconds, :mod:`.recovery`). It says one
line per thing it does on stderr (a run taken, each step, a hand-back, a run's end).

SIGTERM (or Ctrl-C) stops it gently: no new job is taken, each run it drives hands back
after its current step (at once if that step waits), and the process exits once every
run is back in the queue. A second signal stops it at once; its runs then go on
elsewhere as a dead worker's do.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any

from ..store import lease_owner
from .drive import Driver
from .queue import DRIVE_TASK, RECOVER_TASK, build_app, ensure_schema, retry_strategy
from .recovery import requeue_stalled

if TYPE_CHECKING:
    from procrastinate import App

    from ..store import RunStore

LOCAL_STATE = "local-backend"  # as the CLI's: provider: local keeps its jobs beside the store


@dataclass(frozen=True)
class WorkerSettings:
    url: str  # the PostgreSQL both the run store and the queue live in
    concurrency: int = 10
    hand_back_after: float = 3.0
    stalled_after: float = 30.0  # a worker silent this long is taken for dead


def say_to(stream: IO[str]) -> Callable[[str], None]:
    owner = lease_owner()

    def say(message: str) -> None:
        stamp = time.strftime("%H:%M:%S", time.localtime())
        print(f"{stamp} worker {owner}: {message}", file=stream, flush=True)

    return say


def register(app: App, driver: Driver, settings: WorkerSettings) -> None:
    """The worker's two tasks, on ``app``."""
    every = max(1, round(settings.stalled_after / 3))

    @app.task(name=DRIVE_TASK, retry=retry_strategy())
    async def drive(run_id: str) -> str:
        return await driver.drive(run_id)

    @app.periodic(cron=f"* * * * * */{every}")
    @app.task(name=RECOVER_TASK, queueing_lock=RECOVER_TASK)
    async def recover(timestamp: int) -> int:
        return await requeue_stalled(app, settings.stalled_after, driver.say)


class _Lines(logging.Handler):
    """Procrastinate's warnings and errors as one line each, never a traceback (unless
    STEPRUN_DEBUG asks for one)."""

    def __init__(self, say: Callable[[str], None]) -> None:
        super().__init__(logging.WARNING)
        self._say = say

    def emit(self, record: logging.LogRecord) -> None:
        self._say(f"queue: {record.getMessage()}")
        if record.exc_info and os.environ.get("STEPRUN_DEBUG"):
            import traceback

            traceback.print_exception(*record.exc_info, file=sys.stderr)


async def serve(
    settings: WorkerSettings, store: RunStore, say: Callable[[str], None], runtime: Any
) -> None:
    """Drive runs until SIGTERM/SIGINT; every run in hand is back in the queue on return."""
    from procrastinate.worker import Worker

    await asyncio.to_thread(ensure_schema, settings.url)
    stopping = asyncio.Event()
    driver = Driver(runtime, store, settings.hand_back_after, stopping, say)
    # Its connections carry short statements (fetch, retry, finish) and one LISTEN,
    # whatever the concurrency: a few are enough.
    app = build_app(settings.url, pool_size=4)
    register(app, driver, settings)
    queue_log = logging.getLogger("procrastinate")
    queue_log.setLevel(logging.WARNING)
    queue_log.propagate = False
    queue_log.addHandler(_Lines(say))
    async with app.open_async():
        worker = Worker(
            app,
            name=driver.owner,
            concurrency=settings.concurrency,
            install_signal_handlers=False,
            delete_jobs="successful",
            update_heartbeat_interval=settings.stalled_after / 3,
            stalled_worker_timeout=settings.stalled_after,
            fetch_job_polling_interval=1.0,
        )
        loop = asyncio.get_running_loop()

        def stop() -> None:
            if stopping.is_set():
                say("stopping now (second signal); its runs go on elsewhere")
                os._exit(1)
            say("stopping: each run hands back after its current step")
            stopping.set()
            worker.stop()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop)
        say(
            f"driving runs (concurrency {settings.concurrency}, waits of "
            f"{settings.hand_back_after:g} s or more hand the run back)"
        )
        try:
            await worker.run()
        finally:
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)
    say("stopped")


__all__ = ["LOCAL_STATE", "WorkerSettings", "register", "say_to", "serve"]
