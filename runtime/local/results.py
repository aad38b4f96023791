"""The numbers a job reports: its metrics per step and the result file it leaves.

Simulated: a decaying loss curve with a little noise seeded by the job, so that every
read of the same job gives the same numbers. Two result files, as the two APIs wrote them:

* ``step_metrics.csv`` (``/v1/fine_tuning/jobs``): a row per step;
* ``compiled_results.csv`` (the 2023 ``/v1/fine-tunes``): a row per step with the 2023
  columns, and with ``compute_classification_metrics`` the ``classification/*`` columns
  on the row that ends each epoch (when the validation set is scored): accuracy,
  precision, recall, auroc, auprc and ``f{beta}`` for each of ``classification_betas``
  (f1.0 when none) for a binary task (``classification_positive_class``), accuracy and
  weighted_f1_score for more classes.
"""

from __future__ import annotations

import math
import zlib

from .records import JobRecord

RESULT_COLUMNS = ("step", "train_loss", "train_accuracy", "valid_loss", "valid_mean_token_accuracy")
LEGACY_COLUMNS = (
    "step", "elapsed_tokens", "elapsed_examples", "training_loss", "training_sequence_accuracy",
    "training_token_accuracy", "validation_loss", "validation_sequence_accuracy",
    "validation_token_accuracy",
)  # fmt: skip


def _unit(job: JobRecord, *parts: object) -> float:
    """A deterministic number in [0, 1) for this job and ``parts``."""
    return zlib.crc32(":".join(map(str, (job.id, job.seed, *parts))).encode()) / 2**32


def metrics(job: JobRecord, step: int) -> dict[str, float]:
    """Training metrics at a step: a decaying loss curve with a little seeded noise."""
    progress = step / job.total_steps
    start = 1.6 + 0.8 * _unit(job, "start")
    floor = 0.05 + 0.15 * _unit(job, "floor")
    decay = math.exp(-4.0 * progress)
    noise = _unit(job, "loss", step) - 0.5
    loss = max(0.01, floor + (start - floor) * decay + 0.08 * noise * (1 - 0.5 * progress))
    accuracy = 0.45 + 0.5 * (1 - decay) + 0.04 * (_unit(job, "acc", step) - 0.5)
    values = {
        "step": step,
        "train_loss": round(loss, 5),
        "train_mean_token_accuracy": round(min(1.0, max(0.0, accuracy)), 5),
    }
    if job.validation_file is not None:
        valid_noise = _unit(job, "valid", step) - 0.5
        values["valid_loss"] = round(max(0.01, loss * 1.07 + 0.05 * valid_noise), 5)
        values["valid_mean_token_accuracy"] = round(min(1.0, max(0.0, accuracy - 0.02)), 5)
    return values


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.5f}"


def _csv(header: list[str], rows: list[list[str]]) -> bytes:
    return ("\n".join(",".join(row) for row in [header, *rows]) + "\n").encode()


def result_csv(job: JobRecord) -> bytes:
    """``step_metrics.csv``: one row of metrics per step."""
    rows = []
    for step in range(1, job.total_steps + 1):
        values = metrics(job, step)
        rows.append(
            [
                str(step),
                _number(values["train_loss"]),
                _number(values["train_mean_token_accuracy"]),
                _number(values.get("valid_loss")),
                _number(values.get("valid_mean_token_accuracy")),
            ]
        )
    return _csv(list(RESULT_COLUMNS), rows)


def classification_columns(job: JobRecord) -> list[str]:
    """The ``classification/*`` columns a legacy job writes (none unless asked for)."""
    if not job.extra.get("compute_classification_metrics"):
        return []
    if job.extra.get("classification_positive_class") is None:
        return ["classification/accuracy", "classification/weighted_f1_score"]
    betas = job.extra.get("classification_betas") or [1.0]
    names = ["accuracy", "precision", "recall", "auroc", "auprc"]
    names += [f"f{float(beta)}" for beta in betas]
    return [f"classification/{name}" for name in names]


def classification_metrics(job: JobRecord, step: int) -> dict[str, float]:
    """The validation set's classification scores after ``step`` (an epoch's end)."""
    progress = step / job.total_steps
    learned = 1 - math.exp(-3.0 * progress)
    accuracy = min(0.99, 0.5 + 0.45 * learned + 0.03 * (_unit(job, "cls", step) - 0.5))
    if job.extra.get("classification_positive_class") is None:
        return {
            "classification/accuracy": accuracy,
            "classification/weighted_f1_score": max(0.0, accuracy - 0.02),
        }
    precision = min(0.99, accuracy + 0.03 * (_unit(job, "precision", step) - 0.3))
    recall = min(0.99, accuracy + 0.03 * (_unit(job, "recall", step) - 0.7))
    values = {
        "classification/accuracy": accuracy,
        "classification/precision": precision,
        "classification/recall": recall,
        "classification/auroc": min(0.999, accuracy + 0.04),
        "classification/auprc": min(0.999, precision + 0.02),
    }
    for beta in job.extra.get("classification_betas") or [1.0]:
        b2 = float(beta) ** 2
        values[f"classification/f{float(beta)}"] = (
            (1 + b2) * precision * recall / (b2 * precision + recall)
        )
    return values


def legacy_result_csv(job: JobRecord) -> bytes:
    """``compiled_results.csv``: the 2023 columns, classification scores at epoch ends."""
    extra = classification_columns(job)
    epoch_ends = {min(job.total_steps, e * job.steps_per_epoch) for e in range(1, job.n_epochs + 1)}
    tokens_per_step = job.tokens_per_epoch / max(1, job.steps_per_epoch)
    rows = []
    for step in range(1, job.total_steps + 1):
        values = metrics(job, step)
        accuracy = values["train_mean_token_accuracy"]
        row = [
            str(step),
            str(round(step * tokens_per_step)),
            str(min(step * job.batch_size, job.n_epochs * job.n_examples)),
            _number(values["train_loss"]),
            _number(max(0.0, accuracy - 0.1)),
            _number(accuracy),
            _number(values.get("valid_loss")),
            _number(max(0.0, values["valid_mean_token_accuracy"] - 0.1))
            if "valid_mean_token_accuracy" in values
            else "",
            _number(values.get("valid_mean_token_accuracy")),
        ]
        scores = classification_metrics(job, step) if extra and step in epoch_ends else {}
        rows.append(row + [_number(scores.get(name)) for name in extra])
    return _csv([*LEGACY_COLUMNS, *extra], rows)


def result_file(job: JobRecord) -> bytes:
    """The result file a succeeded job leaves, in its API's format."""
    return result_csv(job) if job.api == "fine_tuning" else legacy_result_csv(job)


__all__ = [
    "LEGACY_COLUMNS",
    "RESULT_COLUMNS",
    "classification_columns",
    "classification_metrics",
    "legacy_result_csv",
    "metrics",
    "result_csv",
    "result_file",
]
