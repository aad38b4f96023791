"""A dead worker's runs go on elsewhere: the periodic task that takes back its jobs.

Every worker sends Procrastinate a heartbeat. Every few seconds one worker (Procrastinate
defers each tick of a periodic task once, whoever's clock sees it first) looks for drive
jobs left in ``doing`` by a worker whose heartbeat stopped, and puts them back in the
queue. The next worker to take one finds the dead worker's lease on the run void (a dead
process on this machine at once; on another machine when the lease runs out, and until
then the job is retried at the lease's end), and resumes the run from its journal: a step
that was mid-way is re-entered with ``resumed``, so a create in flight is looked for
before anything is sent again.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .queue import DRIVE_TASK

if TYPE_CHECKING:
    from procrastinate import App


async def requeue_stalled(app: App, stalled_after: float, say: Callable[[str], None]) -> int:
    """Put the drive jobs of workers silent for ``stalled_after`` seconds back in the
    queue; returns how many."""
    from procrastinate import exceptions

    stalled = await app.job_manager.get_stalled_jobs(
        task_name=DRIVE_TASK, seconds_since_heartbeat=stalled_after
    )
    count = 0
    for job in stalled:
        try:
            await app.job_manager.retry_job(job)
        except exceptions.ConnectorException:
            continue  # another worker took it back first, or it finished meanwhile
        count += 1
        run_id = job.task_kwargs.get("run_id")
        say(f"run {run_id}: its worker stopped answering; back in the queue for another")
    return count


__all__ = ["requeue_stalled"]
