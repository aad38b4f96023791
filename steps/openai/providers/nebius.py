"""``provider: nebius``: Nebius Token Factory (``https://api.tokenfactory.nebius.com/v1``).

It takes the OpenAI API for files, fine-tuning jobs and chat, with its own
hyperparameters: an absolute ``learning_rate`` and LoRA settings (``lora``, ``lora_r``,
``lora_alpha``, ``lora_dropout``) inside ``hyperparameters``. It keeps no metadata with a
job, has no pause or resume, and answers validation errors as FastAPI does
(``{"detail": [...]}``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from .base import LEGACY_REFUSAL, Adapter, Call, keyed_provider

if TYPE_CHECKING:
    from steprun.runtime.authorizations import Authorization

BASE_URL = "https://api.tokenfactory.nebius.com/v1"
_NO_PAUSE = (
    "Nebius Token Factory cannot pause or resume a fine-tuning job; cancel it and start "
    "a new one instead"
)


def lora_hyperparameters(lora: Any) -> dict[str, Any]:
    """The step's ``lora`` setting as Nebius's hyperparameters (``false``: full weights)."""
    if lora is False:
        return {"lora": False}
    settings = lora if isinstance(lora, Mapping) else {}
    out: dict[str, Any] = {"lora": True}
    for ours, theirs in (("r", "lora_r"), ("alpha", "lora_alpha"), ("dropout", "lora_dropout")):
        if settings.get(ours) is not None:
            out[theirs] = settings[ours]
    return out


class NebiusAdapter(Adapter):
    name = "nebius"
    title = "Nebius Token Factory"
    keeps_metadata = False
    unsupported: ClassVar[Mapping[str, str]] = {
        "jobs.pause": _NO_PAUSE,
        "jobs.resume": _NO_PAUSE,
        "legacy.create": LEGACY_REFUSAL,
        "legacy.other": LEGACY_REFUSAL,
    }

    def config_refusal(self, step_type: str, config: Mapping[str, Any]) -> str | None:
        if step_type == "openai.create_fine_tuning_job":
            hyper = config.get("hyperparameters")
            if isinstance(hyper, Mapping) and "learning_rate_multiplier" in hyper:
                return (
                    "Nebius Token Factory takes an absolute learning rate, not a multiplier; "
                    "set hyperparameters.learning_rate (e.g. 0.00001) instead"
                )
            if config.get("metadata"):
                return "Nebius Token Factory keeps no metadata with a job; remove `metadata`"
            if config.get("training_type") is not None:
                return "training_type is Azure OpenAI's setting; remove it for Nebius"
            return None
        return super().config_refusal(step_type, config)

    def outgoing(self, call: Call, auth: Authorization) -> Call:
        if call.operation == "jobs.create" and isinstance(call.json, dict):
            body = dict(call.json)
            body.pop("metadata", None)  # the create step's tags: Nebius has no metadata
            lora = body.pop("lora", None)
            if lora is not None:
                body["hyperparameters"] = {
                    **(body.get("hyperparameters") or {}),
                    **lora_hyperparameters(lora),
                }
            return call.but(json=body)
        if call.operation == "jobs.list" and call.params:
            return call.but(params={k: v for k, v in call.params.items() if k != "metadata"})
        return call


ADAPTER = NebiusAdapter()

PROVIDER = keyed_provider(ADAPTER, "Nebius Token Factory", BASE_URL)

__all__ = ["ADAPTER", "BASE_URL", "PROVIDER", "NebiusAdapter", "lora_hyperparameters"]
