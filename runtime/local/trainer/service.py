""":class:`Trainer`: the real trainer of one backend (``trainer: transformers``)."""

from __future__ import annotations

from typing import Any

from ..errors import APIError, invalid
from ..state import JobRecord, Store
from . import lifecycle
from .serving import ModelCache, TrainedModel, Weights
from .settings import AUTO_LEARNING_RATE_MULTIPLIER, BaseModelSpec, TrainerSettings

CHECKPOINT_MARK = ":ckpt-step-"


class Trainer:
    """Starts training processes for jobs and serves the models they make.

    Job folders and the built steprun-tiny live with the backend's ``store``: in its
    state folder when it has one, so jobs survive a restart; otherwise in its temporary
    folder, and then a training process stops when its backend's process is gone.
    """

    def __init__(self, settings: TrainerSettings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.durable = store.persistent
        self.root = store.root
        self.models = ModelCache()

    def base(self, name: str) -> BaseModelSpec | None:
        return self.settings.base(name)

    def unavailable(self, model: str, method: str) -> APIError:
        if method == "reinforcement":
            message = f"Model {model} is not available for reinforcement fine-tuning."
        else:
            message = (
                f"Model {model} is not available for fine-tuning with trainer: transformers; "
                f"it fine-tunes {', '.join(self.settings.names)} (add yours under `models`)."
            )
        return invalid(message, param="model", code="model_not_available")

    def start(
        self,
        job: JobRecord,
        *,
        data_format: str,
        training: bytes,
        validation: bytes | None,
        now: float,
    ) -> None:
        base = self.base(job.model)
        assert base is not None  # checked when the job was created
        if job.requested.get("learning_rate_multiplier", "auto") == "auto":
            job.learning_rate_multiplier = AUTO_LEARNING_RATE_MULTIPLIER
        spec: dict[str, Any] = {
            "base_name": base.name,
            "base_source": base.source,
            "adapter": base.adapter,
            "method": job.method,
            "format": data_format,
            "n_epochs": job.n_epochs,
            "batch_size": job.batch_size,
            "learning_rate": base.base_learning_rate * job.learning_rate_multiplier,
            "schedule": base.schedule,
            "warmup": base.warmup,
            "seed": job.seed,
            "beta": job.extra.get("beta", 0.1),
            "device": self.settings.device,
            "max_memory": self.settings.max_memory,
            "training_file": job.training_file,
            "validation_file": job.validation_file,
            "durable": self.durable,
            "root": str(self.root),
        }
        lifecycle.start(
            job,
            path=self.store.job_dir(job.id),
            spec=spec,
            training=training,
            validation=validation,
            now=now,
        )

    def weights(self, store: Store, model_id: str) -> Weights | None:
        """Where the weights of ``model_id`` are, when this trainer serves it."""
        base = self.base(model_id)
        if base is not None:
            return Weights(self._source(base), None, self.settings.device)
        record = store.models.get(model_id.split(CHECKPOINT_MARK, 1)[0])
        if record is None or record.deleted:
            return None
        job = store.jobs.get(record.job_id)
        if job is None or not lifecycle.is_real(job):
            return None
        folder = lifecycle.model_folder(job, model_id)
        if folder is None:
            return None
        spec = lifecycle.folder(job).spec()
        source = spec["base_source"] or self._source(self.settings.base(spec["base_name"]))
        return Weights(source, str(folder), spec["device"])

    def _source(self, base: BaseModelSpec | None) -> str:
        from . import tiny

        if base is None or base.builtin:
            return str(tiny.ensure(self.root / "models"))
        return base.source

    def model(self, weights: Weights) -> TrainedModel:
        return self.models.get(weights)


__all__ = ["Trainer"]
