"""Each provider's whole lifecycle through the steps, against its dialect of the backend.

One embedded backend serves every dialect on loopback (uvicorn in a thread): OpenAI and
Nebius at ``/v1``, Azure at ``/openai/v1`` (and its management API's deployments),
Together at ``/together/v1``. A flow uploads the training file, creates a job, waits for
it, lists its events, checkpoints and the jobs, and asks the fine-tuned model (on Azure
through a deployment). Every request and answer of the Together and Azure dialects is
checked against the provider's published spec (trimmed copies under ``tests/``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from steprun.runtime import Runtime
from steprun.runtime.local import LocalBackend
from tests.contract import match_path, validate_request, validate_response
from tests.steps.openai.localbackend import served

DATA = Path(__file__).resolve().parents[3] / "examples" / "data" / "support.jsonl"
KEY = "sk-provider-dialects"
_DIALECTS = {"/together/v1": "together", "/openai/v1": "azure"}


class SpecCheck:
    """Checks every JSON request and answer of a dialect against its provider's spec."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.checked: list[str] = []
        self.unchecked: list[str] = []
        self.failures: list[str] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        found = next(((p, s) for p, s in _DIALECTS.items() if path.startswith(p + "/")), None)
        if scope["type"] != "http" or found is None:
            await self.app(scope, receive, send)
            return
        prefix, spec = found
        method, rest = scope["method"], path[len(prefix) :]
        # Azure's job bodies are OpenAI's schemas (its OpenAI.* components), checked
        # against OpenAI's spec; its files and errors against its own.
        if spec == "azure" and rest.startswith("/fine_tuning/"):
            spec = "current"
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        status: list[int] = []
        answer: list[bytes] = []

        async def replay() -> Message:
            return {"type": "http.request", "body": body, "more_body": False}

        async def record(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(message["status"])
            else:
                answer.append(message.get("body", b""))
            await send(message)

        await self.app(scope, replay, record)
        try:
            template = match_path(spec, method, rest)  # type: ignore[arg-type]
        except AssertionError:
            # Not in the trimmed copy: chat and completions are OpenAI's, checked elsewhere.
            self.unchecked.append(f"{method} {path}")
            return
        try:
            kind = dict(scope["headers"]).get(b"content-type", b"").decode()
            if kind.startswith("application/json"):
                request = json.loads(body)
                # trainingType: Azure's documented setting, not in its spec (see its README).
                strict = not (prefix == "/openai/v1" and "trainingType" in request)
                validate_request(spec, method, template, request, strict=strict)  # type: ignore[arg-type]
            content = b"".join(answer)
            if content[:1] in (b"{", b"["):
                answer_spec = "azure" if prefix == "/openai/v1" and status[0] >= 400 else spec
                validate_response(answer_spec, method, template, status[0], json.loads(content))  # type: ignore[arg-type]
            self.checked.append(f"{method} {prefix}{template} {status[0]}")
        except AssertionError as exc:
            self.failures.append(f"{method} {path}: {exc}")


@pytest.fixture(scope="module")
def backend() -> Iterator[tuple[str, SpecCheck]]:
    checker = SpecCheck(LocalBackend(job_seconds=1.5, api_key=KEY).app)
    with served(checker) as url:
        yield url, checker


def authorization(provider: str, url: str) -> dict[str, Any]:
    if provider == "azure":
        return {
            "provider": "azure",
            "api_key": "${env:KEY}",
            "endpoint": url,
            "api_version": "v1",
            "subscription_id": "sub-1",
            "resource_group": "rg",
            "account": "my-aoai",
            "management_token": "${env:MANAGEMENT_TOKEN}",
            "management_url": url,
        }
    base = {"together": "/together/v1"}.get(provider, "/v1")
    return {"provider": provider, "api_key": "${env:KEY}", "base_url": url + base}


BASES = {
    "openai": "gpt-4o-mini-2024-07-18",
    "azure": "gpt-4o-mini-2024-07-18",
    "nebius": "meta-llama/Meta-Llama-3.1-8B-Instruct",
    "together": "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference",
}
HYPERPARAMETERS = {
    "openai": {"n_epochs": 2},
    "azure": {"n_epochs": 2},
    "nebius": {"n_epochs": 2, "learning_rate": 0.00002},
    "together": {"n_epochs": 2, "learning_rate": 0.00002},
}


def lifecycle(provider: str, url: str) -> dict[str, Any]:
    create: dict[str, Any] = {
        "training_file": "{{ upload.id }}",
        "model": BASES[provider],
        "suffix": "support",
        "hyperparameters": HYPERPARAMETERS[provider],
    }
    if provider == "azure":
        create["training_type"] = "Standard"
    if provider in ("nebius", "together"):
        create["lora"] = {"r": 8, "alpha": 16, "dropout": 0.05}
    steps: list[dict[str, Any]] = [
        {
            "id": "upload",
            "type": "openai.upload_file",
            "config": {"file": str(DATA), "purpose": "fine-tune"},
        },
        {"id": "job", "type": "openai.create_fine_tuning_job", "config": create},
        {
            "id": "wait",
            "type": "openai.wait_for_fine_tuning_job",
            "config": {"job_id": "{{ job.id }}", "poll_interval": "0.5s", "max_wait": "2m"},
        },
        {
            "id": "events",
            "type": "openai.list_fine_tuning_events",
            "config": {"job_id": "{{ job.id }}", "limit": 50},
        },
        {
            "id": "checkpoints",
            "type": "openai.list_fine_tuning_checkpoints",
            "config": {"job_id": "{{ job.id }}"},
        },
        {"id": "jobs", "type": "openai.list_fine_tuning_jobs", "config": {"limit": 100}},
    ]
    model = "{{ wait.fine_tuned_model }}"
    if provider == "azure":
        steps.append(
            {
                "id": "deploy",
                "type": "openai.deploy_fine_tuned_model",
                "config": {"model": model, "deployment": "support-bot"},
            }
        )
        model = "support-bot"
    steps.append(
        {
            "id": "ask",
            "type": "openai.request_fine_tuned_model",
            "config": {
                "model": model,
                "mode": "chat",
                "messages": [{"role": "user", "content": "How do I reset my password?"}],
                "max_tokens": 32,
            },
        }
    )
    return {
        "flow": f"lifecycle-{provider}",
        "authorization": "p",
        "authorizations": {"p": authorization(provider, url)},
        "steps": steps,
    }


@pytest.mark.slow
@pytest.mark.parametrize("provider", ["openai", "nebius", "azure", "together"])
def test_a_fine_tune_runs_end_to_end_against_the_providers_dialect(
    backend: tuple[str, SpecCheck], provider: str
) -> None:
    url, checker = backend
    runtime = Runtime(autoload=False, environ={"KEY": KEY, "MANAGEMENT_TOKEN": KEY})
    result = runtime.run_sync(lifecycle(provider, url))
    fields = result.merge_fields
    assert result.status == "succeeded", result.error
    job = fields["wait"]
    assert job["status"] == "succeeded"
    assert job["fine_tuned_model"]
    if provider == "together":
        assert job["provider_status"] == "completed"  # Together's own word, kept beside
        assert job["hyperparameters"]["learning_rate"] == 0.00002
        assert job["hyperparameters"]["lora"]["r"] == 8
    events = fields["events"]["data"]
    assert events and all(e["object"] == "fine_tuning.job.event" for e in events)
    assert fields["checkpoints"]["data"], "the backend's jobs write checkpoints"
    assert job["id"] in [j["id"] for j in fields["jobs"]["data"]]
    answer = fields["ask"]["choices"][0]["message"]["content"]
    assert isinstance(answer, str) and answer
    if provider == "azure":
        assert fields["deploy"]["properties"]["provisioningState"] == "Succeeded"
    assert checker.failures == [], "\n".join(checker.failures)
    prefix = next((p for p, s in _DIALECTS.items() if s == provider), None)
    if prefix is not None:
        assert any(c.startswith(f"POST {prefix}/fine") for c in checker.checked), checker.checked


def test_errors_come_back_in_openais_shape_with_the_providers_request_id(
    backend: tuple[str, SpecCheck],
) -> None:
    url, checker = backend
    wrong = "sk-wrong-but-secret-0123456789"
    runtime = Runtime(autoload=False, environ={"KEY": wrong, "GOOD": KEY})
    flow = {
        "flow": "errors",
        "authorization": "azure",
        "authorizations": {
            "azure": {"provider": "azure", "api_key": "${env:KEY}", "endpoint": url},
            "together": {**authorization("together", url), "api_key": "${env:GOOD}"},
        },
        "steps": [
            {
                "id": "refused",
                "type": "openai.retrieve_fine_tuning_job",
                "config": {"job_id": "ftjob-none"},
                "on_error": "missing",
            },
            {
                "id": "missing",
                "type": "openai.retrieve_fine_tuning_job",
                "authorization": "together",
                "config": {"job_id": "ftjob-none"},
                "on_error": "end_here",
            },
            {"id": "end_here", "type": "core.log", "config": {"message": "done"}},
        ],
    }
    result = runtime.run_sync(flow)
    refused, missing = result.merge_fields["refused"], result.merge_fields["missing"]
    # Azure says type "error"; the adapter gives OpenAI's type for a 401, and the request
    # id from apim-request-id. The key is in no part of the error.
    assert (refused["status"], refused["type"]) == (401, "authentication_error")
    assert refused["request_id"]
    assert wrong not in json.dumps(result.merge_fields)
    assert wrong not in json.dumps(result.reports)
    assert (missing["status"], missing["code"]) == (404, "fine_tune_not_found")
    assert "ftjob-none" in missing["message"]
    assert checker.failures == [], "\n".join(checker.failures)
