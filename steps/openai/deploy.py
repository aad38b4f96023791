"""Azure OpenAI: deploy a fine-tuned model, so that requests can name the deployment.

On Azure a fine-tuned model answers only through a deployment, made with the Azure
management API (``PUT .../accounts/{account}/deployments/{name}``, a Microsoft Entra bearer
token), not the data-plane key. The step creates or updates the deployment (a PUT is
idempotent: the same deployment again is the same deployment) and, unless told not to,
waits until it is provisioned. Its output is the deployment resource; the request step
then sends ``model: <deployment name>``.
"""

from __future__ import annotations

import time
from typing import Any

from steprun.runtime.errors import StepError
from steprun.runtime.step import StepContext, StepType

from .client import OpenAIClient, path_segment
from .providers.azure import MANAGEMENT_API_VERSION, MANAGEMENT_URL

_SETTINGS = ("subscription_id", "resource_group", "account", "management_token")
_POLL_SECONDS = 2.0


def _management(context: StepContext) -> tuple[OpenAIClient, str]:
    auth = context.authorization
    if auth is None or auth.provider != "azure":
        raise StepError(
            "openai.deploy_fine_tuned_model needs an authorization with provider: azure",
            type="invalid_config",
            code="unsupported_by_provider",
            step=context.step_id,
        )
    missing = [name for name in _SETTINGS if not auth.options.get(name)]
    if missing:
        raise StepError(
            f"authorization {auth.name!r} lacks {', '.join(missing)}, which deploying a "
            "model through the Azure management API needs; add them to the authorization",
            type="invalid_config",
            code="missing_deployment_settings",
            step=context.step_id,
        )
    o = auth.options
    client = OpenAIClient(
        context,
        base_url=str(o.get("management_url") or MANAGEMENT_URL),
        auth_headers={"Authorization": f"Bearer {o['management_token']}"},
    )
    path = (
        f"/subscriptions/{path_segment(o['subscription_id'])}"
        f"/resourceGroups/{path_segment(o['resource_group'])}"
        f"/providers/Microsoft.CognitiveServices/accounts/{path_segment(o['account'])}"
    )
    return client, path


async def deploy_fine_tuned_model(config: dict[str, Any], context: StepContext) -> Any:
    client, account = _management(context)
    name = config.get("deployment") or config["model"].replace(":", "-")[:64]
    path = f"{account}/deployments/{path_segment(name)}"
    params = {"api-version": MANAGEMENT_API_VERSION}
    body = {
        "sku": {"name": config.get("sku", "standard"), "capacity": config.get("capacity", 1)},
        "properties": {
            "model": {"format": "OpenAI", "name": config["model"], "version": "1"},
        },
    }
    response = await client.request("PUT", path, json=body, params=params)
    deployment = response.object()
    started = time.monotonic()
    max_wait = float(config.get("max_wait", 3600))
    while config.get("wait", True):
        state = (deployment.get("properties") or {}).get("provisioningState")
        if state == "Succeeded":
            break
        if state in ("Failed", "Canceled"):
            raise StepError(
                f"the deployment {name!r} of {config['model']} ended {state}",
                type="deployment_failed",
                code=str(state).lower(),
                step=context.step_id,
            )
        if time.monotonic() - started > max_wait:
            raise StepError(
                f"the deployment {name!r} was still {state} after {max_wait:g}s; raise "
                "max_wait or look at it in the Azure portal",
                type="timeout",
                code="deployment_timeout",
                step=context.step_id,
            )
        context.log.info(f"deployment {name}: {state}; checking again in {_POLL_SECONDS:g}s")
        await context.sleep(_POLL_SECONDS)
        deployment = (await client.request("GET", path, params=params)).object()
    context.log.info(f"deployed {config['model']} as {name!r}: ask it with model: {name}")
    return deployment


DEPLOY = StepType(
    type="openai.deploy_fine_tuned_model",
    title="Deploy fine-tuned model (Azure)",
    version="1.0.0",
    run=deploy_fine_tuned_model,
    effect="idempotent",
    description=(
        "Azure OpenAI: PUT a deployment of a fine-tuned model through the management API "
        "and wait until it is provisioned; requests then name the deployment as model."
    ),
)

STEP_TYPES: list[StepType] = [DEPLOY]


__all__ = ["DEPLOY", "STEP_TYPES", "deploy_fine_tuned_model"]
