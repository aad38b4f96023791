"""The adapter interface: how one provider differs from the OpenAI API the steps speak.

Every step builds its request as OpenAI's API has it (method, path under the base URL,
JSON body, query) and reads OpenAI-shaped answers. The shared client
(:class:`~steprun.steps.openai.client.OpenAIClient`) hands each request to the adapter of
the authorization's provider, which may rewrite it (:meth:`Adapter.outgoing`: path, body,
query), add its auth headers and api-version (:meth:`Adapter.headers`,
:meth:`Adapter.query`), and turn the answer and any error back into OpenAI's shape
(:meth:`Adapter.incoming`, :meth:`Adapter.error_fields`). A job's status is mapped to
OpenAI's words with the provider's own kept beside it in ``provider_status``.

What a provider cannot do is said once, in :attr:`Adapter.unsupported` (by operation) and
:meth:`Adapter.config_refusal` (by setting): the flow's validation refuses it before any
effect, and the client refuses it again should a step be run some other way.

This base class is the OpenAI API itself: every method passes things through.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

from steprun.runtime.providers import API_KEY_SETTING, BASE_URL_SETTING, COMMON_SETTINGS, Provider

if TYPE_CHECKING:
    from steprun.runtime.authorizations import Authorization

# OpenAI's operations by method and path (relative to the base URL), first match wins.
_ROUTES: tuple[tuple[str, re.Pattern[str], str], ...] = tuple(
    (method, re.compile(f"^{pattern}$"), operation)
    for method, pattern, operation in (
        ("POST", "/files", "files.create"),
        ("GET", "/files", "files.list"),
        ("GET", "/files/(?P<file_id>[^/]+)", "files.retrieve"),
        ("DELETE", "/files/(?P<file_id>[^/]+)", "files.delete"),
        ("GET", "/files/(?P<file_id>[^/]+)/content", "files.content"),
        ("POST", "/fine_tuning/jobs", "jobs.create"),
        ("GET", "/fine_tuning/jobs", "jobs.list"),
        ("GET", "/fine_tuning/jobs/(?P<job_id>[^/]+)", "jobs.retrieve"),
        ("POST", "/fine_tuning/jobs/(?P<job_id>[^/]+)/cancel", "jobs.cancel"),
        ("POST", "/fine_tuning/jobs/(?P<job_id>[^/]+)/pause", "jobs.pause"),
        ("POST", "/fine_tuning/jobs/(?P<job_id>[^/]+)/resume", "jobs.resume"),
        ("GET", "/fine_tuning/jobs/(?P<job_id>[^/]+)/events", "jobs.events"),
        ("GET", "/fine_tuning/jobs/(?P<job_id>[^/]+)/checkpoints", "jobs.checkpoints"),
        ("POST", "/fine-tunes", "legacy.create"),
        ("GET", "/fine-tunes(/.*)?", "legacy.other"),
        ("POST", "/fine-tunes/.*", "legacy.other"),
        ("POST", "/chat/completions", "chat.completions"),
        ("POST", "/completions", "completions"),
        ("GET", "/models", "models.list"),
        ("GET", "/models/(?P<model>.+)", "models.retrieve"),
        ("DELETE", "/models/(?P<model>.+)", "models.delete"),
    )
)

# The operation each fine-tuning step performs (for refusals at validation).
STEP_OPERATIONS: dict[str, str] = {
    "openai.upload_file": "files.create",
    "openai.create_fine_tuning_job": "jobs.create",
    "openai.retrieve_fine_tuning_job": "jobs.retrieve",
    "openai.list_fine_tuning_jobs": "jobs.list",
    "openai.list_fine_tuning_events": "jobs.events",
    "openai.list_fine_tuning_checkpoints": "jobs.checkpoints",
    "openai.cancel_fine_tuning_job": "jobs.cancel",
    "openai.pause_fine_tuning_job": "jobs.pause",
    "openai.resume_fine_tuning_job": "jobs.resume",
    "openai.wait_for_fine_tuning_job": "jobs.retrieve",
    "openai.request_fine_tuned_model": "chat.completions",
    "openai.delete_model": "models.delete",
}
# OpenAI's job statuses, for the mapping tables' checks.
OPENAI_STATUSES = frozenset(
    {"validating_files", "queued", "running", "paused", "succeeded", "failed", "cancelled"}
)
LEGACY_REFUSAL = (
    "the legacy /v1/fine-tunes API is OpenAI's alone; drop `api: legacy` to use today's "
    "fine-tuning jobs"
)


@dataclass(frozen=True)
class Call:
    """One request as the steps built it, and as the adapter rewrote it."""

    operation: str
    method: str
    path: str
    ids: Mapping[str, str]
    json: Any = None
    params: Mapping[str, Any] | None = None
    files: Any = None
    data: Mapping[str, Any] | None = None

    def but(self, **changes: Any) -> Call:
        return replace(self, **changes)


def route(method: str, path: str) -> tuple[str, dict[str, str]]:
    """The operation an OpenAI request performs, and its path parameters (still encoded)."""
    for route_method, pattern, operation in _ROUTES:
        if route_method == method:
            found = pattern.match(path)
            if found:
                return operation, {k: v for k, v in found.groupdict().items() if v is not None}
    return "other", {}


def step_operation(step_type: str, config: Mapping[str, Any]) -> str | None:
    """The operation a step performs with a config (legacy jobs are their own API)."""
    operation = STEP_OPERATIONS.get(step_type)
    if operation is None:
        return None
    if operation.startswith("jobs.") and config.get("api") == "legacy":
        return "legacy.other"
    if step_type == "openai.request_fine_tuned_model" and config.get("mode") != "chat":
        return "completions"
    return operation


class Adapter:
    """The OpenAI API: nothing to translate. Providers override what differs."""

    name = "openai"
    title = "OpenAI"  # how its refusals name the provider
    # Operation → the one sentence that says this provider cannot do it.
    unsupported: ClassVar[Mapping[str, str]] = {}
    # Provider status → OpenAI's; a status missing here is passed on as it is.
    statuses: ClassVar[Mapping[str, str]] = {}
    # Whether a job keeps the metadata it was created with (the create step finds its own
    # job by it after a lost answer).
    keeps_metadata = True
    # Where the provider puts its request id, first found wins.
    request_id_headers: tuple[str, ...] = ("x-request-id",)

    # -- validation --------------------------------------------------------------------

    def refusal(self, step_type: str, config: Mapping[str, Any]) -> str | None:
        """Why this provider cannot run ``step_type`` with ``config``, in one sentence."""
        operation = step_operation(step_type, config)
        if operation is not None and operation in self.unsupported:
            return self.unsupported[operation]
        return self.config_refusal(step_type, config)

    def config_refusal(self, step_type: str, config: Mapping[str, Any]) -> str | None:
        if step_type == "openai.create_fine_tuning_job":
            hyper = config.get("hyperparameters")
            if isinstance(hyper, Mapping) and "learning_rate" in hyper:
                return (
                    f"{self.title} takes a learning_rate_multiplier, not an absolute "
                    "learning_rate; set hyperparameters.learning_rate_multiplier instead"
                )
            if config.get("lora") is not None:
                return (
                    f"{self.title} chooses how it trains and takes no LoRA settings; "
                    "remove `lora` (Nebius and Together take them)"
                )
            if config.get("training_type") is not None:
                return "training_type is Azure OpenAI's setting; remove it for this provider"
        if step_type == "openai.deploy_fine_tuned_model":
            return (
                f"{self.title} serves a fine-tuned model as soon as its job succeeds; "
                "deployment is a step for Azure OpenAI only, remove it"
            )
        return None

    # -- requests ----------------------------------------------------------------------

    def headers(self, auth: Authorization) -> dict[str, str]:
        """The headers that authenticate a request (each value is treated as a secret)."""
        headers: dict[str, str] = {}
        if auth.api_key is not None:
            headers["Authorization"] = f"Bearer {auth.api_key.get_secret_value()}"
        if auth.organization:
            headers["OpenAI-Organization"] = auth.organization
        if auth.project:
            headers["OpenAI-Project"] = auth.project
        return headers

    def query(self, auth: Authorization) -> dict[str, str]:
        """Query parameters every request carries (Azure's api-version)."""
        return {}

    def outgoing(self, call: Call, auth: Authorization) -> Call:
        """The provider's request for an OpenAI-shaped one."""
        return call

    def incoming(self, call: Call, body: Any) -> Any:
        """The OpenAI-shaped answer for the provider's answer to ``call``."""
        if call.operation.startswith("jobs.") and isinstance(body, dict):
            if body.get("object") == "list" and isinstance(body.get("data"), list):
                if call.operation == "jobs.list":
                    body["data"] = [self.job(j) for j in body["data"]]
            elif call.operation not in ("jobs.events", "jobs.checkpoints"):
                return self.job(body)
        return body

    def job(self, job: Any) -> Any:
        """A job object with OpenAI's status, the provider's own kept in provider_status."""
        if not isinstance(job, dict) or not self.statuses:
            return job
        status = job.get("status")
        if isinstance(status, str) and status in self.statuses:
            job = {**job, "status": self.statuses[status], "provider_status": status}
        return job

    def error_fields(self, status: int, body: Any) -> dict[str, Any]:
        """OpenAI's error fields (message, type, code, param) from an error answer's body."""
        if not isinstance(body, dict):
            return {}
        error = body.get("error")
        if isinstance(error, dict):
            return dict(error)
        if isinstance(error, str):
            return {"message": error}
        detail = body.get("detail")
        if isinstance(detail, str):  # FastAPI's HTTPException
            return {"message": detail}
        if isinstance(detail, list) and detail and isinstance(detail[0], dict):
            # FastAPI's 422: [{"loc": [...], "msg": ..., "type": ...}]
            first = detail[0]
            where = ".".join(str(p) for p in first.get("loc", []) if p != "body")
            return {
                "message": f"{where}: {first.get('msg')}" if where else str(first.get("msg")),
                "param": where or None,
                "code": first.get("type"),
            }
        return body if isinstance(body.get("message"), str) else {}

    def request_id(self, headers: Mapping[str, str]) -> str | None:
        for name in self.request_id_headers:
            value = headers.get(name)
            if value:
                return value
        return None


def keyed_provider(adapter: Adapter, title: str, default_url: str) -> Provider:
    """A provider reached with an API key at a base URL (``default_url`` unless set)."""
    return Provider(
        name=adapter.name,
        title=f"{title} ({default_url})",
        settings={"api_key": API_KEY_SETTING, "base_url": BASE_URL_SETTING, **COMMON_SETTINGS},
        base_url=lambda settings: str(settings.get("base_url") or default_url),
        required=("api_key",),
        refusal=adapter.refusal,
    )


__all__ = [
    "LEGACY_REFUSAL",
    "OPENAI_STATUSES",
    "STEP_OPERATIONS",
    "Adapter",
    "Call",
    "keyed_provider",
    "route",
    "step_operation",
]
