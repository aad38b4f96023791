"""Nebius Token Factory's dialect of ``/v1``: OpenAI's API with its own hyperparameters.

Nebius fine-tunes open models (``meta-llama/...``) through OpenAI's
``POST /v1/fine_tuning/jobs``, with an absolute ``learning_rate`` and LoRA settings
(``lora``, ``lora_r``, ``lora_alpha``, ``lora_dropout``) and a few more inside
``hyperparameters``. For a job on an open model the backend takes them: the rate becomes
the multiplier its trainers read (``learning_rate / 1e-5``), the rest are recorded with
the job's creation and not used by the simulated trainer. A job on an OpenAI model keeps
OpenAI's strict checks.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from .asgi import json_body, read_body, replay

CREATE_PATH = "/v1/fine_tuning/jobs"
OPEN_MODEL_PREFIXES = ("meta-llama/",)
BASE_LEARNING_RATE = 1e-5
# Nebius's hyperparameters besides OpenAI's (its API reference, SupervisedHParameters).
EXTRA = (
    "lora",
    "lora_r",
    "lora_alpha",
    "lora_dropout",
    "warmup_ratio",
    "weight_decay",
    "packing",
    "max_grad_norm",
    "context_length",
)


def openai_hyperparameters(hyper: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in hyper.items() if k not in EXTRA and k != "learning_rate"}
    rate = hyper.get("learning_rate")
    if isinstance(rate, int | float) and not isinstance(rate, bool):
        out["learning_rate_multiplier"] = rate / BASE_LEARNING_RATE
    return out


class NebiusDialect:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and scope.get("path") == CREATE_PATH
        ):
            await self.app(scope, receive, send)
            return
        body = await read_body(receive)
        data = json_body(body)
        model = data.get("model") if isinstance(data, dict) else None
        if isinstance(model, str) and model.startswith(OPEN_MODEL_PREFIXES):
            assert isinstance(data, dict)
            if isinstance(data.get("hyperparameters"), dict):
                data["hyperparameters"] = openai_hyperparameters(data["hyperparameters"])
            method = data.get("method")
            if isinstance(method, dict):
                for settings in method.values():
                    if isinstance(settings, dict) and isinstance(
                        settings.get("hyperparameters"), dict
                    ):
                        settings["hyperparameters"] = openai_hyperparameters(
                            settings["hyperparameters"]
                        )
            body = json.dumps(data).encode()
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-length"]
            scope = {**scope, "headers": [*headers, (b"content-length", str(len(body)).encode())]}
        await self.app(scope, replay(body), send)


__all__ = ["EXTRA", "NebiusDialect", "openai_hyperparameters"]
