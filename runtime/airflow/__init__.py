"""The Airflow provider (``steprun.airflow``, installed with ``pip install 'steprun[airflow]'``).

    SteprunStepOperator       any step, its config templated by Airflow
    SteprunFlowOperator       a whole flow
    SteprunFineTuningJobSensor  waits for a fine-tuning job, deferred: the wait happens in
                              the triggerer (FineTuningJobTrigger), holding no worker slot
    SteprunHook               an Airflow connection (type ``steprun``) as an authorization

Airflow finds it through the ``apache_airflow_provider`` entry point.
"""

from __future__ import annotations

from typing import Any


def get_provider_info() -> dict[str, Any]:
    """What Airflow's provider manager reads (connection type, hook, operators)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        current = version("steprun")
    except PackageNotFoundError:
        current = "0.0.0"
    return {
        "package-name": "steprun",
        "name": "steprun",
        "description": (
            "Run steprun steps and flows (the whole fine-tuning lifecycle) from Airflow."
        ),
        "versions": [current],
        "connection-types": [
            {"connection-type": "steprun", "hook-class-name": "steprun.airflow.hooks.SteprunHook"}
        ],
        "operators": [
            {
                "integration-name": "steprun",
                "python-modules": ["steprun.airflow.operators"],
            }
        ],
        "triggers": [
            {"integration-name": "steprun", "python-modules": ["steprun.airflow.triggers"]}
        ],
        "hooks": [{"integration-name": "steprun", "python-modules": ["steprun.airflow.hooks"]}],
        "integrations": [{"integration-name": "steprun"}],
    }


__all__ = ["get_provider_info"]
