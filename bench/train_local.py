"""Real training and inference through the embedded backend, beside bare TRL and bare
``generate`` on the same data and model, in one run (issue 11).

    python bench/train_local.py [--epochs 3] [--batch-size 4] [--model steprun-tiny]
                                [--base PATH --device cuda]

Training: tokens per second (the job's ``trained_tokens`` over the time from its
"Fine-tuning job started" event to "New fine-tuned model created"), for a job created
through the backend (``trainer: transformers``, in-process, a state folder, the training
in its child process with its callbacks: metrics events, state file, pause/cancel checks),
against the same ``SFTTrainer`` configuration run in this process by a bare script (the
floor: ``trainer.train()`` then ``save_model``). The goal: the backend adds at most 5%.

Inference: first-token latency and tokens per second of greedy chat answers from the
trained model: ``POST /chat/completions`` (streamed, first content chunk; then
non-streamed, ``usage.completion_tokens``) against bare ``model.generate`` on the same
weights. The backend generates a whole answer before it streams it, so its first token
comes when the answer is done: the gap is printed, not hidden.

On a GPU machine, point it at a real ~0.5B model: ``--base /models/Qwen2.5-0.5B-Instruct
--device cuda`` (LoRA, the same data). CI runs nothing here; the machines are shared and
noisy, so read the ratios, not the times. Needs ``steprun[train]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from steprun.runtime.local import LocalBackend

DATA = Path(__file__).resolve().parents[1] / "examples" / "data" / "support.jsonl"
QUESTION = [{"role": "user", "content": "How do I reset my password?"}]


async def through_backend(args: argparse.Namespace, state: Path) -> dict[str, Any]:
    models = {"base": {"path": args.base}} if args.base else {}
    backend = LocalBackend(
        trainer="transformers", state_dir=state, models=models, device=args.device
    )
    transport = httpx.ASGITransport(app=backend.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://x/v1", timeout=600) as c:
        upload = await c.post(
            "/files",
            files={"file": ("support.jsonl", DATA.read_bytes())},
            data={"purpose": "fine-tune"},
        )
        hyper = {"n_epochs": args.epochs, "batch_size": args.batch_size}
        job = (
            await c.post(
                "/fine_tuning/jobs",
                json={
                    "model": "base" if args.base else "steprun-tiny",
                    "seed": 1,
                    "training_file": upload.json()["id"],
                    "hyperparameters": hyper,
                },
            )
        ).json()
        while job["status"] not in ("succeeded", "failed", "cancelled"):
            await asyncio.sleep(0.5)
            job = (await c.get(f"/fine_tuning/jobs/{job['id']}")).json()
        assert job["status"] == "succeeded", job["error"]
        events = (await c.get(f"/fine_tuning/jobs/{job['id']}/events?limit=100")).json()["data"]
        assert events
        # Event times are whole seconds in the API; the job folder has them exact.
        exact = [
            json.loads(line)
            for line in (state / "jobs" / job["id"] / "events.jsonl").read_text().splitlines()
        ]
        start = next(e["created_at"] for e in exact if e["key"] == "started")
        end = next(e["created_at"] for e in exact if e["key"] == "model")
        body = {
            "model": job["fine_tuned_model"],
            "messages": QUESTION,
            "temperature": 0,
            "max_tokens": args.tokens,
        }
        await c.post("/chat/completions", json=body)  # load the weights once
        began = time.perf_counter()
        first = None
        async with c.stream("POST", "/chat/completions", json={**body, "stream": True}) as r:
            async for line in r.aiter_lines():
                if '"content":"' in line and '"content":""' not in line and first is None:
                    first = time.perf_counter() - began
        began = time.perf_counter()
        reply = (await c.post("/chat/completions", json=body)).json()
        seconds = time.perf_counter() - began
    backend.close()
    return {
        "tokens": job["trained_tokens"],
        "train_seconds": end - start,
        "first_token": first,
        "gen_tokens_per_s": reply["usage"]["completion_tokens"] / seconds,
        "model_dir": state / "jobs" / job["id"] / "model",
    }


def bare(args: argparse.Namespace, root: Path, model_dir: Path) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    from steprun.runtime.local.trainer import tiny

    base = args.base or str(tiny.ensure(root / "models"))
    rows = []
    for line in DATA.read_text().splitlines():
        messages = json.loads(line)["messages"]
        rows.append({"prompt": messages[:-1], "completion": messages[-1:]})
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base)
    rate = tiny.BASE_LEARNING_RATE if not args.base else 2e-4
    config = SFTConfig(
        output_dir=str(root / "bare"),
        num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size,
        learning_rate=rate,
        seed=1,
        data_seed=1,
        logging_steps=1,
        save_strategy="epoch",
        report_to="none",
        disable_tqdm=True,
        gradient_checkpointing=False,
        max_length=1024,
        use_cpu=args.device == "cpu",
        bf16=False,
    )
    lora = LoraConfig(
        r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"
    )
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=lora,
    )
    began = time.perf_counter()
    trainer.train()
    trainer.save_model(str(root / "bare-model"))
    train_seconds = time.perf_counter() - began

    from peft import PeftModel

    served = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), str(model_dir))
    served.eval()
    ids = tokenizer.apply_chat_template(
        QUESTION, add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        began = time.perf_counter()
        served.generate(**ids, max_new_tokens=1, do_sample=False)
        first = time.perf_counter() - began
        began = time.perf_counter()
        out = served.generate(**ids, max_new_tokens=args.tokens, do_sample=False)
        seconds = time.perf_counter() - began
    generated = out.shape[1] - ids["input_ids"].shape[1]
    return {
        "train_seconds": train_seconds,
        "first_token": first,
        "gen_tokens_per_s": generated / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=64, help="tokens per answer")
    parser.add_argument("--base", help="a real base model (folder or cached Hub id)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        backend = asyncio.run(through_backend(args, root / "state"))
        floor = bare(args, root, backend["model_dir"])
    tokens = backend["tokens"]
    ours, bare_rate = tokens / backend["train_seconds"], tokens / floor["train_seconds"]
    print(f"training, {tokens} tokens ({args.epochs} epochs, batch {args.batch_size}):")
    print(f"  bare TRL script    {bare_rate:10.0f} tokens/s")
    print(
        f"  through backend    {ours:10.0f} tokens/s   "
        f"({1 - ours / bare_rate:+.1%} slower; goal <= 5%)"
    )
    print("inference (greedy chat answer):")
    print(
        f"  first token: bare generate {floor['first_token'] * 1000:8.1f} ms, "
        f"backend (streamed) {backend['first_token'] * 1000:8.1f} ms"
    )
    print(
        f"  tokens/s:    bare generate {floor['gen_tokens_per_s']:8.1f}, "
        f"backend {backend['gen_tokens_per_s']:8.1f}"
    )


if __name__ == "__main__":
    main()
