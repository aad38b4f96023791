"""Answers from trained weights: a base model, plus a LoRA adapter when there is one,
generating with transformers' ``generate``.

Loaded models stay in a small least-recently-used cache, so the requests of a flow do not
reload weights. Generation runs in a worker thread (see ``chat``/``completions`` routes),
one at a time per model.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..model import Generation, TokenChoice
from ..sampling import Sampling
from ..training import message_text
from . import streaming

# Without max_tokens an answer ends at the end of its turn, or after this many tokens.
DEFAULT_MAX_TOKENS = 512
CACHED_MODELS = 3


@dataclass(frozen=True)
class Weights:
    """Where a servable model's weights are: a base model, maybe an adapter over it."""

    base: str  # what from_pretrained takes
    folder: str | None = None  # a PEFT adapter folder, or a whole fine-tuned model
    device: str = "auto"


class TrainedModel:
    """One loaded model and its tokenizer; generation is serialised by a lock."""

    def __init__(self, weights: Weights) -> None:
        from .quiet import quiet

        quiet()
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from .worker import device_name

        self.device = device_name(weights.device)
        folder = Path(weights.folder) if weights.folder else None
        has_tokenizer = folder is not None and (folder / "tokenizer_config.json").exists()
        self.tokenizer = AutoTokenizer.from_pretrained(
            str(folder) if has_tokenizer else weights.base
        )
        dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        if folder is not None and (folder / "adapter_config.json").exists():
            from peft import PeftModel

            base = AutoModelForCausalLM.from_pretrained(weights.base, dtype=dtype)
            self.model = PeftModel.from_pretrained(base, str(folder))
        else:
            source = str(folder) if folder is not None else weights.base
            self.model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
        self.model.to(self.device)
        self.model.eval()
        self.lock = threading.Lock()
        eos = self.model.generation_config.eos_token_id
        self.eos = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if self.tokenizer.eos_token_id is not None:
            self.eos.add(self.tokenizer.eos_token_id)
        self._context_free: list[float] | None = None

    # -- prompts --

    def chat_ids(self, messages: list[dict[str, Any]]) -> list[int]:
        encoded = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=True
        )
        return list(encoded["input_ids"] if not isinstance(encoded, list) else encoded)

    def text_ids(self, text: str) -> list[int]:
        return list(self.tokenizer(text)["input_ids"])

    def decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=False))

    def ids(self, prompt: str | list[dict[str, Any]]) -> list[int]:
        return self.text_ids(prompt) if isinstance(prompt, str) else self.chat_ids(prompt)

    def count(self, prompt: str | list[dict[str, Any]]) -> int:
        return len(self.ids(prompt))

    @property
    def vocabulary(self) -> dict[int, str]:
        """Token id → text, for prompts given as token ids."""
        return {i: self.decode([i]) for i in range(len(self.tokenizer))}

    # -- generation --

    def answer(
        self, prompt: str | list[dict[str, Any]], settings: Sampling, count: int
    ) -> list[Generation]:
        """``count`` generations for a text prompt or chat messages (chat template applied)."""
        found = []
        for _ in range(count):
            generation = Generation()
            generation.tokens = list(self.stream(prompt, settings, generation))
            found.append(generation)
        return found

    def stream(
        self, prompt: str | list[dict[str, Any]], settings: Sampling, into: Generation
    ) -> Iterator[TokenChoice]:
        """One generation's pieces as its tokens are generated; ``into.finish_reason`` is
        set when the iterator ends. Closing the iterator early stops generation."""
        if not isinstance(prompt, str):
            prompt = [{**m, "content": message_text(m.get("content"))} for m in prompt]
        prompt_ids = self.ids(prompt)
        limit = DEFAULT_MAX_TOKENS if settings.max_tokens is None else settings.max_tokens
        if limit == 0:
            into.finish_reason = "length"
            return
        pieces = streaming.Pieces(self.decode, self.eos, settings.stop, settings.top_logprobs)
        # Drawn now, so that a seeded request gives the same answer however it is read.
        seed = settings.rng.getrandbits(63)
        yield from streaming.run(
            lambda streamer, stopper: self._generate(
                prompt_ids, settings, limit, seed, streamer, stopper
            ),
            pieces,
            limit,
        )
        into.finish_reason = pieces.finish_reason or "stop"

    def _generate(
        self,
        prompt_ids: list[int],
        settings: Sampling,
        limit: int,
        seed: int,
        streamer: Any,
        stopper: Any,
    ) -> None:
        import torch
        from transformers import StoppingCriteriaList

        sample = settings.temperature > 0
        options: dict[str, Any] = {
            "max_new_tokens": limit,
            "do_sample": sample,
            "pad_token_id": self.tokenizer.pad_token_id or next(iter(self.eos), 0),
            "eos_token_id": sorted(self.eos),
            "streamer": streamer,
            "stopping_criteria": StoppingCriteriaList([stopper]),
        }
        if sample:
            options |= {"temperature": settings.temperature, "top_p": settings.top_p, "top_k": 0}
        if settings.bias:
            options["sequence_bias"] = {(token,): bias for token, bias in settings.bias.items()}
        inputs = torch.tensor([prompt_ids], device=self.device)
        # The raw logits of each step, for log probabilities (see streaming.token_queue).
        inner = self.model.get_base_model() if hasattr(self.model, "get_base_model") else self.model
        with self.lock, torch.no_grad(), torch.random.fork_rng(devices=[]):
            hook = inner.register_forward_hook(streamer.record)
            try:
                torch.manual_seed(seed)
                self.model.generate(
                    input_ids=inputs, attention_mask=torch.ones_like(inputs), **options
                )
            finally:
                hook.remove()

    # -- scores for text the backend shapes itself (JSON modes) --

    def unigram_logprob(self, token: str) -> float:
        """A token's log probability as the first token of an answer with no context."""
        ids = self.text_ids(token)
        if not ids:
            return 0.0
        return self._context_free_scores()[ids[0]]

    def unigram_top(self, k: int) -> list[tuple[str, float]]:
        scores = self._context_free_scores()
        best = sorted(range(len(scores)), key=lambda i: -scores[i])[:k]
        return [(self.decode([i]), scores[i]) for i in best]

    def _context_free_scores(self) -> list[float]:
        import torch

        if self._context_free is None:
            start = self.tokenizer.bos_token_id or next(iter(self.eos), 0)
            with self.lock, torch.no_grad():
                logits = self.model(input_ids=torch.tensor([[start]], device=self.device)).logits
            self._context_free = torch.log_softmax(logits[0, -1].float(), dim=-1).tolist()
        return self._context_free


class ModelCache:
    """Loaded models, least recently used dropped first."""

    def __init__(self, size: int = CACHED_MODELS) -> None:
        self.size = size
        self._loaded: OrderedDict[Weights, TrainedModel] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, weights: Weights) -> TrainedModel:
        with self._lock:
            found = self._loaded.get(weights)
            if found is None:
                found = self._loaded[weights] = TrainedModel(weights)
                while len(self._loaded) > self.size:
                    self._loaded.popitem(last=False)
            self._loaded.move_to_end(weights)
            return found

    def loaded(self) -> list[Weights]:
        return list(self._loaded)


__all__ = ["CACHED_MODELS", "DEFAULT_MAX_TOKENS", "ModelCache", "TrainedModel", "Weights"]
