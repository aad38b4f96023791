"""The API key never shows from upload, request and delete, on every failure path, even
against a server that quotes the key back in every error."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from steprun.runtime.errors import StepError
from steprun.runtime.step import StepType
from steprun.steps.openai.completions import REQUEST_FINE_TUNED_MODEL
from steprun.steps.openai.files import UPLOAD_FILE
from steprun.steps.openai.models import DELETE_MODEL

from .conftest import CANARY_KEY, MakeContext
from .faultserver import Action, Chunks, Drop, FaultServer, Reply, Request

pytestmark = pytest.mark.anyio

STEPS: dict[str, tuple[StepType, dict[str, Any]]] = {
    "upload": (UPLOAD_FILE, {"file": "train.jsonl", "purpose": "fine-tune"}),
    "ask": (REQUEST_FINE_TUNED_MODEL, {"model": "ft:x", "prompt": "Hi"}),
    "ask_chat_stream": (
        REQUEST_FINE_TUNED_MODEL,
        {"model": "ft:x", "mode": "chat", "prompt": "Hi", "stream": True},
    ),
    "delete": (DELETE_MODEL, {"model": "ft:x", "missing_ok": True}),
}


def echo(status: int) -> Any:
    def answer(request: Request) -> Action:
        return Reply.error(
            status,
            f"Refused {request.headers.get('authorization')} (key {CANARY_KEY!r})",
            type="invalid_request_error" if status < 500 else "server_error",
            code=f"bad_key_{CANARY_KEY}",
            param=CANARY_KEY,
        )

    return answer


def error_event(request: Request) -> Action:
    event = {"error": {"message": f"boom {CANARY_KEY}", "type": "server_error", "code": None}}
    return Chunks([b"data: " + json.dumps(event).encode() + b"\n\n"])


@pytest.mark.parametrize("name", sorted(STEPS))
@pytest.mark.parametrize("fault", ["401", "400", "404", "500", "drop", "error_event"])
async def test_key_is_in_no_error_and_no_log_line(
    fault_server: FaultServer, make_context: MakeContext, tmp_path: Path, name: str, fault: str
) -> None:
    step, config = STEPS[name]
    rows = [
        {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    ] * 10
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    if fault == "drop":
        fault_server.handler = lambda request: Drop()
    elif fault == "error_event":
        fault_server.handler = error_event
    else:
        fault_server.handler = echo(int(fault))
    harness = make_context(fault_server.base_url, max_retries=1, organization="org-x")
    harness.context.base_dir = tmp_path
    with pytest.raises(StepError) as caught:
        await step.run(dict(config), harness.context)
    seen: BaseException | None = caught.value
    while seen is not None:
        assert CANARY_KEY not in str(seen) + repr(seen.args)
        if isinstance(seen, StepError):
            assert CANARY_KEY not in json.dumps(seen.to_dict())
        seen = seen.__cause__ or seen.__context__
    assert CANARY_KEY not in harness.log_text()
    assert fault_server.requests, "the step sent nothing: this test would prove nothing"
    assert all(r.headers["authorization"] == f"Bearer {CANARY_KEY}" for r in fault_server.requests)
