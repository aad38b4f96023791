"""A DAG that uploads, creates a fine-tuning job, waits for it (deferred) and asks the model.

Run by test_airflow.py in a fresh process (AIRFLOW_HOME in a temporary folder, the
connection ``steprun_default`` from the environment) with ``dag.test()``; it prints one
JSON line with each task's state and return value.
"""

from __future__ import annotations

import json
import os
import sys

from airflow.sdk import DAG

from steprun.airflow.operators import (
    SteprunFineTuningJobSensor,
    SteprunFlowOperator,
    SteprunStepOperator,
)

DATA = os.environ["STEPRUN_TEST_DATA"]

with DAG(dag_id="steprun_fine_tune", schedule=None, catchup=False) as dag:
    upload = SteprunStepOperator(
        task_id="upload",
        step_type="openai.upload_file",
        config={"file": DATA, "purpose": "fine-tune"},
    )
    create = SteprunStepOperator(
        task_id="create",
        step_type="openai.create_fine_tuning_job",
        config={
            "training_file": "{{ ti.xcom_pull(task_ids='upload')['id'] }}",
            "model": "gpt-4o-mini-2024-07-18",
            "suffix": "airflow",
        },
    )
    wait = SteprunFineTuningJobSensor(
        task_id="wait",
        job_id="{{ ti.xcom_pull(task_ids='create')['id'] }}",
        poll_interval=0.5,
        max_poll_interval=1,
    )
    ask = SteprunStepOperator(
        task_id="ask",
        step_type="openai.request_fine_tuned_model",
        config={
            "model": "{{ ti.xcom_pull(task_ids='wait')['fine_tuned_model'] }}",
            "mode": "chat",
            "prompt": "How do I reset my password?",
            "max_tokens": 40,
        },
    )
    flow = SteprunFlowOperator(
        task_id="flow",
        flow=(
            "flow: from-airflow\n"
            "authorization: api\n"
            "authorizations: {api: {provider: local}}\n"
            "steps:\n"
            "  - id: jobs\n"
            "    type: openai.list_fine_tuning_jobs\n"
            "    config: {limit: 5}\n"
        ),
        authorizations={"api": "steprun_default"},
    )
    upload >> create >> wait >> ask >> flow


if __name__ == "__main__":
    run = dag.test()
    tasks = {}
    for ti in run.get_task_instances():
        tasks[ti.task_id] = {"state": str(ti.state), "value": ti.xcom_pull(task_ids=ti.task_id)}
    print("RESULT " + json.dumps({"state": str(run.state), "tasks": tasks}, default=str))
    sys.exit(0)
