"""The API key never shows: every job step, against a server that echoes it in every error."""

from __future__ import annotations

from typing import Any

import pytest

from steprun.runtime.errors import StepError

from .conftest import CANARY_KEY, MakeContext
from .faultserver import Action, Drop, FaultServer, Reply, Request
from .stepschemas import STEP_TYPES, run_step
from .test_client import assert_no_key

pytestmark = pytest.mark.anyio

CONFIGS: dict[str, dict[str, Any]] = {
    "openai.create_fine_tuning_job": {"training_file": "file-1", "model": "gpt-4o-mini"},
    "openai.retrieve_fine_tuning_job": {"job_id": "ftjob-1"},
    "openai.list_fine_tuning_jobs": {"all": True},
    "openai.list_fine_tuning_events": {"job_id": "ftjob-1"},
    "openai.list_fine_tuning_checkpoints": {"job_id": "ftjob-1"},
    "openai.cancel_fine_tuning_job": {"job_id": "ftjob-1"},
    "openai.pause_fine_tuning_job": {"job_id": "ftjob-1"},
    "openai.resume_fine_tuning_job": {"job_id": "ftjob-1"},
    "openai.wait_for_fine_tuning_job": {"job_id": "ftjob-1"},
}


def echo(status: int) -> Any:
    def answer(request: Request) -> Action:
        # What a careless proxy or compatible server does: quote the credentials back.
        return Reply.error(
            status,
            f"Refused {request.headers['authorization']} (key {CANARY_KEY!r})",
            type="invalid_request_error" if status < 500 else "server_error",
            code=f"bad_key_{CANARY_KEY}",
            param=CANARY_KEY,
        )

    return answer


def test_every_job_step_is_covered() -> None:
    assert set(CONFIGS) == set(STEP_TYPES)


@pytest.mark.parametrize("step_type", sorted(CONFIGS))
@pytest.mark.parametrize("fault", ["401", "400", "500", "drop"])
async def test_key_is_in_no_error_and_no_log_line(
    fault_server: FaultServer, make_context: MakeContext, step_type: str, fault: str
) -> None:
    fault_server.handler = (lambda request: Drop()) if fault == "drop" else echo(int(fault))
    harness = make_context(fault_server.base_url, max_retries=1, organization="org-x")
    with pytest.raises(StepError) as caught:
        await run_step(step_type, CONFIGS[step_type], harness.context)
    assert_no_key(caught.value, harness)
    assert all(r.headers["authorization"] == f"Bearer {CANARY_KEY}" for r in fault_server.requests)
    if fault != "drop":
        assert "***" in caught.value.message
