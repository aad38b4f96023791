"""``provider: together``: Together AI (``https://api.together.ai/v1``).

Files, chat and completions are OpenAI's shapes (an upload goes to ``/files/upload``), but
fine-tuning is Together's own jobs API: ``POST /fine-tunes`` with flat settings
(``n_epochs``, ``batch_size``, an absolute ``learning_rate``, ``training_type`` Lora (the
default) or Full), jobs whose times are ISO dates, statuses of its own (pending, queued,
running, compressing, uploading, cancel_requested, cancelled, error, completed), events
and checkpoints without paging, no metadata, no pause or resume.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from .base import LEGACY_REFUSAL, Adapter, Call, keyed_provider

if TYPE_CHECKING:
    from steprun.runtime.authorizations import Authorization

BASE_URL = "https://api.together.ai/v1"
# Together's job statuses → OpenAI's. A cancel that was asked for has not happened yet,
# and compressing and uploading the model are still the job's work: all three "running".
STATUSES = {
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
_NO_PAUSE = (
    "Together AI cannot pause or resume a fine-tuning job; cancel it and start a new one "
    "from its last checkpoint instead"
)
_JOB_PATH = "/fine-tunes"


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def epoch(value: Any) -> int | None:
    """Together's ISO dates as OpenAI's epoch seconds."""
    if isinstance(value, int | float):
        return int(value)
    if not isinstance(value, str) or not value:
        return None
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None


def create_body(body: Mapping[str, Any]) -> dict[str, Any]:
    """Together's ``POST /fine-tunes`` body for OpenAI's ``CreateFineTuningJobRequest``."""
    out: dict[str, Any] = {
        k: body[k] for k in ("model", "training_file", "validation_file", "suffix") if k in body
    }
    if body.get("seed") is not None:
        out["random_seed"] = body["seed"]
    method = _mapping(body.get("method"))
    kind = method.get("type", "supervised")
    hyper = dict(body.get("hyperparameters") or {})
    hyper.update((method.get(kind) or {}).get("hyperparameters") or {})
    for ours, theirs in (
        ("n_epochs", "n_epochs"),
        ("batch_size", "batch_size"),
        ("learning_rate", "learning_rate"),
    ):
        if hyper.get(ours) not in (None, "auto"):
            out[theirs] = hyper[ours]
    if kind == "dpo":
        out["training_method"] = {"method": "dpo"}
        if hyper.get("beta") not in (None, "auto"):
            out["training_method"]["dpo_beta"] = hyper["beta"]
    lora = body.get("lora")
    if lora is False:
        out["training_type"] = {"type": "Full"}
    elif isinstance(lora, Mapping):
        training: dict[str, Any] = {"type": "Lora"}
        for ours, theirs in (
            ("r", "lora_r"),
            ("alpha", "lora_alpha"),
            ("dropout", "lora_dropout"),
            ("trainable_modules", "lora_trainable_modules"),
        ):
            if lora.get(ours) is not None:
                training[theirs] = lora[ours]
        # Together requires both when it is told LoRA; its defaults otherwise.
        training.setdefault("lora_r", 8)
        training.setdefault("lora_alpha", 2 * int(training["lora_r"]))
        out["training_type"] = training
    return out


def job(job: Mapping[str, Any]) -> dict[str, Any]:
    """An OpenAI fine-tuning job object for a Together job (truncated or whole)."""
    status = str(job.get("status"))
    mapped = STATUSES.get(status, status)
    training_type = _mapping(job.get("training_type"))
    method = _mapping(job.get("training_method"))
    error = None
    if mapped == "failed":
        failures = [
            e
            for e in job.get("events") or []
            if isinstance(e, dict) and e.get("type") == "job_error"
        ]
        message = failures[-1].get("message") if failures else "the job failed at Together"
        error = {"code": "job_error", "message": message, "param": None}
    hyperparameters = {
        k: job[k] for k in ("n_epochs", "batch_size", "learning_rate") if job.get(k) is not None
    }
    if training_type.get("type") == "Lora":
        hyperparameters["lora"] = {
            "r": training_type.get("lora_r"),
            "alpha": training_type.get("lora_alpha"),
            "dropout": training_type.get("lora_dropout"),
        }
    return {
        "id": job.get("id"),
        "object": "fine_tuning.job",
        "model": job.get("model"),
        "created_at": epoch(job.get("created_at")),
        "finished_at": epoch(job.get("updated_at")) if mapped in _FINAL else None,
        "fine_tuned_model": job.get("model_output_name") if mapped == "succeeded" else None,
        "status": mapped,
        "provider_status": status,
        "training_file": job.get("training_file"),
        "validation_file": job.get("validation_file"),
        "hyperparameters": hyperparameters,
        "method": {"type": "dpo" if method.get("method") == "dpo" else "supervised"},
        "trained_tokens": job.get("token_count"),
        "seed": job.get("random_seed"),
        "suffix": job.get("suffix"),
        "result_files": [],
        "metadata": None,
        "error": error,
        "organization_id": job.get("user_id"),
        "integrations": [],
        "estimated_finish": None,
    }


_FINAL = frozenset({"succeeded", "failed", "cancelled"})


def event(job_id: str, index: int, item: Mapping[str, Any]) -> dict[str, Any]:
    """An OpenAI ``fine_tuning.job.event`` for one of Together's events."""
    kind = str(item.get("type") or "message")
    data = {
        k: item[k]
        for k in ("step", "total_steps", "token_count", "checkpoint_path", "model_path")
        if item.get(k) not in (None, "", 0)
    }
    data["together_type"] = kind
    return {
        "object": "fine_tuning.job.event",
        "id": f"ftevent-{job_id}-{index}",
        "created_at": epoch(item.get("created_at")),
        "level": item.get("level") or ("error" if kind == "job_error" else "info"),
        "message": item.get("message") or kind,
        "type": "message",
        "data": data,
    }


def checkpoint(job_id: str, item: Mapping[str, Any]) -> dict[str, Any]:
    step = item.get("step")
    return {
        "object": "fine_tuning.job.checkpoint",
        "id": f"ftckpt-{job_id}-{step}",
        "created_at": epoch(item.get("created_at")),
        "fine_tuned_model_checkpoint": item.get("path"),
        "step_number": step,
        "metrics": {},
        "fine_tuning_job_id": job_id,
        "checkpoint_type": item.get("checkpoint_type"),
    }


def page(items: list[Any], params: Mapping[str, Any] | None) -> dict[str, Any]:
    """OpenAI's cursor page over a list Together returns whole: ``after`` and ``limit``."""
    params = params or {}
    after = params.get("after")
    if after is not None:
        ids = [i.get("id") for i in items]
        items = items[ids.index(after) + 1 :] if after in ids else []
    limit = params.get("limit")
    more = isinstance(limit, int) and len(items) > limit
    if isinstance(limit, int):
        items = items[:limit]
    body: dict[str, Any] = {"object": "list", "data": items, "has_more": more}
    return body


class TogetherAdapter(Adapter):
    name = "together"
    title = "Together AI"
    statuses: ClassVar[Mapping[str, str]] = STATUSES
    keeps_metadata = False
    unsupported: ClassVar[Mapping[str, str]] = {
        "jobs.pause": _NO_PAUSE,
        "jobs.resume": _NO_PAUSE,
        "legacy.create": LEGACY_REFUSAL,
        "legacy.other": LEGACY_REFUSAL,
        "models.delete": (
            "Together AI deletes no model through its API; delete the fine-tuning job's "
            "files instead, or remove the delete step"
        ),
    }

    def config_refusal(self, step_type: str, config: Mapping[str, Any]) -> str | None:
        if step_type == "openai.create_fine_tuning_job":
            method = config.get("method")
            hyper = dict(config.get("hyperparameters") or {})
            if isinstance(method, Mapping):
                kind = method.get("type")
                if kind == "reinforcement":
                    return "Together AI has no reinforcement fine-tuning; use supervised or dpo"
                hyper.update((method.get(str(kind)) or {}).get("hyperparameters") or {})
            if "learning_rate_multiplier" in hyper:
                return (
                    "Together AI takes an absolute learning rate, not a multiplier; set "
                    "hyperparameters.learning_rate (its default is 0.00001) instead"
                )
            if config.get("metadata"):
                return "Together AI keeps no metadata with a job; remove `metadata`"
            if config.get("integrations"):
                return (
                    "Together AI takes no integrations list (its W&B settings are its own); "
                    "remove `integrations`"
                )
            if config.get("training_type") is not None:
                return "training_type is Azure OpenAI's setting; remove it for Together AI"
            return None
        return super().config_refusal(step_type, config)

    def outgoing(self, call: Call, auth: Authorization) -> Call:
        op, job_id = call.operation, call.ids.get("job_id", "")
        if op == "jobs.create":
            return call.but(path=_JOB_PATH, json=create_body(call.json or {}))
        if op == "jobs.list":
            return call.but(path=_JOB_PATH, params=None)
        if op == "jobs.retrieve":
            return call.but(path=f"{_JOB_PATH}/{job_id}")
        if op == "jobs.cancel":
            return call.but(path=f"{_JOB_PATH}/{job_id}/cancel")
        if op in ("jobs.events", "jobs.checkpoints"):
            return call.but(path=f"{_JOB_PATH}/{job_id}/{op.split('.')[1]}", params=None)
        if op == "files.create":
            # Together's upload: /files/upload with the file's name as a form field.
            data = dict(call.data or {})
            upload = (call.files or {}).get("file")
            if isinstance(upload, tuple) and upload:
                data["file_name"] = upload[0]
            data.setdefault("file_type", "jsonl")
            return call.but(path="/files/upload", data=data)
        return call

    def incoming(self, call: Call, body: Any) -> Any:
        op, job_id = call.operation, call.ids.get("job_id", "")
        data = body.get("data") if isinstance(body, dict) else None
        if op in ("jobs.create", "jobs.retrieve", "jobs.cancel") and isinstance(body, dict):
            return job(body)
        if op == "jobs.list" and isinstance(data, list):
            jobs = sorted((job(j) for j in data), key=lambda j: -(j["created_at"] or 0))
            return page(jobs, call.params)
        if op == "jobs.events" and isinstance(data, list):
            events = [event(job_id, i, e) for i, e in enumerate(data) if isinstance(e, dict)]
            return page(events[::-1], call.params)  # OpenAI lists the newest first
        if op == "jobs.checkpoints" and isinstance(data, list):
            found = [checkpoint(job_id, c) for c in data if isinstance(c, dict)]
            found.sort(key=lambda c: -(c["step_number"] or 0))
            result = page(found, call.params)
            result["first_id"] = found[0]["id"] if found else None
            result["last_id"] = result["data"][-1]["id"] if result["data"] else None
            return result
        if op in ("files.create", "files.retrieve") and isinstance(body, dict):
            return file(body)
        if op == "files.list" and isinstance(data, list):
            return {"object": "list", "data": [file(f) for f in data], "has_more": False}
        if op == "models.list" and isinstance(body, list):
            return {"object": "list", "data": body}
        return body


def file(item: Mapping[str, Any]) -> dict[str, Any]:
    """OpenAI's file object for Together's (``Processed`` becomes the status)."""
    out = {k: v for k, v in item.items() if k not in ("Processed", "FileType")}
    out["object"] = "file"
    out["status"] = "processed" if item.get("Processed", True) else "uploaded"
    return out


ADAPTER = TogetherAdapter()

PROVIDER = keyed_provider(ADAPTER, "Together AI", BASE_URL)

__all__ = ["ADAPTER", "BASE_URL", "PROVIDER", "STATUSES", "TogetherAdapter", "create_body", "job"]
