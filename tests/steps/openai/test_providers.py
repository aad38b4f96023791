"""Providers: the authorization schema each declares, refusals at validation, the tables.

Refusals are pinned through the real validator (``Runtime.validate``): a flow that asks a
provider for what it cannot do is invalid before any effect, with one sentence at the
step's line.
"""

from __future__ import annotations

from typing import Any

import pytest

from steprun.runtime import Runtime
from steprun.steps.openai.providers import ADAPTERS, adapter_for
from steprun.steps.openai.providers.base import OPENAI_STATUSES, route
from steprun.steps.openai.providers.together import STATUSES as TOGETHER_STATUSES

AUTHS = {
    "openai": {"provider": "openai", "api_key": "${env:K}"},
    "azure": {"provider": "azure", "api_key": "${env:K}", "endpoint": "https://x.example"},
    "nebius": {"provider": "nebius", "api_key": "${env:K}"},
    "together": {"provider": "together", "api_key": "${env:K}"},
    "local": {"provider": "local"},
}


def flow(provider: str, *steps: dict[str, Any]) -> dict[str, Any]:
    return {
        "flow": "f",
        "authorization": provider,
        "authorizations": {provider: AUTHS[provider]},
        "steps": list(steps),
    }


def messages(runtime: Runtime, document: dict[str, Any]) -> list[str]:
    return [p.message for p in runtime.validate(document)]


@pytest.fixture
def runtime() -> Runtime:
    return Runtime(autoload=False, environ={"K": "k"})


PAUSE = {"id": "pause", "type": "openai.pause_fine_tuning_job", "config": {"job_id": "j"}}


@pytest.mark.parametrize("provider", ["together", "nebius"])
def test_pause_is_refused_at_validation_where_the_provider_has_no_pause(
    runtime: Runtime, provider: str
) -> None:
    found = runtime.validate(flow(provider, PAUSE))
    assert len(found) == 1
    assert found[0].step == "pause"
    assert "cannot pause or resume a fine-tuning job" in found[0].message
    assert f"provider {provider}" in found[0].message


@pytest.mark.parametrize("provider", ["openai", "azure", "local"])
def test_pause_is_valid_where_the_provider_has_it(runtime: Runtime, provider: str) -> None:
    assert messages(runtime, flow(provider, PAUSE)) == []


def test_an_inherited_authorization_is_followed_to_the_step(runtime: Runtime) -> None:
    document = flow(
        "openai",
        {"id": "first", "type": "core.set", "config": {"value": 1}, "authorization": "tg"},
        PAUSE,
    )
    document["authorizations"]["tg"] = AUTHS["together"]
    assert any("Together AI cannot pause" in m for m in messages(runtime, document))


def test_settings_a_provider_does_not_take_are_refused(runtime: Runtime) -> None:
    create = {
        "id": "job",
        "type": "openai.create_fine_tuning_job",
        "config": {
            "training_file": "file-1",
            "model": "m",
            "hyperparameters": {"learning_rate_multiplier": 2},
        },
    }
    assert messages(runtime, flow("openai", create)) == []
    (message,) = messages(runtime, flow("together", create))
    assert "absolute learning rate" in message
    (message,) = messages(
        runtime,
        flow(
            "openai",
            {
                **create,
                "config": {"training_file": "file-1", "model": "m", "training_type": "Standard"},
            },
        ),
    )
    assert "Azure OpenAI's setting" in message
    assert (
        messages(
            runtime,
            flow(
                "azure",
                {
                    **create,
                    "config": {
                        "training_file": "file-1",
                        "model": "m",
                        "training_type": "Standard",
                    },
                },
            ),
        )
        == []
    )


def test_the_legacy_api_is_openai_alone(runtime: Runtime) -> None:
    legacy = {
        "id": "job",
        "type": "openai.create_fine_tuning_job",
        "config": {"training_file": "file-1", "api": "legacy"},
    }
    assert messages(runtime, flow("openai", legacy)) == []
    for provider in ("azure", "nebius", "together"):
        (message,) = messages(runtime, flow(provider, legacy))
        assert "legacy /v1/fine-tunes API is OpenAI's alone" in message


def test_each_provider_declares_its_authorization_settings(runtime: Runtime) -> None:
    assert set(runtime.providers) >= {"openai", "azure", "nebius", "together", "local"}
    missing_endpoint = flow("azure", PAUSE)
    del missing_endpoint["authorizations"]["azure"]["endpoint"]
    assert any("endpoint" in m for m in messages(runtime, missing_endpoint))
    unknown = flow("together", PAUSE)
    unknown["authorizations"]["together"]["organization"] = "org"
    assert any("organization" in m for m in messages(runtime, unknown))


def test_together_statuses_map_onto_openais_and_each_is_kept_beside() -> None:
    # The table as documented in the README; every value is one of OpenAI's words.
    assert TOGETHER_STATUSES == {
        "pending": "validating_files",
        "queued": "queued",
        "running": "running",
        "compressing": "running",
        "uploading": "running",
        "cancel_requested": "running",
        "cancelled": "cancelled",
        "error": "failed",
        "completed": "succeeded",
    }
    for adapter in ADAPTERS.values():
        assert set(adapter.statuses.values()) <= OPENAI_STATUSES, adapter.name
    job = ADAPTERS["together"].job({"id": "ft-1", "status": "compressing"})
    assert (job["status"], job["provider_status"]) == ("running", "compressing")


def test_errors_take_openais_shape_with_the_providers_message() -> None:
    azure = ADAPTERS["azure"].error_fields(
        404, {"error": {"code": "NotFound", "message": "no such job", "type": "error"}}
    )
    assert azure == {"code": "NotFound", "message": "no such job", "type": "not_found_error"}
    nebius = ADAPTERS["nebius"].error_fields(
        422, {"detail": [{"loc": ["body", "model"], "msg": "field required", "type": "missing"}]}
    )
    assert nebius == {"message": "model: field required", "param": "model", "code": "missing"}
    together = ADAPTERS["together"].error_fields(
        400, {"error": {"message": "bad file", "type": "invalid_request_error"}}
    )
    assert together["message"] == "bad file"


def test_requests_are_routed_to_operations() -> None:
    assert route("POST", "/fine_tuning/jobs/ftjob-1/pause") == ("jobs.pause", {"job_id": "ftjob-1"})
    assert route("GET", "/files/file-1/content") == ("files.content", {"file_id": "file-1"})
    assert route("GET", "/fine-tunes/ft-1/events")[0] == "legacy.other"
    assert adapter_for(None).name == "openai"
