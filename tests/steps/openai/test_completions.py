"""openai.request_fine_tuned_model: request bodies against the spec, stream assembly, faults."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from jsonschema import Draft202012Validator

from steprun.runtime.authorizations import LOCAL_BASE_URL
from steprun.runtime.errors import StepError
from steprun.runtime.local import LocalBackend
from steprun.runtime.schemas import SchemaRegistry
from steprun.steps.openai.completions import (
    REQUEST_FINE_TUNED_MODEL,
    STEP_TYPES,
    assemble,
    build_request,
)
from tests.contract import validate_request, validate_response

from .conftest import CANARY_KEY, Harness, MakeContext
from .faultserver import Chunks, FaultServer, Reply
from .localbackend import Clock, fine_tune, mounted, served

# Loaded and validated the engine's way: shared definitions resolve through its registry.
SCHEMAS = SchemaRegistry()
SCHEMA = SCHEMAS.builtin("openai.request_fine_tuned_model.schema.json") or {}
VALIDATOR = SCHEMAS.validator(SCHEMA)

run = REQUEST_FINE_TUNED_MODEL.run


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + json.dumps(e).encode() + b"\n\n" for e in events)


DONE = b"data: [DONE]\n\n"
HEAD = {"id": "cmpl-1", "created": 1_721_764_800, "model": "ft:davinci-002:acme::abc"}
CHAT_HEAD = {"id": "chatcmpl-1", "created": 1_721_764_800, "model": "ft:gpt-4o-mini:acme::abc"}
USAGE = {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}


def completion_chunk(*choices: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {**HEAD, "object": "text_completion", "choices": list(choices), **extra}


def chat_chunk(*choices: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {**CHAT_HEAD, "object": "chat.completion.chunk", "choices": list(choices), **extra}


def lp(token: str, value: float, offset: int) -> dict[str, Any]:
    return {
        "tokens": [token],
        "token_logprobs": [value],
        "top_logprobs": [{token: value}],
        "text_offset": [offset],
    }


# --- request bodies: many configs, each checked against the OpenAPI request schema ------

COMPLETION_CONFIGS: list[dict[str, Any]] = [
    {"model": "ft:davinci-002:acme::abc", "prompt": "How do I reset my password?"},
    {"model": "m", "prompt": ["one", "two"], "max_tokens": 64, "temperature": 0.2},
    {"model": "m", "prompt": [1212, 318, 257], "stop": "\n", "n": 2, "best_of": 4},
    {"model": "m", "prompt": [[1212, 318], [257]], "stop": ["\n", "###"], "echo": True},
    {
        "model": "m",
        "prompt": "Q:",
        "suffix": "\n\nA:",
        "top_p": 0.9,
        "frequency_penalty": 0.5,
        "presence_penalty": -0.5,
        "logit_bias": {"50256": -100, "13": 5},
        "logprobs": 5,
        "user": "user-1234",
    },
    {"model": "m", "prompt": "x", "max_tokens": None, "temperature": None},  # nulls left out
]
# Settings the 2023 API did not have: only configs without them are legacy requests.
CURRENT_ONLY = {"seed", "stream_options"}
STREAM_CONFIGS: list[dict[str, Any]] = [
    {"model": "m", "prompt": "x", "stream": True},
    {"model": "m", "prompt": "x", "stream": True, "include_usage": False, "seed": 7},
]
CHAT_CONFIGS: list[dict[str, Any]] = [
    {"model": "ft:gpt-4o-mini:acme::abc", "mode": "chat", "prompt": "Hi"},
    {
        "model": "m",
        "mode": "chat",
        "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        ],
        "max_completion_tokens": 32,
        "temperature": 0,
        "top_p": 1,
        "n": 2,
        "stop": ["\n"],
        "seed": 42,
        "logprobs": True,
        "top_logprobs": 3,
        "logit_bias": {"1734": -100},
        "frequency_penalty": 0.1,
        "presence_penalty": 0.1,
        "user": "user-1",
    },
    {
        "model": "m",
        "mode": "chat",
        "messages": [{"role": "developer", "content": "Answer in JSON."}],
        "prompt": "Weather in Oslo?",
        "max_tokens": 50,
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "weather", "schema": {"type": "object"}, "strict": True},
        },
        "stream": True,
    },
    {
        "model": "m",
        "mode": "chat",
        "messages": [
            {"role": "user", "content": "Look it up; answer in JSON."},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "lookup", "arguments": "{}"},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "42"},
        ],
        "tools": [{"type": "function", "function": {"name": "lookup", "parameters": {}}}],
        "tool_choice": "auto",
        "response_format": {"type": "json_object"},
    },
]


@pytest.mark.parametrize("config", COMPLETION_CONFIGS + STREAM_CONFIGS)
def test_completion_bodies_match_the_request_schema(config: dict[str, Any]) -> None:
    assert not list(VALIDATOR.iter_errors(config))
    path, body = build_request(config)
    assert path == "/completions"
    validate_request("current", "POST", path, body)
    if not CURRENT_ONLY & set(body):
        validate_request("legacy", "POST", path, body)
    assert None not in body.values()


@pytest.mark.parametrize("config", CHAT_CONFIGS)
def test_chat_bodies_match_the_request_schema(config: dict[str, Any]) -> None:
    assert not list(VALIDATOR.iter_errors(config))
    path, body = build_request(config)
    assert path == "/chat/completions"
    validate_request("current", "POST", path, body)


def test_a_chat_prompt_becomes_the_last_user_message() -> None:
    _, body = build_request(CHAT_CONFIGS[2])
    assert body["messages"] == [
        {"role": "developer", "content": "Answer in JSON."},
        {"role": "user", "content": "Weather in Oslo?"},
    ]
    assert "prompt" not in body and "mode" not in body


def test_streaming_asks_for_usage_unless_told_not_to() -> None:
    assert build_request(STREAM_CONFIGS[0])[1]["stream_options"] == {"include_usage": True}
    assert "stream_options" not in build_request(STREAM_CONFIGS[1])[1]


def test_chat_without_any_message_is_refused_before_sending() -> None:
    # Schema-valid ("messages" is present) but empty: the API would answer 400.
    with pytest.raises(StepError) as caught:
        build_request({"model": "m", "mode": "chat", "messages": []})
    assert caught.value.code == "missing_messages"


def test_best_of_below_n_is_refused_before_sending() -> None:
    with pytest.raises(StepError) as caught:
        build_request({"model": "m", "prompt": "x", "n": 3, "best_of": 2})
    assert caught.value.code == "invalid_best_of"


@pytest.mark.parametrize(
    "config",
    [
        {"model": "m"},  # completion mode needs a prompt
        {"model": "m", "mode": "chat"},  # chat needs messages or a prompt
        {"model": "m", "mode": "chat", "prompt": "x", "echo": True},
        {"model": "m", "mode": "chat", "prompt": ["a", "b"]},
        {"model": "m", "mode": "chat", "prompt": "x", "logprobs": 3},
        {"model": "m", "prompt": "x", "messages": [{"role": "user", "content": "y"}]},
        {"model": "m", "prompt": "x", "logprobs": True},
        {"model": "m", "prompt": "x", "logprobs": 6},
        {"model": "m", "prompt": "x", "stream": True, "best_of": 2},
        {"model": "m", "prompt": "x", "stop": ["a", "b", "c", "d", "e"]},
        {"model": "m", "prompt": "x", "logit_bias": {"token": 1}},
        {"model": "m", "prompt": "x", "temperature": 3},
        {"model": "m", "prompt": "x", "frequency": 1},
    ],
)
def test_schema_refuses_configs_the_api_would_refuse(config: dict[str, Any]) -> None:
    assert list(VALIDATOR.iter_errors(config))


# --- stream assembly, on a server that streams exactly what OpenAI streams -------------


@pytest.mark.anyio
async def test_completion_stream_is_assembled_into_the_non_streamed_object(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    fault_server.script(
        Chunks(
            [
                sse(
                    completion_chunk(
                        {
                            "text": "Use",
                            "index": 0,
                            "logprobs": lp("Use", -0.1, 5),
                            "finish_reason": None,
                        }
                    ),
                    completion_chunk(
                        {
                            "text": "Go",
                            "index": 1,
                            "logprobs": lp("Go", -0.7, 5),
                            "finish_reason": None,
                        }
                    ),
                ),
                sse(
                    completion_chunk(
                        {
                            "text": " the link",
                            "index": 0,
                            "logprobs": lp(" the link", -0.2, 8),
                            "finish_reason": "stop",
                        }
                    ),
                    completion_chunk(
                        {
                            "text": " away",
                            "index": 1,
                            "logprobs": lp(" away", -0.9, 7),
                            "finish_reason": "length",
                        }
                    ),
                    completion_chunk(usage=USAGE),
                ),
                DONE,
            ]
        )
    )
    harness = make_context(fault_server.base_url)
    config = {"model": HEAD["model"], "prompt": "Reset:", "n": 2, "logprobs": 1, "stream": True}
    result = await run(config, harness.context)
    expected = {
        **HEAD,
        "object": "text_completion",
        "choices": [
            {
                "text": "Use the link",
                "index": 0,
                "logprobs": {
                    "tokens": ["Use", " the link"],
                    "token_logprobs": [-0.1, -0.2],
                    "top_logprobs": [{"Use": -0.1}, {" the link": -0.2}],
                    "text_offset": [5, 8],
                },
                "finish_reason": "stop",
            },
            {
                "text": "Go away",
                "index": 1,
                "logprobs": {
                    "tokens": ["Go", " away"],
                    "token_logprobs": [-0.7, -0.9],
                    "top_logprobs": [{"Go": -0.7}, {" away": -0.9}],
                    "text_offset": [5, 7],
                },
                "finish_reason": "length",
            },
        ],
        "usage": USAGE,
    }
    assert result == expected
    validate_response("current", "POST", "/completions", 200, result)
    sent = fault_server.requests[0].json()
    validate_request("current", "POST", "/completions", sent)
    assert sent["stream_options"] == {"include_usage": True}
    assert harness.lines("info")[-1].endswith(": Use the link")


@pytest.mark.anyio
async def test_chat_stream_with_tool_calls_and_logprobs_is_assembled(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    def token(text: str, value: float) -> dict[str, Any]:
        return {"token": text, "logprob": value, "bytes": list(text.encode()), "top_logprobs": []}

    fault_server.script(
        Chunks(
            [
                sse(
                    chat_chunk(
                        {
                            "index": 0,
                            "delta": {"role": "assistant", "content": ""},
                            "logprobs": None,
                            "finish_reason": None,
                        },
                        system_fingerprint="fp_1",
                    ),
                    chat_chunk(
                        {
                            "index": 0,
                            "delta": {"content": "Hel"},
                            "logprobs": {"content": [token("Hel", -0.1)], "refusal": None},
                            "finish_reason": None,
                        }
                    ),
                    chat_chunk(
                        {
                            "index": 1,
                            "delta": {
                                "role": "assistant",
                                "content": None,
                                "tool_calls": [
                                    {
                                        "index": 0,
                                        "id": "call_1",
                                        "type": "function",
                                        "function": {"name": "lookup", "arguments": ""},
                                    }
                                ],
                            },
                            "logprobs": None,
                            "finish_reason": None,
                        }
                    ),
                ),
                sse(
                    chat_chunk(
                        {
                            "index": 1,
                            "delta": {
                                "tool_calls": [{"index": 0, "function": {"arguments": '{"q":'}}]
                            },
                            "finish_reason": None,
                        }
                    ),
                    chat_chunk(
                        {
                            "index": 0,
                            "delta": {"content": "lo."},
                            "logprobs": {"content": [token("lo.", -0.3)], "refusal": None},
                            "finish_reason": None,
                        }
                    ),
                    chat_chunk(
                        {
                            "index": 1,
                            "delta": {
                                "tool_calls": [{"index": 0, "function": {"arguments": '"x"}'}}]
                            },
                            "finish_reason": "tool_calls",
                        }
                    ),
                    chat_chunk({"index": 0, "delta": {}, "finish_reason": "stop"}),
                    chat_chunk(usage=USAGE),
                ),
                DONE,
            ]
        )
    )
    harness = make_context(fault_server.base_url)
    config = {
        "model": CHAT_HEAD["model"],
        "mode": "chat",
        "prompt": "Hi",
        "n": 2,
        "logprobs": True,
        "stream": True,
    }
    result = await run(config, harness.context)
    assert result == {
        **CHAT_HEAD,
        "object": "chat.completion",
        "system_fingerprint": "fp_1",
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Hello.",
                    "refusal": None,
                    "annotations": [],
                },
                "logprobs": {
                    "content": [token("Hel", -0.1), token("lo.", -0.3)],
                    "refusal": None,
                },
                "finish_reason": "stop",
            },
            {
                "index": 1,
                "message": {
                    "role": "assistant",
                    "content": None,
                    "refusal": None,
                    "annotations": [],
                    "tool_calls": [
                        {
                            "id": "call_1",
                            "type": "function",
                            "function": {"name": "lookup", "arguments": '{"q":"x"}'},
                        }
                    ],
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            },
        ],
        "usage": USAGE,
    }
    validate_response("current", "POST", "/chat/completions", 200, result)
    assert "Hello." in harness.lines("info")[-1]


@pytest.mark.anyio
async def test_a_stream_cut_midway_is_an_error_never_a_partial_answer(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    chunk = completion_chunk({"text": "Use", "index": 0, "logprobs": None, "finish_reason": None})
    fault_server.script(Chunks([sse(chunk), b'data: {"id": "cmpl-1", "cho'], cut=True))
    harness = make_context(fault_server.base_url)
    with pytest.raises(StepError) as caught:
        await run({"model": "m", "prompt": "x", "stream": True}, harness.context)
    assert caught.value.code == "stream_cut"
    assert "Use" not in caught.value.message
    assert not harness.lines("info")  # no answer was logged as if it had arrived
    assert CANARY_KEY not in caught.value.message + harness.log_text()


@pytest.mark.anyio
async def test_a_stream_that_never_finishes_a_choice_is_an_error(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    unfinished = completion_chunk(
        {"text": "Use", "index": 0, "logprobs": None, "finish_reason": None}
    )
    fault_server.script(Chunks([sse(unfinished), DONE]))
    harness = make_context(fault_server.base_url)
    with pytest.raises(StepError) as caught:
        await run({"model": "m", "prompt": "x", "stream": True}, harness.context)
    assert caught.value.code == "incomplete_stream"
    assert "choice(s) 0" in caught.value.message


@pytest.mark.anyio
async def test_a_stream_with_no_choices_is_an_error(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    fault_server.script(Chunks([sse(completion_chunk(usage=USAGE)), DONE]))
    with pytest.raises(StepError) as caught:
        await run(
            {"model": "m", "prompt": "x", "stream": True},
            make_context(fault_server.base_url).context,
        )
    assert caught.value.code == "incomplete_stream"


@pytest.mark.anyio
async def test_raw_result_has_status_headers_and_body(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    answer = {
        **HEAD,
        "object": "text_completion",
        "choices": [{"text": " hi", "index": 0, "logprobs": None, "finish_reason": "stop"}],
        "usage": USAGE,
    }
    fault_server.script(Reply.json(answer, x_request_id="req_42"))
    harness = make_context(fault_server.base_url)
    output = await run({"model": "m", "prompt": "x", "result_format": "raw"}, harness.context)
    assert output["status"] == 200
    assert output["headers"]["x-request-id"] == "req_42"
    assert output["body"] == answer


@pytest.mark.anyio
async def test_a_streamed_raw_result_has_the_answers_status_and_headers(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    fault_server.script(
        Chunks(
            [
                sse(
                    completion_chunk(
                        {"text": " hi", "index": 0, "logprobs": None, "finish_reason": "stop"}
                    )
                ),
                b"data: [DONE]\n\n",
            ],
            headers={"content-type": "text/event-stream", "x-request-id": "req_stream_7"},
        )
    )
    harness = make_context(fault_server.base_url)
    output = await run(
        {"model": "m", "prompt": "x", "stream": True, "result_format": "raw"}, harness.context
    )
    assert output["status"] == 200
    assert output["headers"]["x-request-id"] == "req_stream_7"
    assert output["body"]["choices"][0]["text"] == " hi"


@pytest.mark.anyio
async def test_an_api_error_takes_the_error_exit_without_the_key(
    fault_server: FaultServer, make_context: MakeContext
) -> None:
    fault_server.script(
        Reply.error(
            404,
            f"The model 'ft:x' does not exist (key {CANARY_KEY[:8]}...{CANARY_KEY})",
            code="model_not_found",
            param="model",
            x_request_id="req_404",
        )
    )
    harness = make_context(fault_server.base_url)
    with pytest.raises(StepError) as caught:
        await run({"model": "ft:x", "mode": "chat", "prompt": "x"}, harness.context)
    error = caught.value.to_dict()
    assert (error["status"], error["code"], error["request_id"]) == (
        404,
        "model_not_found",
        "req_404",
    )
    assert CANARY_KEY not in json.dumps(error) + harness.log_text()


def test_step_type_declaration_is_complete() -> None:
    assert STEP_TYPES == [REQUEST_FINE_TUNED_MODEL]
    assert REQUEST_FINE_TUNED_MODEL.problems() == []
    assert REQUEST_FINE_TUNED_MODEL.effect == "none"
    Draft202012Validator.check_schema(SCHEMA)
    for name, prop in SCHEMA["properties"].items():
        assert prop.get("title") and prop.get("description"), name


@pytest.mark.anyio
async def test_assembly_leaves_the_chunks_as_they_were() -> None:
    # Guards the merge helpers: the first chunk's lists must be copied, not extended.
    first = completion_chunk(
        {"text": "a", "index": 0, "logprobs": lp("a", -1, 0), "finish_reason": None}
    )
    second = completion_chunk(
        {"text": "b", "index": 0, "logprobs": lp("b", -1, 1), "finish_reason": "stop"}
    )
    before = copy.deepcopy([first, second])

    async def chunks() -> AsyncIterator[dict[str, Any]]:
        for chunk in (first, second):
            yield chunk

    result = await assemble(chunks(), chat=False, what="POST /completions")
    assert result["choices"][0]["logprobs"]["tokens"] == ["a", "b"]
    assert [first, second] == before


# --- against the embedded backend ------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parents[3] / "examples" / "data"


@pytest.fixture
async def fine_tuned_chat() -> AsyncIterator[tuple[LocalBackend, httpx.AsyncClient, str]]:
    clock = Clock()
    backend = LocalBackend(job_seconds=5, clock=clock)
    async with mounted(backend) as http:
        model = await fine_tune(http, clock, (EXAMPLES / "support.jsonl").read_bytes())
        yield backend, http, model


def local_harness(make_context: MakeContext, http: httpx.AsyncClient) -> Harness:
    return make_context(LOCAL_BASE_URL, provider="local", api_key=None, client=http, step_id="ask")


def without_ids(result: dict[str, Any]) -> dict[str, Any]:
    """Two requests get two ids; everything else must be the same."""
    return {key: value for key, value in result.items() if key not in ("id", "created")}


@pytest.mark.anyio
@pytest.mark.parametrize(
    "config",
    [
        {
            "model": "davinci-002",
            "prompt": "How do I reset my password?",
            "max_tokens": 12,
            "seed": 1,
        },
        {
            "model": "davinci-002",
            "prompt": ["Reset my password", "Delete my account"],
            "n": 2,
            "logprobs": 2,
            "echo": True,
            "stop": ["."],
            "seed": 3,
        },
        {
            "model": "gpt-4o-mini",
            "mode": "chat",
            "messages": [{"role": "system", "content": "Be brief."}],
            "prompt": "How do I reset my password?",
            "n": 2,
            "logprobs": True,
            "top_logprobs": 2,
            "seed": 3,
            "max_completion_tokens": 20,
        },
    ],
)
async def test_streamed_and_non_streamed_answers_are_the_same_object(
    fine_tuned_chat: tuple[LocalBackend, httpx.AsyncClient, str],
    make_context: MakeContext,
    config: dict[str, Any],
) -> None:
    _, http, _ = fine_tuned_chat
    plain = await run(config, local_harness(make_context, http).context)
    streamed = await run({**config, "stream": True}, local_harness(make_context, http).context)
    assert without_ids(streamed) == without_ids(plain)
    path = "/chat/completions" if config.get("mode") == "chat" else "/completions"
    validate_response("current", "POST", path, 200, plain)
    validate_response("current", "POST", path, 200, streamed)
    assert streamed["usage"] == plain["usage"]


@pytest.mark.anyio
async def test_the_fine_tuned_model_answers_from_its_training_data(
    fine_tuned_chat: tuple[LocalBackend, httpx.AsyncClient, str], make_context: MakeContext
) -> None:
    _, http, model = fine_tuned_chat
    harness = local_harness(make_context, http)
    output = await run(
        {"model": model, "mode": "chat", "prompt": "How do I reset my password?", "temperature": 0},
        harness.context,
    )
    answer = output["choices"][0]["message"]["content"]
    assert "Forgot password" in answer
    # The answer is logged at info, shortened to one line.
    assert harness.lines("info")[-1].startswith(f"{model} answered in ")
    assert answer[:40] in harness.lines("info")[-1]


@pytest.mark.anyio
async def test_a_stream_the_server_cuts_is_an_error(make_context: MakeContext) -> None:
    backend = LocalBackend(
        job_seconds=5,
        faults=[{"kind": "cut_stream", "path": "/v1/chat/completions", "after_chunks": 2}],
    )
    with served(backend.app) as origin:
        async with httpx.AsyncClient() as http:
            harness = make_context(origin + "/v1", client=http, step_id="ask")
            with pytest.raises(StepError) as caught:
                await run(
                    {"model": "gpt-4o-mini", "mode": "chat", "prompt": "Hi", "stream": True},
                    harness.context,
                )
    assert caught.value.code in ("stream_cut", "stream_incomplete")
    assert not harness.lines("info")
    assert CANARY_KEY not in caught.value.message + harness.log_text()
