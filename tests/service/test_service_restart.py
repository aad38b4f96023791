"""A service killed mid-run resumes the run when it starts again: one job, one callback."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import httpx

from .conftest import CANARY, Receiver, make_service, start_process, stop
from .test_service import fine_tune_flow


def test_a_service_killed_mid_run_finishes_the_run_after_a_restart(
    tmp_path: Path, receiver: Receiver
) -> None:
    backend, backend_url = start_process(
        ["serve-local", "--port", "0", "--job-seconds", "6", "--api-key", CANARY], "listening on"
    )
    service = make_service(tmp_path, backend_url)
    try:
        with service.client() as client:
            run_id = client.post(
                "/v1/runs", json={"flow": fine_tune_flow(), "callback_url": receiver.url}
            ).json()["id"]
            deadline = time.monotonic() + 60
            while client.get(f"/v1/runs/{run_id}").json().get("current_step") != "wait":
                assert time.monotonic() < deadline
                time.sleep(0.1)
        service.restart(signal.SIGKILL)  # mid-wait: nothing is told, nothing is cleaned up
        run = service.wait_for(run_id, "succeeded", "failed", timeout=90)
        assert run["status"] == "succeeded", run
        ledger = httpx.get(
            f"{backend_url}/_steprun/ledger", headers={"authorization": f"Bearer {CANARY}"}
        ).json()
        assert len(ledger["jobs"]) == 1, ledger
        assert sum(ledger["create_requests"].values()) == 1, ledger
        deadline = time.monotonic() + 30
        while not receiver.deliveries:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        time.sleep(1)
        assert len(receiver.deliveries) == 1
        assert receiver.deliveries[0][0]["webhook-id"] == f"msg_{run_id}"
    finally:
        stop(service.proc)
        stop(backend)
