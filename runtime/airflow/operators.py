"""Operators: one step, a whole flow, and the deferred wait for a fine-tuning job."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from airflow.sdk import BaseOperator, Context
from airflow.sdk.exceptions import AirflowException

from .hooks import DEFAULT_CONN_ID, SteprunHook
from .triggers import FineTuningJobTrigger


def _failure(what: str, error: Mapping[str, Any] | None) -> AirflowException:
    error = error or {}
    detail = error.get("message") or "no message"
    status = f" (HTTP {error['status']})" if error.get("status") else ""
    return AirflowException(f"{what} failed{status}: {detail}")


class SteprunStepOperator(BaseOperator):
    """Run one steprun step; its JSON output is the task's return value (XCom).

    ``config`` is templated by Airflow (``"{{ ti.xcom_pull('upload')['id'] }}"``) before
    steprun sees it; steprun's own templates in it read ``inputs``. The task fails with
    the step's error message when the step fails.
    """

    template_fields: Sequence[str] = ("config", "inputs")
    template_fields_renderers: ClassVar[dict[str, str]] = {"config": "json", "inputs": "json"}

    def __init__(
        self,
        *,
        step_type: str,
        config: Mapping[str, Any] | None = None,
        steprun_conn_id: str | None = DEFAULT_CONN_ID,
        inputs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.step_type = step_type
        self.config = dict(config or {})
        self.steprun_conn_id = steprun_conn_id
        self.inputs = dict(inputs or {})

    def execute(self, context: Context) -> Any:
        from ..runtime import Runtime

        authorization = (
            SteprunHook(self.steprun_conn_id).authorization() if self.steprun_conn_id else None
        )

        async def run() -> Any:
            async with Runtime() as runtime:
                return await runtime.run_step(
                    self.step_type, self.config, authorization=authorization, inputs=self.inputs
                )

        result = asyncio.run(run())
        for report in result.reports:
            for line in report.get("logs") or []:
                self.log.info("%s %s", line.get("level"), line.get("message"))
        if result.status != "succeeded":
            raise _failure(f"step {self.step_type}", result.error)
        return result.merge_fields.get("result")


class SteprunFlowOperator(BaseOperator):
    """Run a whole flow (a path or YAML text); its merge fields are the return value.

    ``authorizations`` maps the flow's authorization names to Airflow connection ids, so
    the flow file needs no secret. With ``state`` (a run store path) the run is durable:
    a retried task resumes the same run (``run_id`` is the task's) instead of starting over.
    """

    template_fields: Sequence[str] = ("flow", "inputs")

    def __init__(
        self,
        *,
        flow: str,
        inputs: Mapping[str, Any] | None = None,
        authorizations: Mapping[str, str] | None = None,
        state: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.flow = flow
        self.inputs = dict(inputs or {})
        self.authorizations = dict(authorizations or {})
        self.state = state

    def execute(self, context: Context) -> Any:
        from ..runtime import Runtime

        specs = {name: SteprunHook(conn_id).spec() for name, conn_id in self.authorizations.items()}
        flow = self.flow if "\n" in self.flow else Path(self.flow)

        async def run() -> Any:
            async with Runtime() as runtime:
                loaded = runtime.load(flow, inputs=self.inputs, authorizations=specs or None)
                if self.state is None:
                    return await runtime.run(loaded, inputs=self.inputs, authorizations=specs)
                from ..runtime import durable
                from ..runtime.store import open_store

                store = open_store(self.state)
                try:
                    run_id = _run_id(context)
                    try:
                        store.run(run_id)
                    except Exception:  # never started: start it under the task's run id
                        return await durable.start(
                            runtime, store, loaded, inputs=self.inputs, run_id=run_id
                        )
                    return await durable.resume(runtime, store, run_id, authorizations=specs)
                finally:
                    store.close()

        result = asyncio.run(run())
        if result.status != "succeeded":
            raise _failure(f"flow {self.flow!r} (run {result.run_id})", result.error)
        return result.merge_fields


def _run_id(context: Context) -> str:
    ti = context["ti"]
    safe = "".join(c if c.isalnum() else "_" for c in f"{ti.dag_id}_{ti.run_id}_{ti.task_id}")
    return f"run_airflow_{safe}"


class SteprunFineTuningJobSensor(BaseOperator):
    """Wait until a fine-tuning job is succeeded, failed or cancelled; return the job.

    Deferred by default: the task hands the wait to Airflow's triggerer
    (:class:`FineTuningJobTrigger`) and frees its worker slot until the job ends. With
    ``deferrable=False`` the wait runs in the worker (the ``openai.wait_for_fine_tuning_job``
    step). A job that did not succeed fails the task with the job's own error.
    """

    template_fields: Sequence[str] = ("job_id",)

    def __init__(
        self,
        *,
        job_id: str,
        steprun_conn_id: str = DEFAULT_CONN_ID,
        poll_interval: float = 10.0,
        max_poll_interval: float = 120.0,
        max_wait: float = 24 * 3600.0,
        deferrable: bool = True,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.job_id = job_id
        self.steprun_conn_id = steprun_conn_id
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.max_wait = max_wait
        self.deferrable = deferrable

    def execute(self, context: Context) -> Any:
        if self.deferrable:
            self.defer(
                trigger=FineTuningJobTrigger(
                    job_id=self.job_id,
                    steprun_conn_id=self.steprun_conn_id,
                    poll_interval=self.poll_interval,
                    max_poll_interval=self.max_poll_interval,
                    timeout=self.max_wait,
                ),
                method_name="execute_complete",
            )
        step = SteprunStepOperator(
            task_id=f"{self.task_id}__wait",
            step_type="openai.wait_for_fine_tuning_job",
            config={
                "job_id": self.job_id,
                "poll_interval": self.poll_interval,
                "max_poll_interval": self.max_poll_interval,
                "max_wait": self.max_wait,
            },
            steprun_conn_id=self.steprun_conn_id,
        )
        return self._finished(step.execute(context))

    def execute_complete(self, context: Context, event: dict[str, Any]) -> Any:
        if event.get("status") == "error":
            raise _failure(f"watching fine-tuning job {self.job_id}", event.get("error"))
        if event.get("status") == "timeout":
            raise AirflowException(
                f"fine-tuning job {self.job_id} was still {event['job'].get('status')} after "
                f"{self.max_wait:g}s; it keeps running: wait again or cancel it"
            )
        return self._finished(event["job"])

    def _finished(self, job: dict[str, Any]) -> dict[str, Any]:
        if job.get("status") != "succeeded":
            raise _failure(f"fine-tuning job {self.job_id} ({job.get('status')})", job.get("error"))
        self.log.info("fine-tuning job %s succeeded: %s", self.job_id, job.get("fine_tuned_model"))
        return job


__all__ = ["SteprunFineTuningJobSensor", "SteprunFlowOperator", "SteprunStepOperator"]
