"""``provider: local``: the embedded backend, served in this process (no network, no key).

It speaks OpenAI's API under ``/v1`` (and each other provider's dialect beside it), so its
adapter is OpenAI's. The backend itself is built on first use, from the options of the
authorization (``job_seconds``, ``state``, ``trainer``, ``models``, ``device``, ``max_memory``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from steprun.runtime.authorizations import LOCAL_BASE_URL, LOCAL_ORIGIN
from steprun.runtime.providers import COMMON_SETTINGS, Provider

from .base import Adapter


class LocalAdapter(Adapter):
    name = "local"
    title = "the embedded backend"


ADAPTER = LocalAdapter()


def _build(options: Mapping[str, Any]) -> Any:
    from steprun.runtime.local import LocalBackend  # the backend's imports wait for its use

    settings = dict(options)
    base_dir = Path(settings.pop("base_dir", None) or ".")
    state = settings.pop("state", None)
    if state is not None:  # a folder, relative to the flow file's
        settings["state_dir"] = base_dir / Path(str(state)).expanduser()
    return LocalBackend(**settings)


PROVIDER = Provider(
    name="local",
    title="the embedded backend, no network, no key",
    settings={
        "job_seconds": {
            "type": "number",
            "exclusiveMinimum": 0,
            "description": "How long a fine-tuning job takes from create to its final state.",
        },
        "state": {
            "type": "string",
            "minLength": 1,
            "description": "The folder where the backend keeps its files and jobs (relative "
            "to the flow file's). Default: beside the run store (steprun run), in memory "
            "otherwise.",
        },
        "trainer": {
            "enum": ["simulated", "transformers"],
            "description": "simulated (default: jobs follow the clock, models answer from "
            "their data) or transformers (real training with TRL and PEFT; pip install "
            "'steprun[train]').",
        },
        "models": {
            "type": "object",
            "description": "trainer: transformers: base models by name, each a local folder "
            "or Hub id (what from_pretrained takes), or {path, adapter: lora|full, "
            "learning_rate}. steprun-tiny is built in.",
            "propertyNames": {"not": {"const": "steprun-tiny"}},
            "additionalProperties": {
                "oneOf": [
                    {"type": "string", "minLength": 1},
                    {
                        "type": "object",
                        "required": ["path"],
                        "additionalProperties": False,
                        "properties": {
                            "path": {"type": "string", "minLength": 1},
                            "adapter": {"enum": ["lora", "full"]},
                            "learning_rate": {"type": "number", "exclusiveMinimum": 0},
                        },
                    },
                ]
            },
        },
        "device": {
            "type": "string",
            "minLength": 1,
            "description": "trainer: transformers: auto (default: CUDA, then MPS, then CPU), "
            "cpu, cuda, cuda:1, mps.",
        },
        "max_memory": {
            "type": ["string", "integer"],
            "description": "trainer: transformers: the most memory a training process may "
            "use, such as 8GB or 512MiB (on CPU its address space, torch included; on a GPU "
            "the device memory torch may take); beyond it the job fails with out_of_memory.",
        },
        **COMMON_SETTINGS,
    },
    base_url=lambda settings: LOCAL_BASE_URL,
    secrets=(),
    refusal=ADAPTER.refusal,
    origin=LOCAL_ORIGIN,
    build=_build,
)

__all__ = ["ADAPTER", "PROVIDER", "LocalAdapter"]
