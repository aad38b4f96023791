"""Real training and inference through the embedded backend, beside bare TRL and bare
``generate`` on the same data and model, in one run (issue 11).

    python bench/train_local.py [--epochs 3] [--batch-size 4] [--repeat 2] [--tokens 64]
    python bench/train_local.py --base /models/Qwen2.5-0.5B-Instruct --device cuda

Training: tokens per second, the same job two ways, each ``--repeat`` times in turn (best
of each; the machines here are shared, so compare the two figures, not runs):
  - the floor, a bare script in this process: load the base model and tokenizer, build
    TRL's ``SFTTrainer`` with the configuration the backend uses (full fine-tuning at
    steprun-tiny's rate, cosine schedule and warm-up; LoRA r=16 at 2e-4 for ``--base``),
    ``train()``, ``save_model``;
  - through the backend: a job created with ``POST /fine_tuning/jobs`` on an in-process
    ``LocalBackend(trainer="transformers")`` with a state folder; it trains in its own
    process with the backend's callbacks (a metrics event and a state write per step,
    the pause and cancel checks, checkpoints each epoch). Timed from its "Fine-tuning
    job started" event to "New fine-tuned model created", the same span as the floor's
    (load, build, train, save); validation and the process start come before it.
Both count the job's ``trained_tokens`` (every token of every example, each epoch). The
goal: the backend adds at most 5%.

Inference, greedy, the end of turn banned so both make exactly ``--tokens`` tokens, on the
model the backend trained: first-token latency and tokens per second of
``POST /chat/completions`` (streamed: the first content chunk; then the whole stream)
against bare ``model.generate`` on the same weights in this process (first token:
``max_new_tokens=1``; then ``--tokens``).

On a GPU machine, with a real ~0.5B model: install torch for your CUDA, then
``pip install -e '.[train]'``, download the model once (``hf download
Qwen/Qwen2.5-0.5B-Instruct --local-dir /models/Qwen2.5-0.5B-Instruct``), and run
``python bench/train_local.py --base /models/Qwen2.5-0.5B-Instruct --device cuda
--epochs 3 --batch-size 4`` (LoRA, the same data; bf16 where the GPU has it). CI runs
nothing here. Needs ``steprun[train]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx

from steprun.runtime.local import LocalBackend
from steprun.runtime.local.trainer import TrainerSettings, tiny
from steprun.runtime.local.trainer.settings import DEFAULT_LORA, BaseModelSpec

DATA = Path(__file__).resolve().parents[1] / "examples" / "data" / "support.jsonl"
QUESTION = [{"role": "user", "content": "How do I reset my password?"}]


def spec(args: argparse.Namespace) -> BaseModelSpec:
    """How the backend trains the base model (the floor trains it the same way)."""
    if args.base:
        return BaseModelSpec("base", args.base)
    found = TrainerSettings().base(tiny.NAME)
    assert found is not None
    return found


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
                    "model": "base" if args.base else tiny.NAME,
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
        # Event times are whole seconds in the API; the job folder has them exact.
        exact = [
            json.loads(line)
            for line in (state / "jobs" / job["id"] / "events.jsonl").read_text().splitlines()
        ]
        start = next(e["created_at"] for e in exact if e["key"] == "started")
        end = next(e["created_at"] for e in exact if e["key"] == "model")
        inference = await _backend_inference(c, job["fine_tuned_model"], args.tokens, state)
    backend.close()
    return {
        "tokens": job["trained_tokens"],
        "train_seconds": end - start,
        "model_dir": state / "jobs" / job["id"] / "model",
        **inference,
    }


async def _backend_inference(
    c: httpx.AsyncClient, model: str, tokens: int, state: Path
) -> dict[str, Any]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(next((state / "jobs").glob("*/model")))
    body = {
        "model": model,
        "messages": QUESTION,
        "temperature": 0,
        "max_tokens": tokens,
        "logit_bias": {str(tokenizer.eos_token_id): -100},
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    await c.post("/chat/completions", json={**body, "stream": False})  # load the weights once
    began = time.perf_counter()
    first = None
    usage: dict[str, Any] = {}
    async with c.stream("POST", "/chat/completions", json=body) as r:
        async for line in r.aiter_lines():
            if not line.startswith("data: {"):
                continue
            chunk = json.loads(line[len("data: ") :])
            if chunk.get("usage"):
                usage = chunk["usage"]
            delta = chunk["choices"][0]["delta"] if chunk["choices"] else {}
            if first is None and delta.get("content"):
                first = time.perf_counter() - began
    seconds = time.perf_counter() - began
    assert usage["completion_tokens"] == tokens, usage
    return {"first_token": first, "gen_tokens_per_s": tokens / seconds}


def bare_train(args: argparse.Namespace, root: Path) -> float:
    """Seconds the bare script takes to load, build, train and save."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    how = spec(args)
    base = args.base or str(tiny.ensure(root / "models"))
    rows = []
    for line in DATA.read_text().splitlines():
        messages = json.loads(line)["messages"]
        rows.append({"prompt": messages[:-1], "completion": messages[-1:]})
    cuda = args.device.startswith("cuda")
    bf16 = cuda and torch.cuda.is_bf16_supported()
    began = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(
        base, dtype=torch.bfloat16 if bf16 else torch.float32
    )
    config = SFTConfig(
        output_dir=str(root / "bare"),
        num_train_epochs=args.epochs,
        per_device_train_batch_size=args.batch_size,
        learning_rate=how.base_learning_rate,
        lr_scheduler_type=how.schedule,
        warmup_steps=how.warmup,
        seed=1,
        data_seed=1,
        logging_steps=1,
        save_strategy="epoch",
        report_to="none",
        disable_tqdm=True,
        gradient_checkpointing=False,
        max_length=1024,
        use_cpu=args.device == "cpu",
        bf16=bf16,
    )
    lora = None
    if how.adapter == "lora":
        lora = LoraConfig(
            r=DEFAULT_LORA["r"],
            lora_alpha=DEFAULT_LORA["alpha"],
            lora_dropout=DEFAULT_LORA["dropout"],
            target_modules="all-linear",
            task_type="CAUSAL_LM",
        )
    trainer = SFTTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(rows),
        processing_class=tokenizer,
        peft_config=lora,
    )
    trainer.train()
    trainer.save_model(str(root / "bare-model"))
    return time.perf_counter() - began


def bare_inference(args: argparse.Namespace, root: Path, model_dir: Path) -> dict[str, Any]:
    """First-token latency and tokens per second of bare ``generate`` on ``model_dir``."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = args.base or str(tiny.ensure(root / "models"))
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if (model_dir / "adapter_config.json").exists():
        served = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), model_dir)
    else:
        served = AutoModelForCausalLM.from_pretrained(model_dir)
    served.to(args.device).eval()
    ids = tokenizer.apply_chat_template(
        QUESTION, add_generation_prompt=True, return_tensors="pt", return_dict=True
    ).to(args.device)
    options = {"do_sample": False, "sequence_bias": {(tokenizer.eos_token_id,): -100.0}}

    def timed(tokens: int) -> tuple[float, Any]:
        with torch.no_grad():
            began = time.perf_counter()
            out = served.generate(**ids, max_new_tokens=tokens, **options)
            return time.perf_counter() - began, out

    # On a thread of its own, as the backend generates: torch's CPU thread settings are
    # per thread, and on a loaded machine the main thread's two-thread team was 30 times
    # slower than a worker thread's (each operation waits for a descheduled sibling).
    with ThreadPoolExecutor(1) as pool:
        pool.submit(timed, 2).result()  # warm up, as the backend was
        first, _ = pool.submit(timed, 1).result()
        seconds, out = pool.submit(timed, args.tokens).result()
    generated = out.shape[1] - ids["input_ids"].shape[1]
    assert generated == args.tokens
    return {
        "first_token": first,
        "gen_tokens_per_s": generated / seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=2, help="runs of each; best counts")
    parser.add_argument("--tokens", type=int, default=64, help="tokens per answer")
    parser.add_argument("--base", help="a real base model (folder or cached Hub id)")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    from steprun.runtime.local.trainer.quiet import quiet

    quiet()
    ours: list[dict[str, Any]] = []
    floors: list[dict[str, Any]] = []
    for turn in range(args.repeat):
        with tempfile.TemporaryDirectory() as folder:
            root = Path(folder)
            # In turn first and second, so that a slow spell of the shared machine hits both.
            if turn % 2 == 0:
                ours.append(asyncio.run(through_backend(args, root / "state")))
                seconds = bare_train(args, root)
            else:
                seconds = bare_train(args, root)
                ours.append(asyncio.run(through_backend(args, root / "state")))
            floors.append(
                {"train_seconds": seconds, **bare_inference(args, root, ours[-1]["model_dir"])}
            )
    tokens = ours[0]["tokens"]
    ours_rate = tokens / min(o["train_seconds"] for o in ours)
    bare_rate = tokens / min(f["train_seconds"] for f in floors)
    print(
        f"training, {tokens} tokens ({args.epochs} epochs, batch {args.batch_size}, "
        f"{args.base or tiny.NAME} on {args.device}), best of {args.repeat}:"
    )
    print(f"  bare TRL script    {bare_rate:10.0f} tokens/s")
    print(
        f"  through backend    {ours_rate:10.0f} tokens/s   "
        f"({1 - ours_rate / bare_rate:+.1%} slower; goal <= 5%)"
    )
    first_bare = min(f["first_token"] for f in floors) * 1000
    first_ours = min(o["first_token"] for o in ours) * 1000
    print(f"inference, greedy chat answer of {args.tokens} tokens, best of {args.repeat}:")
    print(
        f"  first token ms: bare generate {first_bare:8.1f}, backend (streamed) {first_ours:8.1f}"
    )
    print(
        f"  tokens/s:       bare generate {max(f['gen_tokens_per_s'] for f in floors):8.1f}, "
        f"backend (streamed) {max(o['gen_tokens_per_s'] for o in ours):8.1f}"
    )


if __name__ == "__main__":
    main()
