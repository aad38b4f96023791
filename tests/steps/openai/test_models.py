"""openai.delete_model on loopback HTTP: encoding, missing models, lost answers, resumes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from steprun.runtime.authorizations import LOCAL_BASE_URL
from steprun.runtime.errors import StepError
from steprun.runtime.local import LocalBackend
from steprun.runtime.schemas import SchemaRegistry
from steprun.steps.openai.models import DELETE_MODEL, STEP_TYPES
from tests.contract import match_path, validate_request, validate_response

from .conftest import CANARY_KEY, Harness, MakeContext
from .faultserver import Drop, FaultServer, Reply, Request
from .localbackend import Clock, fine_tune, mounted

pytestmark = pytest.mark.anyio

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "data"
MODEL = "ft:gpt-4o-mini-2024-07-18:acme:support-bot:abc123"
LEGACY_MODEL = "curie:ft-acme-2023-03-03-21-44-20"
# Loaded and validated the engine's way: shared definitions resolve through its registry.
SCHEMAS = SchemaRegistry()
SCHEMA = SCHEMAS.builtin("openai.delete_model.schema.json") or {}
VALIDATOR = SCHEMAS.validator(SCHEMA)


def deleted(model: str = MODEL) -> Reply:
    return Reply.json({"id": model, "object": "model", "deleted": True}, x_request_id="req_del")


def not_found(model: str = MODEL) -> Reply:
    return Reply.error(
        404,
        f"The model '{model}' does not exist",
        code="model_not_found",
        param="model",
        x_request_id="req_404",
    )


@pytest.mark.parametrize("model", [MODEL, LEGACY_MODEL])
async def test_deletes_the_model_on_a_path_both_specs_describe(
    fault_server: FaultServer, make_context: MakeContext, model: str
) -> None:
    fault_server.script(deleted(model))
    harness = make_context(fault_server.base_url, step_id="delete")
    output = await DELETE_MODEL.run({"model": model}, harness.context)
    assert output == {"id": model, "object": "model", "deleted": True}
    request = fault_server.requests[0]
    assert request.method == "DELETE"
    for spec in ("current", "legacy"):
        template = match_path(spec, "DELETE", request.target)
        assert template == "/models/{model}"
        validate_request(spec, "DELETE", template, None)
        validate_response(spec, "DELETE", template, 200, output)
    assert f"deleted model {model}" in harness.lines("info")[-1]


async def test_an_id_cannot_escape_its_path_segment(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    fault_server.script(deleted("a/b?c#d"))
    await DELETE_MODEL.run({"model": "a/b?c#d"}, make_context(fault_server.base_url).context)
    assert fault_server.requests[0].target == "/v1/models/a%2Fb%3Fc%23d"


async def test_a_missing_model_is_an_error_by_default_with_a_hint(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    fault_server.script(not_found())
    harness = make_context(fault_server.base_url, step_id="delete")
    with pytest.raises(StepError) as caught:
        await DELETE_MODEL.run({"model": MODEL}, harness.context)
    error = caught.value.to_dict()
    assert (error["status"], error["code"], error["request_id"]) == (
        404,
        "model_not_found",
        "req_404",
    )
    assert error["step"] == "delete"
    assert "set missing_ok: true" in error["message"]
    assert len(fault_server.requests) == 1


@pytest.mark.parametrize(
    ("result_format", "expected"),
    [
        ("parsed", {"id": MODEL, "object": "model", "deleted": False}),
        (
            "raw",
            {
                "status": 404,
                "headers": {"x-request-id": "req_404"},
                "body": {"id": MODEL, "object": "model", "deleted": False},
            },
        ),
    ],
)
async def test_missing_ok_reports_a_missing_model_as_not_deleted(
    fault_server: FaultServer, make_context: MakeContext, result_format: str, expected: Any
) -> None:
    fault_server.script(not_found())
    harness = make_context(fault_server.base_url)
    output = await DELETE_MODEL.run(
        {"model": MODEL, "missing_ok": True, "result_format": result_format}, harness.context
    )
    assert output == expected
    assert "does not exist; nothing to delete" in harness.lines("info")[-1]


async def test_a_404_that_is_not_model_not_found_is_never_taken_for_missing(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    # What a wrong base_url earns: OpenAI's "Invalid URL", which must not pass as deleted.
    fault_server.script(Reply.error(404, "Invalid URL (DELETE /v2/models/x)"))
    with pytest.raises(StepError) as caught:
        await DELETE_MODEL.run(
            {"model": MODEL, "missing_ok": True}, make_context(fault_server.base_url).context
        )
    assert caught.value.status == 404 and caught.value.code is None


async def test_a_delete_whose_answer_was_lost_is_sent_again_and_its_404_is_success(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    models = {MODEL}

    def delete_then_drop(request: Request) -> Drop:
        models.discard(MODEL)  # the server acted on it...
        return Drop()  # ...and the answer never arrives

    fault_server.script(delete_then_drop, not_found())
    harness = make_context(fault_server.base_url)
    output = await DELETE_MODEL.run({"model": MODEL}, harness.context)
    assert output == {"id": MODEL, "object": "model", "deleted": True}
    assert [r.method for r in fault_server.requests] == ["DELETE", "DELETE"]
    assert len(harness.sleeps) == 1
    assert "an earlier send of this step deleted it" in harness.lines("info")[-1]
    assert CANARY_KEY not in harness.log_text()


async def test_lost_answers_are_resent_at_most_max_retries_times(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    fault_server.script(Drop(), Drop(), Drop())
    harness = make_context(fault_server.base_url, max_retries=2)
    with pytest.raises(StepError) as caught:
        await DELETE_MODEL.run({"model": MODEL}, harness.context)
    assert caught.value.code == "connection_dropped"
    assert len(fault_server.requests) == 3
    assert CANARY_KEY not in str(caught.value) + harness.log_text()


async def test_a_resumed_delete_that_was_already_sent_finds_its_own_effect(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    fault_server.script(not_found())
    harness = make_context(fault_server.base_url, resumed=True, saved={"sent": True})
    output = await DELETE_MODEL.run({"model": MODEL}, harness.context)
    assert output["deleted"] is True


async def test_a_resumed_delete_that_never_sent_still_reports_a_missing_model(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    fault_server.script(not_found())
    harness = make_context(fault_server.base_url, resumed=True, saved={})
    with pytest.raises(StepError):
        await DELETE_MODEL.run({"model": MODEL}, harness.context)
    # It records that it is about to send, so that a later resume can tell.
    assert harness.checkpoints == [{"sent": True}]


async def test_permission_errors_keep_their_type_and_never_show_the_key(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    fault_server.script(
        Reply.error(403, f"Key {CANARY_KEY} lacks the Owner role", type="permission_error")
    )
    harness = make_context(fault_server.base_url)
    with pytest.raises(StepError) as caught:
        await DELETE_MODEL.run({"model": MODEL}, harness.context)
    assert caught.value.type == "permission_error"
    assert CANARY_KEY not in json.dumps(caught.value.to_dict()) + harness.log_text()


def test_declaration_and_schema() -> None:
    assert STEP_TYPES == [DELETE_MODEL]
    assert DELETE_MODEL.problems() == []
    assert DELETE_MODEL.effect == "idempotent"
    Draft202012Validator.check_schema(SCHEMA)
    validator = VALIDATOR
    assert not list(validator.iter_errors({"model": MODEL, "missing_ok": True}))
    for bad in ({"model": ".."}, {"model": ""}, {}, {"model": MODEL, "force": True}):
        assert list(validator.iter_errors(bad)), bad
    assert SCHEMA["properties"]["missing_ok"]["default"] is False


# --- against the embedded backend: a model that a fine-tuning job really produced -------


@pytest.fixture
async def fine_tuned() -> AsyncIterator[tuple[LocalBackend, httpx.AsyncClient, str]]:
    """A backend, a client mounted on it, and the id of a model a job fine-tuned there."""
    clock = Clock()
    backend = LocalBackend(job_seconds=5, clock=clock)
    async with mounted(backend) as http:
        model = await fine_tune(http, clock, (EXAMPLES / "support.jsonl").read_bytes())
        yield backend, http, model


def local_harness(make_context: MakeContext, http: httpx.AsyncClient) -> Harness:
    return make_context(
        LOCAL_BASE_URL, provider="local", api_key=None, client=http, step_id="delete"
    )


async def test_deletes_a_fine_tuned_model_of_the_backend(
    fine_tuned: tuple[LocalBackend, httpx.AsyncClient, str], make_context: MakeContext
) -> None:
    _, http, model = fine_tuned
    assert ":" in model  # the id has colons: it must survive the URL path
    output = await DELETE_MODEL.run({"model": model}, local_harness(make_context, http).context)
    assert output == {"id": model, "object": "model", "deleted": True}
    validate_response("current", "DELETE", "/models/{model}", 200, output)
    listing = (await http.get(LOCAL_BASE_URL + "/models")).json()["data"]
    assert model not in [m["id"] for m in listing]
    # Deleting it again: gone. An error by default, "not deleted" with missing_ok.
    with pytest.raises(StepError) as caught:
        await DELETE_MODEL.run({"model": model}, local_harness(make_context, http).context)
    assert (caught.value.status, caught.value.code) == (404, "model_not_found")
    again = await DELETE_MODEL.run(
        {"model": model, "missing_ok": True}, local_harness(make_context, http).context
    )
    assert again == {"id": model, "object": "model", "deleted": False}


async def test_a_delete_dropped_after_it_took_effect_still_succeeds_on_the_backend(
    fine_tuned: tuple[LocalBackend, httpx.AsyncClient, str], make_context: MakeContext
) -> None:
    backend, http, model = fine_tuned
    backend.add_fault({"kind": "drop", "method": "DELETE", "path": "/v1/models/*", "times": 1})
    harness = local_harness(make_context, http)
    output = await DELETE_MODEL.run({"model": model, "result_format": "raw"}, harness.context)
    assert output["status"] == 404  # the second send's real answer...
    assert output["body"] == {"id": model, "object": "model", "deleted": True}  # ...our effect
    assert len(harness.sleeps) == 1


async def test_a_base_model_cannot_be_deleted(
    fine_tuned: tuple[LocalBackend, httpx.AsyncClient, str], make_context: MakeContext
) -> None:
    _, http, _ = fine_tuned
    with pytest.raises(StepError) as caught:
        await DELETE_MODEL.run(
            {"model": "gpt-4o-mini", "missing_ok": True}, local_harness(make_context, http).context
        )
    assert caught.value.status == 403
