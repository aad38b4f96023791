"""The official ``openai`` package against the backend's Azure dialect (``/openai/v1``).

``steprun serve-local`` runs in its own process; the SDK's ``AzureOpenAI`` client sends
the key in an ``api-key`` header with an ``api-version``, as it does against Azure. The
fine-tuned model answers only once deployed (the management API's PUT), by its
deployment's name: through the SDK's deployment path and through ``OpenAI`` with a
``base_url``, as Microsoft documents the v1 API.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import openai
import pytest

from tests.local.conftest import EXAMPLES
from tests.local.sdk import KEY, serve_local, wait_for

pytestmark = pytest.mark.slow

DEPLOYMENTS = (
    "/subscriptions/sub-1/resourceGroups/rg/providers/Microsoft.CognitiveServices"
    "/accounts/my-aoai/deployments"
)


@pytest.fixture(scope="module")
def origin() -> Iterator[str]:
    with serve_local() as url:
        yield url.removesuffix("/v1")


def test_azure_openai_sdk_fine_tunes_deploys_and_asks(origin: str) -> None:
    client = openai.AzureOpenAI(
        api_key=KEY, base_url=origin + "/openai/v1", api_version="preview", max_retries=0
    )
    with (EXAMPLES / "support.jsonl").open("rb") as handle:
        file = client.files.create(file=handle, purpose="fine-tune")
    raw = client.fine_tuning.jobs.with_raw_response.create(
        model="gpt-4o-mini-2024-07-18",
        training_file=file.id,
        suffix="azure",
        extra_body={"trainingType": "GlobalStandard"},
    )
    # The key went as api-key (never as a bearer token), with the api-version asked for.
    assert raw.http_request.headers["api-key"] == KEY
    assert "authorization" not in raw.http_request.headers
    assert raw.http_request.url.params["api-version"] == "preview"
    assert raw.headers["apim-request-id"]
    job = raw.parse()
    done = wait_for(client, job.id)
    assert done.status == "succeeded"
    assert client.fine_tuning.jobs.list_events(job.id).data

    with pytest.raises(openai.NotFoundError) as undeployed:
        client.chat.completions.create(
            model="support", messages=[{"role": "user", "content": "hi"}]
        )
    assert undeployed.value.code == "DeploymentNotFound"

    deployed = httpx.put(
        f"{origin}{DEPLOYMENTS}/support",
        params={"api-version": "2024-10-01"},
        headers={"Authorization": f"Bearer {KEY}"},
        json={
            "sku": {"name": "standard", "capacity": 1},
            "properties": {"model": {"format": "OpenAI", "name": done.fine_tuned_model}},
        },
    )
    assert deployed.status_code == 201, deployed.text
    question = [{"role": "user", "content": "How do I reset my password?"}]
    by_path = client.chat.completions.create(model="support", messages=question)
    assert by_path.choices[0].message.content
    v1 = openai.OpenAI(
        api_key="unused", base_url=origin + "/openai/v1", default_headers={"api-key": KEY}
    )
    assert v1.chat.completions.create(model="support", messages=question).choices


def test_a_wrong_api_key_is_refused_in_azures_error_shape(origin: str) -> None:
    client = openai.AzureOpenAI(
        api_key="wrong", base_url=origin + "/openai/v1", api_version="v1", max_retries=0
    )
    with pytest.raises(openai.AuthenticationError) as refused:
        client.files.list()
    assert refused.value.body["type"] == "error"  # type: ignore[index]
