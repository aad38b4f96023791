"""Inside the training process: tokenize the data, then train with TRL (SFT or DPO) and
PEFT (LoRA) or the whole model, reporting through a ``TrainerCallback``.

Heavy libraries are imported inside the functions: this module is imported only by the
training process, and by nothing in a core install.
"""

from __future__ import annotations

import csv
import io
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..results import RESULT_COLUMNS
from . import data, tiny
from .jobdir import JobDir, State, write_json
from .memory import limited
from .settings import DEFAULT_LORA

# OpenAI publishes the checkpoints of the last three epochs.
PUBLISHED_CHECKPOINTS = 3
MAX_LENGTH = 1024


def base_path(spec: dict[str, Any]) -> str:
    """Where ``from_pretrained`` finds the base model (steprun-tiny is built on first use)."""
    if spec["base_source"]:
        return str(spec["base_source"])
    return str(tiny.ensure(Path(spec["root"]) / "models"))


def load_tokenizer(spec: dict[str, Any]) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_path(spec))
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def _ids(encoded: Any) -> list[int]:
    ids = encoded["input_ids"] if not isinstance(encoded, list) else encoded
    return list(ids)


def count_tokens(tokenizer: Any, row: dict[str, Any]) -> int:
    """Tokens of one row as the model sees it (chat template applied)."""
    prompt = row["prompt"]
    if isinstance(prompt, str):
        return len(_ids(tokenizer(prompt + row["completion"])))
    answers = [row["completion"]] if "completion" in row else [row["chosen"], row["rejected"]]
    return sum(
        len(_ids(tokenizer.apply_chat_template(prompt + answer, tokenize=True)))
        for answer in answers
    )


def _rows(job: JobDir, spec: dict[str, Any], name: str, file_id: str) -> list[dict[str, Any]]:
    return data.rows((job.path / name).read_bytes(), spec["format"], file_id)


def validate(job: JobDir, spec: dict[str, Any], state: State) -> None:
    """Tokenize both files with the base model's tokenizer; BadData when they cannot train."""
    from .jobdir import event

    tokenizer = load_tokenizer(spec)
    rows = _rows(job, spec, "train.jsonl", spec["training_file"])
    if spec.get("validation_file"):
        _rows(job, spec, "valid.jsonl", spec["validation_file"])
    try:
        counts = [count_tokens(tokenizer, row) for row in rows]
    except Exception as exc:  # a chat template refusing a conversation, a bad role
        raise data.BadData(f"cannot apply the base model's chat template: {exc}") from None
    longest = max(counts)
    if longest > MAX_LENGTH:
        too_long = sum(1 for n in counts if n > MAX_LENGTH)
        event(
            job,
            "truncated",
            f"{too_long} example(s) are longer than {MAX_LENGTH} tokens and will be truncated",
            level="warn",
        )
    state.n_examples = len(rows)
    state.tokens_per_epoch = sum(counts)
    job.save_state(state)


def device_arguments(device: str) -> dict[str, Any]:
    import torch

    if device == "cpu":
        return {"use_cpu": True, "bf16": False}
    bf16 = device.startswith("cuda") and torch.cuda.is_bf16_supported()
    return {"use_cpu": False, "bf16": bf16}


def latest_checkpoint(job: JobDir) -> Path | None:
    found = [p for p in job.output.glob("checkpoint-*") if (p / "trainer_state.json").exists()]
    return max(found, key=lambda p: int(p.name.split("-")[1]), default=None)


def _metrics_row(logs: dict[str, float], method: str) -> dict[str, float]:
    values = {"train_loss": float(logs["loss"])}
    if "mean_token_accuracy" in logs:
        values["train_mean_token_accuracy"] = float(logs["mean_token_accuracy"])
    if method == "dpo":
        pairs = (("rewards/accuracies", "train_reward_accuracy"), ("rewards/margins", "margin"))
        for key, name in pairs:
            if key in logs:
                values[name] = float(logs[key])
    return values


def _callback(job: JobDir, spec: dict[str, Any], state: State, check: Callable[[], None]) -> Any:
    from transformers import TrainerCallback

    from .jobdir import JobFailed, event

    steps_per_epoch = max(1, math.ceil(int(state.n_examples or 1) / spec["batch_size"]))

    class Reporter(TrainerCallback):  # type: ignore[misc]
        def __init__(self) -> None:
            self.paused = False
            self.valid: dict[str, float] = {}  # the latest validation metrics
            self.last: dict[str, float] = {}  # the latest step's metrics

        def on_train_begin(self, args: Any, trainer_state: Any, control: Any, **kw: Any) -> None:
            state.total_steps = trainer_state.max_steps
            state.started_at = time.time()
            state.started_step = trainer_state.global_step
            state.phase = "running"
            job.save_state(state)

        def on_step_end(self, args: Any, trainer_state: Any, control: Any, **kw: Any) -> None:
            state.step = trainer_state.global_step
            elapsed = time.time() - (state.started_at or time.time())
            if elapsed > 0 and state.step > state.started_step:
                state.step_rate = (state.step - state.started_step) / elapsed
            job.save_state(state)
            check()
            if job.control() == "pause":
                self.paused = True
                control.should_save = True
                control.should_training_stop = True

        def on_evaluate(self, args: Any, trainer_state: Any, control: Any, **kw: Any) -> None:
            metrics = kw.get("metrics") or {}
            if "eval_loss" in metrics:
                self.valid = {"valid_loss": float(metrics["eval_loss"])}
                if "eval_mean_token_accuracy" in metrics:
                    self.valid["valid_mean_token_accuracy"] = float(
                        metrics["eval_mean_token_accuracy"]
                    )

        def on_log(self, args: Any, trainer_state: Any, control: Any, **kw: Any) -> None:
            logs = kw.get("logs") or {}
            if "loss" not in logs:
                return
            step = trainer_state.global_step
            values = _metrics_row(logs, spec["method"])
            norm = float(logs.get("grad_norm", 0.0))
            if not (math.isfinite(values["train_loss"]) and math.isfinite(norm)):
                raise JobFailed(
                    f"Training diverged at step {step} (loss {values['train_loss']}, gradient "
                    f"norm {norm}); use a smaller learning_rate_multiplier",
                    "nan_loss",
                )
            values |= self.valid
            self.last = values
            message = f"Step {step}/{state.total_steps}: training loss={values['train_loss']:.2f}"
            if "valid_loss" in values:
                message += f", validation loss={values['valid_loss']:.2f}"
            data = {"step": step, **values, "total_steps": state.total_steps}
            event(job, f"step-{step}", message, type="metrics", data=data)

        def on_save(self, args: Any, trainer_state: Any, control: Any, **kw: Any) -> None:
            step = trainer_state.global_step
            folder = f"output/checkpoint-{step}"
            state.resume_from = folder
            if step % steps_per_epoch == 0 or step == trainer_state.max_steps:
                state.checkpoints.append(
                    {
                        "step": step,
                        "path": folder,
                        "created_at": time.time(),
                        "metrics": {"step": step, **self.last},
                    }
                )
                state.checkpoints = state.checkpoints[-PUBLISHED_CHECKPOINTS:]
                event(job, f"checkpoint-{step}", f"Checkpoint created at step {step}")
            job.save_state(state)
            keep = {c["path"] for c in state.checkpoints} | {folder}
            for old in job.output.glob("checkpoint-*"):
                if f"output/{old.name}" not in keep:
                    shutil.rmtree(old, ignore_errors=True)

    return Reporter()


def _trainer(job: JobDir, spec: dict[str, Any], state: State, check: Callable[[], None]) -> Any:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM

    from .worker import device_name

    device = device_name(spec["device"])
    tokenizer = load_tokenizer(spec)
    arguments = device_arguments(device)
    model = AutoModelForCausalLM.from_pretrained(
        base_path(spec), dtype=torch.bfloat16 if arguments["bf16"] else torch.float32
    )
    train_rows = _rows(job, spec, "train.jsonl", spec["training_file"])
    valid_rows = (
        _rows(job, spec, "valid.jsonl", spec["validation_file"])
        if spec.get("validation_file")
        else None
    )
    steps_per_epoch = math.ceil(len(train_rows) / spec["batch_size"])
    total = steps_per_epoch * spec["n_epochs"]
    common: dict[str, Any] = {
        "output_dir": str(job.output),
        "num_train_epochs": spec["n_epochs"],
        "per_device_train_batch_size": spec["batch_size"],
        "per_device_eval_batch_size": spec["batch_size"],
        "learning_rate": spec["learning_rate"],
        # (.get: the spec of a job started by an older steprun, resumed after an upgrade)
        "lr_scheduler_type": spec.get("schedule", "linear"),
        "warmup_steps": spec.get("warmup", 0.0),
        "seed": spec["seed"],
        "data_seed": spec["seed"],
        "logging_steps": 1,
        "save_strategy": "epoch",
        "report_to": "none",
        "disable_tqdm": True,
        "gradient_checkpointing": False,
        "max_length": MAX_LENGTH,
        "dataloader_num_workers": 0,
        **arguments,
    }
    if valid_rows:
        # About ten validation points over the job, as OpenAI reports them.
        common |= {"eval_strategy": "steps", "eval_steps": max(1, total // 10)}
    lora = None
    if spec["adapter"] == "lora":
        settings = {**DEFAULT_LORA, **(spec.get("lora") or {})}
        lora = LoraConfig(
            r=settings["r"],
            lora_alpha=settings["alpha"],
            lora_dropout=settings["dropout"],
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        )
    callback = _callback(job, spec, state, check)
    datasets = {
        "train_dataset": Dataset.from_list(train_rows),
        "eval_dataset": Dataset.from_list(valid_rows) if valid_rows else None,
    }
    if spec["method"] == "dpo":
        from trl import DPOConfig, DPOTrainer

        return callback, DPOTrainer(
            model=model,
            args=DPOConfig(beta=spec["beta"], **common),
            processing_class=tokenizer,
            peft_config=lora,
            callbacks=[callback],
            **datasets,
        )
    from trl import SFTConfig, SFTTrainer

    return callback, SFTTrainer(
        model=model,
        args=SFTConfig(**common),
        processing_class=tokenizer,
        peft_config=lora,
        callbacks=[callback],
        **datasets,
    )


def result_file(job: JobDir) -> bytes:
    """``step_metrics.csv``: one row per step, from the metrics events."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(RESULT_COLUMNS)
    for item in job.events():
        if item["type"] != "metrics":
            continue
        values = item["data"]
        writer.writerow(
            [
                values["step"],
                f"{values['train_loss']:.5f}",
                _cell(values.get("train_mean_token_accuracy")),
                _cell(values.get("valid_loss")),
                _cell(values.get("valid_mean_token_accuracy")),
            ]
        )
    return out.getvalue().encode()


def _cell(value: float | None) -> str:
    return "" if value is None else f"{value:.5f}"


def train(job: JobDir, spec: dict[str, Any], state: State, check: Callable[[], None]) -> None:
    """Train (or continue training) the job; its final state is on disk when this returns."""
    from .jobdir import event
    from .worker import device_name

    check()
    resume = latest_checkpoint(job)
    if resume is not None:
        event(job, f"resumed-{resume.name}", f"Training continues from {resume.name}")
    elif state.step > 0:
        event(
            job,
            "restarted",
            f"Training was interrupted at step {state.step}, before its first checkpoint; "
            "it starts again from step 0",
            level="warn",
        )
    else:
        event(job, "started", "Fine-tuning job started")
    callback, trainer = _trainer(job, spec, state, check)
    with limited(spec.get("max_memory"), device_name(spec["device"])):
        trainer.train(resume_from_checkpoint=str(resume) if resume is not None else None)
    if callback.paused:
        state.phase = "paused"
        job.save_state(state)
        event(job, f"paused-{state.step}", f"Fine-tuning job paused at step {state.step}")
        return
    trainer.save_model(str(job.model))
    trainer.processing_class.save_pretrained(str(job.model))
    write_json(job.model / "steprun.json", {"base": spec["base_name"], "job": spec["job_id"]})
    job.result_path.write_bytes(result_file(job))
    event(job, "model", "New fine-tuned model created")
    state.phase = "succeeded"
    state.finished_at = time.time()
    state.trained_tokens = int(state.tokens_per_epoch or 0) * spec["n_epochs"]
    job.save_state(state)
    event(job, "succeeded", "The job has successfully completed")


__all__ = [
    "MAX_LENGTH",
    "PUBLISHED_CHECKPOINTS",
    "base_path",
    "count_tokens",
    "latest_checkpoint",
    "load_tokenizer",
    "result_file",
    "train",
    "validate",
]
