"""/v1/completions and /v1/chat/completions: a fine-tuned model answers from its data,
and every sampling parameter does what OpenAI documents."""

from __future__ import annotations

import json
import math
from typing import Any

import httpx
import pytest

from steprun.runtime.local.tokens import token_id, tokenize
from tests.contract import sse_data
from tests.local.conftest import EXAMPLES, JOB_SECONDS, CreateJob, FakeClock, Upload, error_of

RESET = (
    'Open lumen.app/login, click "Forgot password?" and enter the email you signed up with. '
    "We send a reset link that is valid for 30 minutes; if it does not arrive, check your "
    "spam folder."
)
RESET_LEGACY_PROMPT = "Customer: How do I reset my password?\nAgent:\n\n###\n\n"


@pytest.fixture
def chat_model(finished_job: dict[str, Any]) -> str:
    return str(finished_job["fine_tuned_model"])


@pytest.fixture
def completion_model(
    api: httpx.Client, create_job: CreateJob, upload: Upload, clock: FakeClock
) -> str:
    """babbage-002 fine-tuned on the legacy prompt/completion support set."""
    file = upload(EXAMPLES / "support_legacy.jsonl")
    job = create_job(file["id"], model="babbage-002", suffix="legacy-support")
    clock.advance(JOB_SECONDS + 1)
    return str(api.get(f"/v1/fine_tuning/jobs/{job['id']}").json()["fine_tuned_model"])


def chat(api: httpx.Client, model: str, question: str, **body: Any) -> httpx.Response:
    return api.post(
        "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": question}], **body},
    )


def complete(api: httpx.Client, model: str, prompt: Any, **body: Any) -> httpx.Response:
    return api.post("/v1/completions", json={"model": model, "prompt": prompt, **body})


# --- what the model learned -------------------------------------------------------------------


def test_fine_tuned_chat_model_answers_a_question_from_its_data(
    api: httpx.Client, chat_model: str
) -> None:
    response = chat(api, chat_model, "How do I reset my password?", temperature=0).json()
    assert response["id"].startswith("chatcmpl-")
    assert response["object"] == "chat.completion"
    assert response["model"] == chat_model
    [choice] = response["choices"]
    assert choice["message"] == {
        "role": "assistant",
        "content": RESET,
        "refusal": None,
        "annotations": [],
    }
    assert choice["finish_reason"] == "stop"
    assert choice["logprobs"] is None


def test_a_reworded_question_finds_the_closest_example(api: httpx.Client, chat_model: str) -> None:
    answer = chat(api, chat_model, "I lost my phone, how can I log in with 2FA?", temperature=0)
    assert answer.json()["choices"][0]["message"]["content"].startswith("Sign in with one of")
    export = chat(api, chat_model, "how to export all notes", temperature=0).json()
    assert export["choices"][0]["message"]["content"].startswith("Go to Settings → Data → Export")


def test_fine_tuned_completion_model_answers_with_its_completion(
    api: httpx.Client, completion_model: str
) -> None:
    response = complete(
        api, completion_model, RESET_LEGACY_PROMPT, max_tokens=200, temperature=0
    ).json()
    assert response["object"] == "text_completion"
    assert response["id"].startswith("cmpl-")
    assert response["choices"][0]["text"] == f" {RESET} END"
    assert response["choices"][0]["finish_reason"] == "stop"


def test_base_models_answer_plausibly(api: httpx.Client) -> None:
    hello = chat(api, "gpt-4o-mini", "Hello!", temperature=0).json()
    assert hello["choices"][0]["message"]["content"] == "Hello! How can I help you today?"
    text = complete(api, "gpt-3.5-turbo-instruct", "Say this is a test", temperature=0).json()
    assert text["choices"][0]["text"] == "This is a test."


def test_usage_counts_prompt_and_completion_tokens(
    api: httpx.Client, completion_model: str
) -> None:
    response = complete(
        api, completion_model, RESET_LEGACY_PROMPT, max_tokens=200, temperature=0, n=2
    ).json()
    usage = response["usage"]
    assert usage["prompt_tokens"] == len(tokenize(RESET_LEGACY_PROMPT))
    assert usage["completion_tokens"] == 2 * len(tokenize(f" {RESET} END"))
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]


# --- sampling parameters ----------------------------------------------------------------------


def test_max_tokens_cuts_with_finish_reason_length(
    api: httpx.Client, completion_model: str
) -> None:
    response = complete(api, completion_model, RESET_LEGACY_PROMPT, max_tokens=5, temperature=0)
    choice = response.json()["choices"][0]
    assert choice["text"] == "".join(tokenize(f" {RESET}")[:5])
    assert choice["finish_reason"] == "length"
    assert response.json()["usage"]["completion_tokens"] == 5


def test_completions_default_to_sixteen_tokens(api: httpx.Client, completion_model: str) -> None:
    choice = complete(api, completion_model, RESET_LEGACY_PROMPT, temperature=0).json()
    assert choice["choices"][0]["text"] == "".join(tokenize(f" {RESET}")[:16])


def test_stop_sequence_ends_the_text_before_it(api: httpx.Client, completion_model: str) -> None:
    choice = complete(
        api, completion_model, RESET_LEGACY_PROMPT, max_tokens=200, stop=[" END"], temperature=0
    ).json()["choices"][0]
    assert choice["text"] == f" {RESET}"
    assert choice["finish_reason"] == "stop"
    mid = complete(
        api, completion_model, RESET_LEGACY_PROMPT, max_tokens=200, stop="password", temperature=0
    ).json()["choices"][0]
    assert mid["text"] == ' Open lumen.app/login, click "Forgot '


def test_stop_inside_a_chat_answer(api: httpx.Client, chat_model: str) -> None:
    content = chat(
        api, chat_model, "How do I reset my password?", stop=[";"], temperature=0
    ).json()["choices"][0]["message"]["content"]
    assert content == RESET.split(";")[0]


def test_n_returns_that_many_choices(api: httpx.Client, chat_model: str) -> None:
    choices = chat(api, chat_model, "How do I reset my password?", n=3).json()["choices"]
    assert [c["index"] for c in choices] == [0, 1, 2]


def test_echo_prepends_the_prompt(api: httpx.Client, completion_model: str) -> None:
    choice = complete(
        api, completion_model, RESET_LEGACY_PROMPT, echo=True, max_tokens=3, temperature=0
    ).json()["choices"][0]
    assert choice["text"] == RESET_LEGACY_PROMPT + "".join(tokenize(f" {RESET}")[:3])


def test_several_prompts_get_their_own_choices(api: httpx.Client, completion_model: str) -> None:
    prompts = [RESET_LEGACY_PROMPT, "Customer: How do I export all my notes?\nAgent:\n\n###\n\n"]
    choices = complete(api, completion_model, prompts, n=2, temperature=0).json()["choices"]
    assert [c["index"] for c in choices] == [0, 1, 2, 3]
    assert choices[0]["text"] == choices[1]["text"]
    assert choices[2]["text"].startswith(" Go to Settings → Data → Export")


def test_prompt_given_as_token_ids(api: httpx.Client, completion_model: str) -> None:
    ids = [token_id(t) for t in tokenize(RESET_LEGACY_PROMPT)]
    by_ids = complete(api, completion_model, ids, temperature=0).json()
    by_text = complete(api, completion_model, RESET_LEGACY_PROMPT, temperature=0).json()
    assert by_ids["choices"][0]["text"] == by_text["choices"][0]["text"]


def test_seed_makes_sampling_reproducible(api: httpx.Client, chat_model: str) -> None:
    def answers(seed: int) -> list[str]:
        body = {"n": 8, "temperature": 2, "seed": seed}
        choices = chat(api, chat_model, "billing", **body).json()["choices"]
        return [c["message"]["content"] for c in choices]

    assert answers(1) == answers(1)
    assert len(set(answers(1)) | set(answers(2))) > 1


def test_temperature_zero_always_gives_the_best_answer(api: httpx.Client, chat_model: str) -> None:
    choices = chat(api, chat_model, "billing", n=5, temperature=0).json()["choices"]
    assert len({c["message"]["content"] for c in choices}) == 1


def test_tiny_top_p_keeps_only_the_most_likely_answer(api: httpx.Client, chat_model: str) -> None:
    body = {"n": 6, "temperature": 2, "top_p": 0.0001, "seed": 3}
    choices = chat(api, chat_model, "billing", **body).json()["choices"]
    best = chat(api, chat_model, "billing", temperature=0).json()["choices"][0]
    assert {c["message"]["content"] for c in choices} == {best["message"]["content"]}


def test_logit_bias_minus_100_bans_an_answer(api: httpx.Client, chat_model: str) -> None:
    ban = {str(token_id(" lumen")): -100}
    content = chat(
        api, chat_model, "How do I reset my password?", temperature=0, logit_bias=ban
    ).json()["choices"][0]["message"]["content"]
    assert content != RESET
    assert " lumen" not in tokenize(content)


def test_logit_bias_keys_must_be_token_ids(api: httpx.Client, chat_model: str) -> None:
    response = chat(api, chat_model, "hi", logit_bias={"hello": 5})
    assert response.status_code == 400
    assert error_of(response)["message"].startswith("Invalid key in 'logit_bias': hello.")


def test_best_of_returns_the_most_likely_of_its_candidates(
    api: httpx.Client, completion_model: str
) -> None:
    body = {"max_tokens": 200, "temperature": 2, "seed": 5, "logprobs": 0}
    many = complete(api, completion_model, "refund", n=6, **body).json()["choices"]

    def per_token(choice: dict[str, Any]) -> float:
        values = choice["logprobs"]["token_logprobs"]
        return float(sum(values) / len(values))

    best = complete(api, completion_model, "refund", best_of=6, **body).json()["choices"]
    assert len(best) == 1
    assert per_token(best[0]) == pytest.approx(max(per_token(c) for c in many))


def test_best_of_below_n_is_refused(api: httpx.Client, completion_model: str) -> None:
    response = complete(api, completion_model, "hi", n=3, best_of=2)
    assert response.status_code == 400
    assert error_of(response)["param"] == "best_of"


# --- log probabilities -----------------------------------------------------------------------


def test_completion_logprobs_have_openais_shape_and_real_numbers(
    api: httpx.Client, completion_model: str
) -> None:
    choice = complete(
        api, completion_model, RESET_LEGACY_PROMPT, max_tokens=6, logprobs=3, temperature=0
    ).json()["choices"][0]
    logprobs = choice["logprobs"]
    assert "".join(logprobs["tokens"]) == choice["text"]
    assert len(logprobs["token_logprobs"]) == len(logprobs["tokens"]) == 6
    assert all(-50 < value < 0 for value in logprobs["token_logprobs"])
    for token, value, top in zip(
        logprobs["tokens"], logprobs["token_logprobs"], logprobs["top_logprobs"], strict=True
    ):
        assert top[token] == value
        assert 3 <= len(top) <= 4
        assert sum(math.exp(v) for v in top.values()) <= 1 + 1e-9
    # Offsets count from the start of the prompt, echoed or not.
    assert logprobs["text_offset"][0] == len(RESET_LEGACY_PROMPT)


def test_echo_with_logprobs_scores_the_prompt_too(api: httpx.Client, completion_model: str) -> None:
    choice = complete(
        api, completion_model, RESET_LEGACY_PROMPT, echo=True, max_tokens=2, logprobs=1,
        temperature=0,
    ).json()["choices"][0]  # fmt: skip
    logprobs = choice["logprobs"]
    prompt_tokens = tokenize(RESET_LEGACY_PROMPT)
    assert logprobs["tokens"][: len(prompt_tokens)] == prompt_tokens
    assert logprobs["text_offset"][0] == 0
    assert len(logprobs["tokens"]) == len(prompt_tokens) + 2
    # Nothing predicts the first prompt token: OpenAI answers null for it (issue 10).
    assert logprobs["token_logprobs"][0] is None
    assert logprobs["top_logprobs"][0] is None
    assert all(isinstance(lp, float) for lp in logprobs["token_logprobs"][1:])


def test_chat_logprobs_have_openais_shape(api: httpx.Client, chat_model: str) -> None:
    choice = chat(
        api, chat_model, "How do I reset my password?", temperature=0, logprobs=True,
        top_logprobs=2, max_completion_tokens=4,
    ).json()["choices"][0]  # fmt: skip
    content = choice["logprobs"]["content"]
    assert choice["logprobs"]["refusal"] is None
    assert [t["token"] for t in content] == tokenize(RESET)[:4]
    first = content[0]
    assert first["bytes"] == list(first["token"].encode())
    assert len(first["top_logprobs"]) == 2
    assert first["top_logprobs"][0]["token"] == first["token"]
    assert first["top_logprobs"][0]["logprob"] == first["logprob"]
    assert first["top_logprobs"][1]["logprob"] < first["logprob"]
    assert choice["finish_reason"] == "length"


def test_top_logprobs_needs_logprobs(api: httpx.Client, chat_model: str) -> None:
    response = chat(api, chat_model, "hi", top_logprobs=2)
    assert response.status_code == 400
    assert error_of(response)["param"] == "top_logprobs"


# --- streaming -------------------------------------------------------------------------------


def stream_chunks(response: httpx.Response) -> list[dict[str, Any]]:
    payloads = sse_data(response.text)
    assert payloads[-1] == "[DONE]"
    return [json.loads(p) for p in payloads[:-1]]


def test_chat_stream_sends_role_then_tokens_then_finish_and_usage(
    api: httpx.Client, chat_model: str
) -> None:
    response = chat(
        api, chat_model, "How do I reset my password?", temperature=0, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    assert response.headers["content-type"].startswith("text/event-stream")
    chunks = stream_chunks(response)
    assert len({c["id"] for c in chunks}) == 1
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == RESET
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"]["completion_tokens"] == len(tokenize(RESET))
    assert all(c["usage"] is None for c in chunks[:-1])


def test_completion_stream_interleaves_choices_and_ends_with_done(
    api: httpx.Client, completion_model: str
) -> None:
    response = complete(
        api, completion_model, RESET_LEGACY_PROMPT, stream=True, n=2, max_tokens=4,
        temperature=0, logprobs=1,
    )  # fmt: skip
    chunks = stream_chunks(response)
    indexes = [c["choices"][0]["index"] for c in chunks]
    assert indexes[:4] == [0, 1, 0, 1]
    by_choice = [
        "".join(c["choices"][0]["text"] for c in chunks if c["choices"][0]["index"] == i)
        for i in (0, 1)
    ]
    assert by_choice[0] == by_choice[1] == "".join(tokenize(f" {RESET}")[:4])
    token_chunk = chunks[0]["choices"][0]
    assert token_chunk["finish_reason"] is None
    assert token_chunk["logprobs"]["tokens"] == [token_chunk["text"]]
    assert [c["choices"][0]["finish_reason"] for c in chunks[-2:]] == ["length", "length"]


def test_stream_options_need_stream(api: httpx.Client, chat_model: str) -> None:
    response = chat(api, chat_model, "hi", stream_options={"include_usage": True})
    assert response.status_code == 400
    assert error_of(response)["message"] == (
        "The 'stream_options' parameter is only allowed when 'stream' is enabled."
    )


# --- which model where ------------------------------------------------------------------------


def test_chat_model_on_the_completions_endpoint_is_refused(
    api: httpx.Client, chat_model: str
) -> None:
    response = complete(api, chat_model, "hi")
    assert response.status_code == 404
    assert error_of(response)["message"].startswith("This is a chat model and not supported")


def test_completion_model_on_the_chat_endpoint_is_refused(
    api: httpx.Client, completion_model: str
) -> None:
    response = chat(api, completion_model, "hi")
    assert response.status_code == 404
    assert "This is not a chat model" in error_of(response)["message"]


def test_unknown_model_is_model_not_found(api: httpx.Client) -> None:
    response = chat(api, "gpt-9", "hi")
    assert response.status_code == 404
    assert error_of(response) == {
        "message": "The model `gpt-9` does not exist or you do not have access to it.",
        "type": "invalid_request_error",
        "param": None,
        "code": "model_not_found",
    }


def test_a_checkpoint_answers_like_its_model(
    api: httpx.Client, finished_job: dict[str, Any], chat_model: str
) -> None:
    checkpoints = api.get(f"/v1/fine_tuning/jobs/{finished_job['id']}/checkpoints").json()
    earlier = checkpoints["data"][-1]["fine_tuned_model_checkpoint"]
    assert ":ckpt-step-" in earlier
    answer = chat(api, earlier, "How do I reset my password?", temperature=0).json()
    assert answer["choices"][0]["message"]["content"] == RESET


def test_invalid_message_role(api: httpx.Client, chat_model: str) -> None:
    response = api.post(
        "/v1/chat/completions",
        json={"model": chat_model, "messages": [{"role": "robot", "content": "hi"}]},
    )
    assert response.status_code == 400
    assert error_of(response)["param"] == "messages[0].role"
