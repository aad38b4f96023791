"""The trigger that waits for a fine-tuning job in Airflow's triggerer, holding no worker.

Each poll is one ``openai.retrieve_fine_tuning_job`` step (the same client, retries and
redaction as every steprun step), on a back-off from ``poll_interval`` to
``max_poll_interval``, until the job is succeeded, failed or cancelled, or ``timeout``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent

TERMINAL = ("succeeded", "failed", "cancelled")


class FineTuningJobTrigger(BaseTrigger):
    def __init__(
        self,
        job_id: str,
        steprun_conn_id: str,
        poll_interval: float = 10.0,
        max_poll_interval: float = 120.0,
        timeout: float = 24 * 3600.0,
    ) -> None:
        super().__init__()
        self.job_id = job_id
        self.steprun_conn_id = steprun_conn_id
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.timeout = timeout

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "job_id": self.job_id,
                "steprun_conn_id": self.steprun_conn_id,
                "poll_interval": self.poll_interval,
                "max_poll_interval": self.max_poll_interval,
                "timeout": self.timeout,
            },
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        from ..runtime import Runtime
        from .hooks import SteprunHook

        hook = SteprunHook(self.steprun_conn_id)
        authorization = await asyncio.to_thread(hook.authorization)  # the connection lookup
        deadline = time.monotonic() + self.timeout
        interval = self.poll_interval
        async with Runtime() as runtime:
            while True:
                result = await runtime.run_step(
                    "openai.retrieve_fine_tuning_job",
                    {"job_id": self.job_id},
                    authorization=authorization,
                )
                job = result.merge_fields.get("result")
                if result.status != "succeeded":
                    yield TriggerEvent({"status": "error", "job_id": self.job_id, "error": job})
                    return
                assert isinstance(job, dict)
                if job.get("status") in TERMINAL:
                    yield TriggerEvent({"status": job["status"], "job_id": self.job_id, "job": job})
                    return
                if time.monotonic() + interval > deadline:
                    yield TriggerEvent({"status": "timeout", "job_id": self.job_id, "job": job})
                    return
                self.log.info("fine-tuning job %s is %s", self.job_id, job.get("status"))
                await asyncio.sleep(interval)
                interval = min(interval * 2, self.max_poll_interval)


__all__ = ["TERMINAL", "FineTuningJobTrigger"]
