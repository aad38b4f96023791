"""The tokenizer and the retrieval model's numbers, without HTTP."""

from __future__ import annotations

import json
import math
import random

import pytest

from steprun.runtime.local.model import RetrievalModel
from steprun.runtime.local.tokens import END_OF_TEXT, token_id, tokenize
from steprun.runtime.local.training import Example, parse


@pytest.mark.parametrize(
    "text",
    [
        "Hello, world! It's 2024.",
        "  spaces\tand\ttabs\n\n###\n\n END",
        "naïve café — ünïcode_snake_case",
        "",
    ],
)
def test_tokens_always_join_back_into_the_text(text: str) -> None:
    assert "".join(tokenize(text)) == text


def test_tokens_look_like_gpt_tokens() -> None:
    assert tokenize("How do I reset my password?") == [
        "How", " do", " I", " reset", " my", " password", "?"
    ]  # fmt: skip
    assert token_id(" reset") == token_id(" reset") != token_id("reset")


MODEL = RetrievalModel(
    [
        Example("How do I reset my password?", "Use the reset link."),
        Example("How do I export my notes?", "Use Settings, then Export."),
        Example("What does Pro cost?", "Pro costs $8 a month."),
    ]
)


def test_the_most_similar_question_has_the_highest_logit() -> None:
    logits = MODEL.logits("I need to reset the password")
    assert max(range(3), key=logits.__getitem__) == 0


def test_greedy_generation_reproduces_the_answer_with_probable_tokens() -> None:
    logits = MODEL.logits("export notes")
    index = MODEL.sample(logits, temperature=0, top_p=1, rng=random.Random(0))
    generation = MODEL.generate(index, logits, max_tokens=None, top_logprobs=2)
    assert generation.text == "Use Settings, then Export."
    assert generation.finish_reason == "stop"
    # "Use" starts two answers: its probability is shared evidence, hence the highest.
    assert generation.tokens[0].logprob > generation.tokens[1].logprob - 1e-9
    for token in generation.tokens:
        assert token.logprob < 0
        assert token.top[0][0] == token.token
        assert sum(math.exp(lp) for _, lp in token.top) <= 1 + 1e-9


def test_shared_prefixes_split_probability_between_answers() -> None:
    logits = [0.0, 0.0, 0.0]  # an uninformative prompt: every answer equally likely
    generation = MODEL.generate(1, logits, max_tokens=2, top_logprobs=3)
    first = dict(generation.tokens[0].top)
    assert first["Use"] == pytest.approx(
        math.log(0.98 * 2 / 3 + 0.02 * math.exp(MODEL.unigram_logprob("Use")))
    )
    assert "Pro" in first
    assert generation.finish_reason == "length"


def test_a_banned_token_removes_every_answer_holding_it() -> None:
    logits = MODEL.logits("reset password", {token_id("Use"): -100})
    assert logits[0] == logits[1] == -math.inf
    assert MODEL.sample(logits, temperature=1, top_p=1, rng=random.Random(0)) == 2


def test_every_answer_banned_generates_nothing() -> None:
    banned = MODEL.logits("x", {token_id(t): -100 for t in ("Use", "Pro")})
    assert MODEL.sample(banned, temperature=0, top_p=1, rng=random.Random(0)) is None
    assert MODEL.generate(None, banned, max_tokens=5).text == ""


def test_stop_sequence_spanning_tokens_is_trimmed() -> None:
    logits = MODEL.logits("export notes")
    generation = MODEL.generate(1, logits, max_tokens=None, stop=["s, th"])
    assert generation.text == "Use Setting"


def test_end_of_text_competes_where_an_answer_may_end() -> None:
    model = RetrievalModel([Example("a", "Yes"), Example("b", "Yes.")])
    generation = model.generate(1, [0.0, 0.0], max_tokens=None, top_logprobs=2)
    assert generation.text == "Yes."
    top = dict(generation.tokens[-1].top)
    # Half the answers end after "Yes"; the rest is the little unigram smoothing.
    assert top[END_OF_TEXT] == pytest.approx(top["."], abs=0.05)
    assert top["."] == pytest.approx(math.log(0.5), abs=0.05)


def test_training_data_formats_are_recognised() -> None:
    messages = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a"},
    ]
    chat = json.dumps({"messages": messages}).encode() + b"\n"
    assert parse(chat * 3).format == "chat"
    assert parse(chat).examples == [Example("q", "a", "s")]
    assert parse(b'{"prompt": "p", "completion": " c"}\n').format == "completion"
    mixed = parse(chat + b'{"prompt": "p", "completion": "c"}\n')
    assert (mixed.format, mixed.n_examples) == (None, 2)
    assert parse(b'{"a": 1}\n[1]\n').bad_line == 2
