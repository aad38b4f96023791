"""The API key never shows: every job step, against a server that echoes it in every error."""

from __future__ import annotations

import base64
import json
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


# A key with the characters JSON encoders escape (`/` as `\/`, `+` as `\u002b`).
ODD_KEY = "sk-proj/Zq9+wX3vR7t/K2m+bN5pL8sD4fH6jQ1c"


def encoded_forms(key: str) -> list[str]:
    return [
        base64.b64encode(key.encode()).decode(),
        base64.b64encode(f"user:{key}".encode()).decode(),  # a Basic credential
        base64.urlsafe_b64encode(f"ab{key}".encode()).decode(),
        key.replace("/", "\\/").replace("+", "\\u002b"),
        key.replace("/", "\\u002F").replace("+", "\\u002B"),
    ]


@pytest.mark.parametrize("content_type", ["text/plain", "application/json"])
async def test_a_key_echoed_in_base64_or_json_escaped_is_masked_too(
    fault_server: FaultServer, make_context: MakeContext, content_type: str
) -> None:
    forms = encoded_forms(ODD_KEY)
    body = "refused credentials: " + " | ".join(forms)
    if content_type == "application/json":
        body = json.dumps({"error": {"message": body, "type": "invalid_request_error"}})
    fault_server.handler = lambda request: Reply(400, body.encode(), {"content-type": content_type})
    harness = make_context(fault_server.base_url, api_key=ODD_KEY)
    with pytest.raises(StepError) as caught:
        await run_step("openai.retrieve_fine_tuning_job", {"job_id": "ftjob-1"}, harness.context)
    shown = json.dumps(caught.value.to_dict()) + str(caught.value) + harness.log_text()
    for form in [ODD_KEY, *forms]:
        assert form not in shown, form
    # Nor any stretch of the base64 that carries the key's bits.
    assert base64.b64encode(ODD_KEY.encode()).decode()[:16] not in shown
