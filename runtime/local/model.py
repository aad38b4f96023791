"""The "model" behind completions: retrieval over what a model was trained on.

A fine-tuned model answers a prompt with the answer of the most similar training example,
which is enough to show that it learned its data, with no weights to download. Base
models answer from a few built-in generic examples the same way.

How it scores, so that every number it reports is its own:

* similarity: TF-IDF cosine between the prompt and each example's question (words and
  word pairs);
* the model's distribution over examples: ``softmax(SHARPNESS * similarity + bias)``,
  where ``bias`` sums the request's ``logit_bias`` over the tokens of each answer (-100
  bans an answer); ``temperature`` divides the logits when sampling, 0 takes the best,
  ``top_p`` keeps the smallest set of answers holding that much probability;
* token log probabilities: the probability of the next token given the tokens so far
  is the probability mass of the answers that continue that way (a trie over the
  answers), mixed with a little of the unigram distribution of all answer tokens so
  that alternatives never have probability zero.
"""

from __future__ import annotations

import itertools
import math
import random
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from . import tokens
from .tokens import END_OF_TEXT
from .training import Example

SHARPNESS = 12.0
# How much of the unigram distribution is mixed into next-token probabilities.
SMOOTHING = 0.02
_ADD_ALPHA = 0.5
_BANNED = -100

_STOP_WORDS = frozenset({
    "a", "an", "the", "and", "or", "but", "if", "of", "to", "in", "on", "at", "for", "with",
    "by", "from", "is", "are", "was", "were", "be", "been", "do", "does", "did", "i", "you",
    "we", "it", "my", "your", "our", "me", "can", "could", "would", "should", "will", "how",
    "what", "when", "where", "which", "who", "why", "this", "that", "these", "those", "there",
    "please",
})  # fmt: skip

BASE_EXAMPLES: tuple[Example, ...] = (
    Example(
        "who are you",
        "I am a base model served by the steprun local backend. Fine-tune me on your "
        "examples and I will answer from them.",
    ),
    Example("hello hi hey", "Hello! How can I help you today?"),
    Example(
        "what can you do help",
        "I can answer questions. As a base model I only know a few general replies; a "
        "fine-tuned model answers from its training data.",
    ),
    Example("thanks thank you", "You're welcome! Is there anything else I can help with?"),
    Example(
        "how fine tune model training data",
        "Upload a JSONL file with purpose fine-tune, create a fine-tuning job with it and "
        "a base model, and wait for the job to succeed.",
    ),
    Example("test ping", "This is a test response from the steprun local backend."),
    Example("say this is a test", "This is a test."),
)


def _terms(text: str) -> list[str]:
    words = []
    for word in re.findall(r"\w+", text.casefold()):
        if word in _STOP_WORDS:
            continue
        if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            word = word[:-1]
        words.append(word)
    return words + [f"{a} {b}" for a, b in itertools.pairwise(words)]


def _vector(counts: Mapping[str, int], idf: Mapping[str, float]) -> dict[str, float]:
    vector = {term: (1 + math.log(n)) * idf.get(term, 0.0) for term, n in counts.items()}
    norm = math.sqrt(sum(value * value for value in vector.values()))
    return {term: value / norm for term, value in vector.items()} if norm else {}


@dataclass(frozen=True, slots=True)
class TokenChoice:
    """One generated token, its log probability and the top alternatives at its position."""

    token: str
    logprob: float
    top: list[tuple[str, float]]


@dataclass(slots=True)
class Generation:
    tokens: list[TokenChoice] = field(default_factory=list)
    finish_reason: str = "stop"

    @property
    def text(self) -> str:
        return "".join(choice.token for choice in self.tokens)

    @property
    def logprob(self) -> float:
        return sum(choice.logprob for choice in self.tokens)


class RetrievalModel:
    """Answers prompts from a fixed list of examples. Immutable once built."""

    def __init__(self, examples: Sequence[Example]) -> None:
        if not examples:
            raise ValueError("a retrieval model needs at least one example")
        self.examples = tuple(examples)
        documents = [Counter(_terms(example.query)) for example in self.examples]
        frequency: Counter[str] = Counter()
        for document in documents:
            frequency.update(document.keys())
        total = len(documents)
        self._idf = {term: math.log((total + 1) / (df + 1)) + 1 for term, df in frequency.items()}
        self._vectors = [_vector(document, self._idf) for document in documents]
        self._answers = [tuple(tokens.tokenize(example.answer)) for example in self.examples]
        unigrams: Counter[str] = Counter()
        for answer in self._answers:
            unigrams.update(answer)
            unigrams[END_OF_TEXT] += 1
        self._unigrams = unigrams
        self._unigram_total = sum(unigrams.values())
        self._unigram_size = len(unigrams) + 1
        self._top_unigrams = [token for token, _ in unigrams.most_common(25)]
        known = set(unigrams)
        for example in self.examples:
            known.update(tokens.tokenize(example.query))
            known.update(tokens.tokenize(example.system))
        self.vocabulary = {tokens.token_id(token): token for token in known}

    # -- scores --

    def similarities(self, query: str) -> list[float]:
        vector = _vector(Counter(_terms(query)), self._idf)
        return [
            sum(weight * other.get(term, 0.0) for term, weight in vector.items())
            for other in self._vectors
        ]

    def logits(self, query: str, logit_bias: Mapping[int, float] | None = None) -> list[float]:
        """Each example's logit; ``-inf`` for an answer ``logit_bias`` bans."""
        values = [SHARPNESS * similarity for similarity in self.similarities(query)]
        if not logit_bias:
            return values
        for index, answer in enumerate(self._answers):
            biases = [
                logit_bias[i] for i in {tokens.token_id(t) for t in answer} if i in logit_bias
            ]
            if any(bias <= _BANNED for bias in biases):
                values[index] = -math.inf
            else:
                values[index] += sum(biases)
        return values

    def unigram_logprob(self, token: str) -> float:
        count = self._unigrams.get(token, 0)
        return math.log(
            (count + _ADD_ALPHA) / (self._unigram_total + _ADD_ALPHA * self._unigram_size)
        )

    def unigram_top(self, k: int) -> list[tuple[str, float]]:
        return [(token, self.unigram_logprob(token)) for token in self._top_unigrams[:k]]

    # -- generation --

    def sample(
        self,
        logits: Sequence[float],
        *,
        temperature: float,
        top_p: float,
        rng: random.Random,
    ) -> int | None:
        """Pick an example to answer with; None when every answer is banned."""
        allowed = [i for i, logit in enumerate(logits) if logit != -math.inf]
        if not allowed:
            return None
        if temperature <= 0:
            return max(allowed, key=lambda i: (logits[i], -i))
        top = max(logits[i] for i in allowed)
        weights = {i: math.exp((logits[i] - top) / temperature) for i in allowed}
        total = sum(weights.values())
        ranked = sorted(allowed, key=lambda i: -weights[i])
        kept, mass = [], 0.0
        for index in ranked:
            kept.append(index)
            mass += weights[index] / total
            if mass >= top_p:
                break
        return rng.choices(kept, weights=[weights[i] for i in kept])[0]

    def generate(
        self,
        index: int | None,
        logits: Sequence[float],
        *,
        max_tokens: int | None,
        stop: Sequence[str] = (),
        top_logprobs: int = 0,
    ) -> Generation:
        """Emit the answer of example ``index`` token by token, scoring every token.

        Stops at the end of the answer, at ``max_tokens`` (``finish_reason`` "length"), or
        before the first stop sequence (which is not included).
        """
        generation = Generation()
        if index is None:
            return generation
        probabilities = _softmax(logits)
        sequence = [*self._answers[index], END_OF_TEXT]
        alive = [i for i, p in enumerate(probabilities) if p > 0]
        text = ""
        longest_stop = max((len(s) for s in stop), default=0)
        for position, token in enumerate(sequence):
            if max_tokens is not None and position >= max_tokens:
                generation.finish_reason = "length"
                break
            distribution = self._next_distribution(alive, probabilities, position)
            if token == END_OF_TEXT:
                generation.finish_reason = "stop"
                break
            logprob = self._smoothed(distribution, token)
            top = self._top(distribution, top_logprobs) if top_logprobs else []
            previous = len(text)
            text += token
            cut = _first_stop(text, stop, max(0, previous - longest_stop))
            if cut is not None:
                if cut > previous:
                    generation.tokens.append(TokenChoice(text[previous:cut], logprob, top))
                elif cut < previous:
                    _trim(generation, previous - cut)
                generation.finish_reason = "stop"
                break
            generation.tokens.append(TokenChoice(token, logprob, top))
            alive = [
                i
                for i in alive
                if position < len(self._answers[i]) and self._answers[i][position] == token
            ]
        return generation

    def _next_distribution(
        self, alive: Sequence[int], probabilities: Sequence[float], position: int
    ) -> dict[str, float]:
        mass: dict[str, float] = {}
        for i in alive:
            answer = self._answers[i]
            token = answer[position] if position < len(answer) else END_OF_TEXT
            mass[token] = mass.get(token, 0.0) + probabilities[i]
        total = sum(mass.values())
        return {token: value / total for token, value in mass.items()} if total else {}

    def _smoothed(self, distribution: Mapping[str, float], token: str) -> float:
        unigram = math.exp(self.unigram_logprob(token))
        return math.log((1 - SMOOTHING) * distribution.get(token, 0.0) + SMOOTHING * unigram)

    def _top(self, distribution: Mapping[str, float], k: int) -> list[tuple[str, float]]:
        candidates = set(distribution) | set(self._top_unigrams[: k + 1])
        scored = [(token, self._smoothed(distribution, token)) for token in candidates]
        scored.sort(key=lambda item: (-item[1], item[0]))
        return scored[:k]


def _softmax(logits: Sequence[float]) -> list[float]:
    finite = [value for value in logits if value != -math.inf]
    if not finite:
        return [0.0 for _ in logits]
    top = max(finite)
    exps = [math.exp(value - top) if value != -math.inf else 0.0 for value in logits]
    total = sum(exps)
    return [value / total for value in exps]


def _first_stop(text: str, stop: Sequence[str], start: int) -> int | None:
    found = [position for s in stop if s and (position := text.find(s, start)) != -1]
    return min(found) if found else None


def _trim(generation: Generation, excess: int) -> None:
    """Drop ``excess`` characters from the end of the emitted tokens (a stop sequence
    that began inside an earlier token)."""
    while excess > 0 and generation.tokens:
        last = generation.tokens[-1]
        if len(last.token) <= excess:
            excess -= len(last.token)
            generation.tokens.pop()
        else:
            generation.tokens[-1] = TokenChoice(last.token[:-excess], last.logprob, last.top)
            excess = 0


__all__ = [
    "BASE_EXAMPLES",
    "SHARPNESS",
    "SMOOTHING",
    "Generation",
    "RetrievalModel",
    "TokenChoice",
]
