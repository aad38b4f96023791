"""The Airflow provider in a real Airflow: a DAG run with dag.test() against serve-local.

Needs the `airflow` extra (`.ci/run` installs it); skipped where Airflow is not installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.service.conftest import CANARY, start_process, stop

pytest.importorskip("airflow", reason="the Airflow provider needs `pip install '.[airflow]'`")

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "examples" / "data" / "support.jsonl"


def airflow_env(home: Path, backend_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STEPRUN_", "AIRFLOW_"))}
    connection = {
        "conn_type": "steprun",
        "host": f"{backend_url}/v1",
        "password": CANARY,
        "extra": {"provider": "openai", "max_retries": 0},
    }
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__UNIT_TEST_MODE="True",
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{home}/airflow.db",
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
        AIRFLOW_CONN_STEPRUN_DEFAULT=json.dumps(connection),
        STEPRUN_TEST_DATA=str(DATA),
        STEPRUN_DISABLE_PLUGIN_AUTOLOAD="1",
        PYTHONPATH=str(HERE.parents[1]),
    )
    return env


def test_a_dag_uploads_creates_waits_deferred_and_asks(tmp_path: Path) -> None:
    backend, url = start_process(
        ["serve-local", "--port", "0", "--job-seconds", "3", "--api-key", CANARY], "listening on"
    )
    try:
        env = airflow_env(tmp_path, url)
        # dag.test() runs a DAG of a bundle: the DAG file goes into the dags folder.
        (tmp_path / "dags").mkdir()
        dag_file = tmp_path / "dags" / "fine_tune_dag.py"
        dag_file.write_text((HERE / "fine_tune_dag.py").read_text())
        airflow = Path(sys.executable).parent / "airflow"
        migrate = subprocess.run(
            [str(airflow), "db", "migrate"], env=env, capture_output=True, text=True, timeout=300
        )
        assert migrate.returncode == 0, migrate.stderr[-3000:]
        proc = subprocess.run(
            [sys.executable, str(dag_file)],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
        assert lines, proc.stdout[-3000:] + proc.stderr[-5000:]
        result = json.loads(lines[-1].removeprefix("RESULT "))
        ledger = httpx.get(
            f"{url}/_steprun/ledger", headers={"authorization": f"Bearer {CANARY}"}
        ).json()
    finally:
        stop(backend)
    tasks = result["tasks"]
    assert result["state"].endswith("success"), (result, proc.stderr[-5000:])
    assert all(t["state"].endswith("success") for t in tasks.values()), tasks
    job = tasks["wait"]["value"]
    assert job["status"] == "succeeded" and job["fine_tuned_model"].startswith("ft:")
    assert tasks["create"]["value"]["id"] == job["id"]
    assert tasks["ask"]["value"]["choices"][0]["message"]["content"]
    assert [j["id"] for j in ledger["jobs"]] == [job["id"]]  # one job, never two
    # The wait was deferred to the trigger, not run in the worker.
    assert "running trigger in line" in proc.stdout + proc.stderr
    assert CANARY not in proc.stdout + proc.stderr
    assert tasks["flow"]["value"]["jobs"]["data"][0]["id"] == job["id"]
