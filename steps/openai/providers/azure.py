"""``provider: azure``: Azure OpenAI's v1 API (``{endpoint}/openai/v1``).

The v1 API takes OpenAI's paths and bodies for files and fine-tuning jobs. What differs:
the key goes in an ``api-key`` header; ``api-version`` is optional (``v1`` or
``preview``); a job may say where it trains (``trainingType``: Standard, GlobalStandard,
Developer); errors say ``type: "error"`` and carry their request id in
``apim-request-id``; and a fine-tuned model answers only once it is deployed (a separate
call to the Azure management API, see :mod:`..deploy`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from steprun.runtime.providers import API_KEY_SETTING, COMMON_SETTINGS, Provider

from .base import LEGACY_REFUSAL, Adapter, Call

if TYPE_CHECKING:
    from steprun.runtime.authorizations import Authorization

MANAGEMENT_URL = "https://management.azure.com"
MANAGEMENT_API_VERSION = "2024-10-01"
TRAINING_TYPES = ("Standard", "GlobalStandard", "Developer")
# Statuses of Azure's older fine-tuning API that its v1 API may still report.
_STATUSES = {"pending": "queued", "notRunning": "queued", "canceled": "cancelled"}
_TYPE_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "conflict_error",
    429: "rate_limit_error",
}


class AzureAdapter(Adapter):
    name = "azure"
    title = "Azure OpenAI"
    statuses: ClassVar[Mapping[str, str]] = _STATUSES
    request_id_headers = ("apim-request-id", "x-request-id")
    unsupported: ClassVar[Mapping[str, str]] = {
        "legacy.create": LEGACY_REFUSAL,
        "legacy.other": LEGACY_REFUSAL,
    }

    def config_refusal(self, step_type: str, config: Mapping[str, Any]) -> str | None:
        if step_type == "openai.deploy_fine_tuned_model":
            return None
        if step_type == "openai.create_fine_tuning_job" and config.get("training_type"):
            # Azure's own setting: the base class refuses it everywhere else.
            config = {k: v for k, v in config.items() if k != "training_type"}
        return super().config_refusal(step_type, config)

    def headers(self, auth: Authorization) -> dict[str, str]:
        return {"api-key": auth.api_key.get_secret_value()} if auth.api_key is not None else {}

    def query(self, auth: Authorization) -> dict[str, str]:
        version = auth.options.get("api_version")
        return {"api-version": str(version)} if version else {}

    def outgoing(self, call: Call, auth: Authorization) -> Call:
        if call.operation == "jobs.create" and isinstance(call.json, dict):
            body = dict(call.json)
            training_type = body.pop("training_type", None)
            if training_type:
                body["trainingType"] = training_type
            return call.but(json=body)
        return call

    def error_fields(self, status: int, body: Any) -> dict[str, Any]:
        fields = super().error_fields(status, body)
        if fields.get("type") in (None, "error"):
            # Azure's errors all say type "error"; OpenAI's type follows from the status.
            fields["type"] = _TYPE_BY_STATUS.get(
                status, "server_error" if status >= 500 else "api_error"
            )
        return fields


ADAPTER = AzureAdapter()


def _base_url(settings: Mapping[str, Any]) -> str:
    return str(settings["endpoint"]).rstrip("/") + "/openai/v1"


PROVIDER = Provider(
    name="azure",
    title="Azure OpenAI's v1 API ({endpoint}/openai/v1, api-key)",
    settings={
        "api_key": API_KEY_SETTING,
        "endpoint": {
            "type": "string",
            "pattern": "^https?://",
            "description": "The resource's endpoint, e.g. https://my-resource.openai.azure.com",
        },
        "api_version": {
            "enum": ["v1", "preview"],
            "description": "Sent as api-version (default: none, which Azure reads as v1).",
        },
        "subscription_id": {
            "type": "string",
            "description": "For deployments: the Azure subscription of the resource.",
        },
        "resource_group": {
            "type": "string",
            "description": "For deployments: the resource group of the resource.",
        },
        "account": {
            "type": "string",
            "description": "For deployments: the Azure OpenAI resource's name.",
        },
        "management_token": {
            "type": "string",
            "minLength": 1,
            "description": "For deployments: a Microsoft Entra bearer token for the Azure "
            "management API; use ${env:NAME} or ${file:PATH}, never a literal.",
        },
        "management_url": {
            "type": "string",
            "pattern": "^https?://",
            "description": f"The Azure management API (default {MANAGEMENT_URL}).",
        },
        **COMMON_SETTINGS,
    },
    base_url=_base_url,
    required=("api_key", "endpoint"),
    secrets=("api_key", "management_token"),
    refusal=ADAPTER.refusal,
)

__all__ = ["ADAPTER", "MANAGEMENT_API_VERSION", "MANAGEMENT_URL", "PROVIDER", "AzureAdapter"]
