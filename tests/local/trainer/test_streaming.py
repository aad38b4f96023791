"""Streamed answers from weights come token by token, as ``generate`` makes them.

Generation runs at most ``streaming.AHEAD`` tokens ahead of its reader: so when the
first piece reaches the reader of a 24-token answer, ``generate`` is provably still
running (it holds the model's lock until it ends), with no clock involved. Over HTTP,
each generated token is its own chunk (as many content chunks as ``usage`` counts
completion tokens), in the same SSE framing as every other answer.
"""

from __future__ import annotations

import random

import openai
import pytest

from steprun.runtime.local.model import Generation
from steprun.runtime.local.sampling import Sampling
from steprun.runtime.local.trainer import streaming, tiny
from steprun.runtime.local.trainer.serving import TrainedModel, Weights
from tests.local.trainer.conftest import SYSTEM

QUESTION = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Hello?"}]
LENGTH = 24


def _greedy(model: TrainedModel, max_tokens: int) -> Sampling:
    # The end of turn banned: the answer is exactly max_tokens long.
    end = model.tokenizer.convert_tokens_to_ids(tiny.TURN_END)
    return Sampling(max_tokens, (), 0.0, 1.0, 0, {end: -100.0}, random.Random(0))


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> TrainedModel:
    folder = tiny.ensure(tmp_path_factory.mktemp("tiny"))
    return TrainedModel(Weights(str(folder), None, "cpu"))


def test_the_first_piece_arrives_while_generate_is_still_running(model: TrainedModel) -> None:
    generation = Generation()
    pieces = model.stream(QUESTION, _greedy(model, LENGTH), generation)
    first = next(pieces)
    assert LENGTH > streaming.AHEAD + 1
    assert model.lock.locked(), "generate had already finished when the first piece came"
    rest = list(pieces)
    assert not model.lock.locked()
    assert 1 + len(rest) == LENGTH
    assert generation.finish_reason == "length"
    # The same answer as a whole: streaming changes when pieces come, not what they are.
    whole = model.answer(QUESTION, _greedy(model, LENGTH), 1)[0]
    assert [first, *rest] == whole.tokens


def test_a_reader_that_stops_early_stops_generation(model: TrainedModel) -> None:
    pieces = model.stream(QUESTION, _greedy(model, 400), Generation())
    next(pieces)
    assert model.lock.locked()
    pieces.close()  # a client that went away
    assert not model.lock.locked()


def test_a_streamed_chat_answer_comes_one_chunk_per_generated_token(
    client: openai.OpenAI, model: TrainedModel
) -> None:
    sdk = client.with_options(max_retries=0)  # an answer is never asked for twice
    # The end of turn banned (the same steprun-tiny the server built): a full-length answer.
    end = model.tokenizer.convert_tokens_to_ids(tiny.TURN_END)
    asked = {
        "model": tiny.NAME,
        "messages": QUESTION,
        "max_tokens": LENGTH,
        "temperature": 0,
        "logit_bias": {str(end): -100},
    }
    stream = sdk.chat.completions.create(
        **asked, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    content = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta]
    pieces = [piece for piece in content if piece is not None][1:]  # after the role chunk
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == LENGTH
    assert len(pieces) == LENGTH > 1
    assert chunks[-2].choices[0].finish_reason == "length"
    whole = sdk.chat.completions.create(**asked)
    assert "".join(pieces) == whole.choices[0].message.content
    assert whole.usage is not None and whole.usage.completion_tokens == LENGTH
